// Package limits answers "may this key have one more": small limits that
// keep one visitor or account from taking the edge down.
//
// Limiter is a token bucket per key (an address, an account): capacity N,
// refilled at N per minute; only failures spend tokens, so a user who types
// the password right is never slowed down. Counter counts what an account
// holds at once (concurrent proxied requests and connections).
package limits

import (
	"sync"
	"time"
)

type bucket struct {
	tokens float64
	at     time.Time
}

// Limiter is a token bucket per key; see the package comment.
type Limiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

func NewLimiter() *Limiter { return &Limiter{buckets: map[string]*bucket{}} }

func (l *Limiter) refill(key string, perMinute float64) *bucket {
	now := time.Now()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) > 100000 { // bounded memory under a flood of addresses
			l.buckets = map[string]*bucket{}
		}
		b = &bucket{tokens: perMinute, at: now}
		l.buckets[key] = b
	}
	b.tokens = min(perMinute, b.tokens+now.Sub(b.at).Minutes()*perMinute)
	b.at = now
	return b
}

// Allowed reports whether key has a token left (it spends none).
func (l *Limiter) Allowed(key string, perMinute float64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refill(key, perMinute).tokens >= 1
}

// Spend takes one token from key (a failure).
func (l *Limiter) Spend(key string, perMinute float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill(key, perMinute).tokens--
}

// Counter counts the units each key holds at once.
type Counter struct {
	mu sync.Mutex
	n  map[string]int
}

func NewCounter() *Counter { return &Counter{n: map[string]int{}} }

// Acquire one unit for key unless it holds quota already (quota <= 0: no limit).
func (c *Counter) Acquire(key string, quota int) (func(), bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if quota > 0 && c.n[key] >= quota {
		return nil, false
	}
	c.n[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.n[key]--
			if c.n[key] <= 0 {
				delete(c.n, key)
			}
			c.mu.Unlock()
		})
	}, true
}
