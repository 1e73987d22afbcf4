// Package auth answers "may this visitor reach this socket": the visitor
// authentication of protected sockets (basic auth today; the OIDC sign-in
// belongs here too). The HTTP front asks Checker.Pass before it proxies a
// request; on refusal the Checker has already answered, with answer.Write.
//
// Why it is shaped this way: passwords are stored by the Python side as
// scrypt hashes, which cost tens of milliseconds on purpose, so a verified
// password is cached (keyed by socket, hash and password: a changed password
// or a recreated socket never hits an old entry); failed attempts are
// rate-limited per client address, and only failures spend the budget.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"

	"mysocketd/edge/dataplane/internal/answer"
	"mysocketd/edge/dataplane/internal/limits"
	"mysocketd/edge/dataplane/internal/state"
)

// Checker checks visitors against their socket's credentials.
type Checker struct {
	state    *state.Holder
	authOK   sync.Map // sha256(socket, hash, password) -> struct{}
	failures *limits.Limiter
}

func NewChecker(holder *state.Holder) *Checker {
	return &Checker{state: holder, failures: limits.NewLimiter()}
}

// Pass reports whether r, from the address peer, may reach the protected
// socket sock; when not, it has answered 401 (unauthorized) or 429 (rate-limited).
func (c *Checker) Pass(w http.ResponseWriter, r *http.Request, sock *state.Socket, peer string) bool {
	limit := c.state.Limits().AuthFailuresPerMinute
	if limit > 0 && !c.failures.Allowed("auth:"+peer, limit) {
		w.Header().Set("Retry-After", "60")
		answer.Write(w, http.StatusTooManyRequests, answer.RateLimited, "too many failed logins from your address; try again later")
		return false
	}
	user, pass, ok := r.BasicAuth()
	if ok && subtle.ConstantTimeCompare([]byte(user), []byte(sock.ProtectedUsername)) == 1 {
		sum := sha256.Sum256([]byte(sock.SocketID + "\x00" + sock.PasswordHash + "\x00" + pass))
		key := hex.EncodeToString(sum[:])
		if _, hit := c.authOK.Load(key); hit {
			return true
		}
		if verifyScrypt(pass, sock.PasswordHash) {
			c.authOK.Store(key, struct{}{})
			return true
		}
	}
	if ok && limit > 0 {
		c.failures.Spend("auth:"+peer, limit)
	}
	// spelled as RFC 7235 does (not Go's canonical Www-Authenticate), for naive clients
	w.Header()["WWW-Authenticate"] = []string{fmt.Sprintf(`Basic realm="%s", charset="UTF-8"`, sock.DNSName)}
	answer.Write(w, http.StatusUnauthorized, answer.Unauthorized, "this socket needs a username and password")
	return false
}
