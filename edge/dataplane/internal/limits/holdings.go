package limits

import (
	"maps"
	"math"
	"sync"
)

// Holdings counts what each account holds at once (proxied requests, upgraded
// and spliced connections) and each visitor's part of it, so that one visitor
// can hold at most a share of an account's quota: a visitor who holds requests
// open (a slow body, an idle WebSocket) fills its own share, and the rest of
// the quota stays for everyone else. Counts are deleted when they reach zero,
// so the maps hold only what is held right now.
type Holdings struct {
	mu       sync.Mutex
	accounts map[string]int
	visitors map[[2]string]int
}

// Refusal says which limit refused an Acquire.
type Refusal int

const (
	Granted      Refusal = iota
	AccountFull          // the account holds its whole quota
	VisitorShare         // this visitor holds its share of the account's quota
)

func NewHoldings() *Holdings {
	return &Holdings{accounts: map[string]int{}, visitors: map[[2]string]int{}}
}

// Share is how many of quota one visitor may hold: share of it, at least one
// (quota <= 0 or share <= 0: no limit, 0).
func Share(quota int, share float64) int {
	if quota <= 0 || share <= 0 {
		return 0
	}
	return max(1, int(math.Ceil(float64(quota)*share)))
}

// Acquire one unit for visitor within account, unless the account holds quota
// (quota <= 0: no limit) or the visitor its share of it. release is idempotent.
func (h *Holdings) Acquire(account, visitor string, quota int, share float64) (release func(), refused Refusal) {
	key := [2]string{account, visitor}
	h.mu.Lock()
	defer h.mu.Unlock()
	if quota > 0 && h.accounts[account] >= quota {
		return nil, AccountFull
	}
	if limit := Share(quota, share); limit > 0 && h.visitors[key] >= limit {
		return nil, VisitorShare
	}
	h.accounts[account]++
	h.visitors[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.accounts[account]--; h.accounts[account] <= 0 {
				delete(h.accounts, account)
			}
			if h.visitors[key]--; h.visitors[key] <= 0 {
				delete(h.visitors, key)
			}
		})
	}, Granted
}

// Accounts is what each account holds now (its quota use, for metrics; never a visitor).
func (h *Holdings) Accounts() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.accounts)
}

// Held is what account and visitor hold now (for tests and figures).
func (h *Holdings) Held(account, visitor string) (int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.accounts[account], h.visitors[[2]string{account, visitor}]
}
