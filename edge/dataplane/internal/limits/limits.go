// Package limits answers "may this key have one more": the limits that keep
// one visitor or account from taking the edge down, and what counts as a
// visitor (an address; an IPv6 /64). Every structure here is bounded: maps
// hold only what is held right now, and the failure buckets live in an
// expiring LRU of fixed size.
//
//   - Limiter: token buckets per key for failures (basic-auth attempts);
//   - Holdings: what an account holds at once, and each visitor's share of it;
//   - Listener: caps on open connections per visitor and in total, and an
//     accept loop that waits out EMFILE instead of spinning.
package limits

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/time/rate"
)

// Limiter is a token bucket per key (a visitor, an account): capacity N,
// refilled at N per minute; only failures spend tokens, so a user who types
// the password right is never slowed down. Buckets are golang.org/x/time/rate
// limiters held in a bounded, expiring LRU (hashicorp/golang-lru):
//   - bounded: at most maxKeys buckets, so a flood of addresses costs a fixed
//     amount of memory; when full, the least recently used bucket goes, never
//     all of them (the map it replaces was wiped whole at 100k keys, handing
//     every attacker a fresh budget);
//   - expiring: a bucket not spent for a little over a minute is dropped,
//     which loses nothing (it would have refilled by then anyway), and a bucket
//     being spent is kept fresh by every spend, so waiting is the only way to
//     get tokens back.
type Limiter struct {
	mu      sync.Mutex
	buckets *expirable.LRU[string, *rate.Limiter]
	now     func() time.Time
}

// LimiterKeys bounds the buckets of one Limiter (a few hundred bytes each).
const LimiterKeys = 100_000

// refillTTL: a bucket untouched this long is full again, so dropping it loses nothing.
const refillTTL = time.Minute + 5*time.Second

func NewLimiter() *Limiter { return newLimiter(LimiterKeys, time.Now) }

func newLimiter(maxKeys int, now func() time.Time) *Limiter {
	return &Limiter{buckets: expirable.NewLRU[string, *rate.Limiter](maxKeys, nil, refillTTL), now: now}
}

func (l *Limiter) bucket(key string, perMinute float64, create bool) *rate.Limiter {
	b, ok := l.buckets.Get(key)
	if !ok {
		if !create {
			return nil
		}
		b = rate.NewLimiter(rate.Limit(perMinute/60), burst(perMinute))
	} else if b.Limit() != rate.Limit(perMinute/60) { // the limit was changed by a state push
		b.SetLimitAt(l.now(), rate.Limit(perMinute/60))
		b.SetBurstAt(l.now(), burst(perMinute))
	}
	return b
}

func burst(perMinute float64) int { return max(1, int(perMinute)) }

// Allowed reports whether key has a token left (it spends none).
func (l *Limiter) Allowed(key string, perMinute float64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, perMinute, false)
	return b == nil || b.TokensAt(l.now()) >= 1
}

// Spend takes one token from key (a failure), and keeps its bucket fresh.
func (l *Limiter) Spend(key string, perMinute float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, perMinute, true)
	b.AllowN(l.now(), 1)
	l.buckets.Add(key, b)
}

// Len is how many buckets are held (for tests and figures).
func (l *Limiter) Len() int { return l.buckets.Len() }
