// Package auth answers "may this visitor reach this socket": the visitor
// authentication of protected sockets by basic auth (the OIDC sign-in of
// cloud-auth sockets is internal/signin's). The HTTP front asks Checker.Pass before it proxies a
// request; on refusal the Checker has already answered, with answer.Write.
//
// Why it is shaped this way: passwords are stored by the Python side as
// scrypt hashes, which cost tens of milliseconds and 16 MiB each on purpose,
// so a flood of wrong passwords is a flood of memory and CPU unless it is
// bounded:
//   - the checks under way share a memory budget (a weighted semaphore of
//     bytes, each check weighing 128*N*r of its hash); when it is spent, a
//     check is shed at once with 503 `unavailable` and Retry-After, never
//     queued, so the memory in use never passes the budget;
//   - one visitor (an address; an IPv6 /64) may run a share of the checks at
//     once; past it, 429 `rate-limited`. Identical attempts (a browser's
//     parallel requests with the same password) share one check;
//   - failed attempts are limited per visitor (only failures spend), in a
//     bounded LRU of buckets that a flood of addresses cannot wipe;
//   - a verified password is cached, keyed by socket, hash and password (a
//     changed password or a recreated socket never hits an old entry), in a
//     bounded LRU whose entries expire.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"mysocketd/edge/dataplane/internal/answer"
	"mysocketd/edge/dataplane/internal/limits"
	"mysocketd/edge/dataplane/internal/logx"
	"mysocketd/edge/dataplane/internal/state"
)

// Options size the checks: MemoryBudget bytes of scrypt at once (0: no bound),
// and the share of the checks that fit in it that one visitor may run at once.
type Options struct {
	MemoryBudget int64
	VisitorShare float64
}

const (
	verifiedEntries = 10_000           // cached verified passwords
	verifiedFor     = 10 * time.Minute // how long a cached one is trusted
)

var (
	errBusy       = errors.New("password checks at their memory budget")
	errVisitorCap = errors.New("this visitor runs its share of password checks")
)

// Checker checks visitors against their socket's credentials.
type Checker struct {
	state    *state.Holder
	opts     Options
	verified *expirable.LRU[string, struct{}]
	failures *limits.Limiter
	memory   *semaphore.Weighted
	running  *limits.Counts // checks each visitor runs or waits on
	same     singleflight.Group
	inUse    atomic.Int64 // bytes of the checks under way
	peak     atomic.Int64 // the most inUse has been (for tests and figures)
}

func NewChecker(holder *state.Holder, opts Options) *Checker {
	return &Checker{state: holder, opts: opts, failures: limits.NewLimiter(),
		verified: expirable.NewLRU[string, struct{}](verifiedEntries, nil, verifiedFor),
		memory:   semaphore.NewWeighted(opts.MemoryBudget), running: limits.NewCounts()}
}

// Pass reports whether r, from the address peer, may reach the protected
// socket sock; when not, it has answered 401 (unauthorized), 429
// (rate-limited: failures, or this visitor's share of checks) or 503
// (unavailable: the checks' memory budget is spent).
func (c *Checker) Pass(w http.ResponseWriter, r *http.Request, sock *state.Socket, peer string) bool {
	visitor := limits.Visitor(peer)
	limit := c.state.Limits().AuthFailuresPerMinute
	if limit > 0 && !c.failures.Allowed(visitor, limit) {
		w.Header().Set("Retry-After", "60")
		answer.Write(w, http.StatusTooManyRequests, answer.RateLimited, "too many failed logins from your address; try again later")
		return false
	}
	user, pass, ok := r.BasicAuth()
	if ok && subtle.ConstantTimeCompare([]byte(user), []byte(sock.ProtectedUsername)) == 1 {
		sum := sha256.Sum256([]byte(sock.SocketID + "\x00" + sock.PasswordHash + "\x00" + pass))
		key := hex.EncodeToString(sum[:])
		if _, hit := c.verified.Get(key); hit {
			return true
		}
		good, err := c.check(visitor, key, pass, sock.PasswordHash)
		switch {
		case errors.Is(err, errVisitorCap):
			w.Header().Set("Retry-After", "1")
			answer.Write(w, http.StatusTooManyRequests, answer.RateLimited, "too many password checks from your address at once; try again shortly")
			return false
		case err != nil:
			w.Header().Set("Retry-After", "1")
			answer.Write(w, http.StatusServiceUnavailable, answer.Unavailable, "the edge is busy checking passwords; try again shortly")
			return false
		case good:
			c.verified.Add(key, struct{}{})
			return true
		}
	}
	if ok && limit > 0 {
		c.failures.Spend(visitor, limit)
	}
	// spelled as RFC 7235 does (not Go's canonical Www-Authenticate), for naive clients
	w.Header()["WWW-Authenticate"] = []string{fmt.Sprintf(`Basic realm="%s", charset="UTF-8"`, sock.DNSName)}
	answer.Write(w, http.StatusUnauthorized, answer.Unauthorized, "this socket needs a username and password")
	return false
}

// check runs one scrypt check within the budget and the visitor's share;
// identical checks under way share one run.
func (c *Checker) check(visitor, key, password, stored string) (bool, error) {
	h, ok := parseScrypt(stored)
	if !ok {
		return false, nil
	}
	cost, budget := h.memory(), c.opts.MemoryBudget
	if budget > 0 {
		if cost > budget {
			logx.Printf("a password check needs %d bytes, more than --auth-check-memory (%d): raise it", cost, budget)
			return false, errBusy
		}
		if !c.running.Enter(visitor, limits.Share(int(budget/cost), c.opts.VisitorShare)) {
			return false, errVisitorCap
		}
		defer c.running.Leave(visitor)
	}
	good, err, _ := c.same.Do(key, func() (any, error) {
		if budget > 0 {
			if !c.memory.TryAcquire(cost) {
				return false, errBusy
			}
			defer c.memory.Release(cost)
		}
		now := c.inUse.Add(cost)
		defer c.inUse.Add(-cost)
		for peak := c.peak.Load(); now > peak && !c.peak.CompareAndSwap(peak, now); peak = c.peak.Load() {
		}
		return h.verify(password), nil
	})
	return good.(bool), err
}
