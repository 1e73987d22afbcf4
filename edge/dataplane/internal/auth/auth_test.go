package auth

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"golang.org/x/crypto/scrypt"

	"mysocketd/edge/dataplane/internal/limits"
	"mysocketd/edge/dataplane/internal/state"
)

// hash stores password as the Python side does (cheap parameters: a test).
func hash(t *testing.T, password string) string { return hashN(t, password, 16, 1) }

// hashN: the same with scrypt's N and r (memory: 128*N*r bytes a check).
func hashN(t *testing.T, password string, n, r int) string {
	t.Helper()
	salt := []byte("0123456789abcdef")
	key, err := scrypt.Key([]byte(password), salt, n, r, 1, 32)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("scrypt$%d$%d$1$%s$%s", n, r, base64.StdEncoding.EncodeToString(salt),
		base64.StdEncoding.EncodeToString(key))
}

// roomy: a budget far above what the tests' cheap hashes need.
var roomy = Options{MemoryBudget: 1 << 30, VisitorShare: 1}

func TestVerifyScrypt(t *testing.T) {
	good := hash(t, "s3cret")
	cases := []struct {
		name, password, stored string
		want                   bool
	}{
		{"right password", "s3cret", good, true},
		{"wrong password", "s3creT", good, false},
		{"empty password", "", good, false},
		{"not scrypt", "s3cret", "bcrypt" + good[len("scrypt"):], false},
		{"too few fields", "s3cret", "scrypt$16$1$1$AAAA", false},
		{"bad number", "s3cret", "scrypt$x$1$1$AAAA$AAAA", false},
		{"bad base64", "s3cret", "scrypt$16$1$1$!!!!$AAAA", false},
		{"empty hash", "s3cret", "scrypt$16$1$1$AAAA$", false},
		{"N not a power of two", "s3cret", "scrypt$15$1$1$AAAA$AAAA", false},
		{"nothing stored", "s3cret", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := verifyScrypt(c.password, c.stored); got != c.want {
				t.Fatalf("verifyScrypt = %v, want %v", got, c.want)
			}
		})
	}
}

type attempt struct {
	user, pass string // user "": no Authorization header
	peer       string
	want       int // 200: passes
}

func TestCheckerPass(t *testing.T) {
	ok := func(peer string) attempt { return attempt{"alice", "s3cret", peer, 200} }
	wrong := func(peer string) attempt { return attempt{"alice", "nope", peer, 401} }
	cases := []struct {
		name     string
		perMin   float64
		attempts []attempt
	}{
		{"right credentials, twice (the second from the cache)", 3, []attempt{ok("192.0.2.1"), ok("192.0.2.1")}},
		{"no credentials", 3, []attempt{{"", "", "192.0.2.1", 401}}},
		{"wrong user name", 3, []attempt{{"mallory", "s3cret", "192.0.2.1", 401}}},
		{"wrong password", 3, []attempt{wrong("192.0.2.1")}},
		{"failures run out, then even the right password waits", 3, []attempt{
			wrong("192.0.2.1"), wrong("192.0.2.1"), wrong("192.0.2.1"),
			{"alice", "s3cret", "192.0.2.1", 429}, ok("192.0.2.2")}},
		{"missing credentials spend nothing", 1, []attempt{
			{"", "", "192.0.2.1", 401}, {"", "", "192.0.2.1", 401}, ok("192.0.2.1")}},
		{"successes spend nothing", 1, []attempt{ok("192.0.2.1"), ok("192.0.2.1"), wrong("192.0.2.1"), {"alice", "s3cret", "192.0.2.1", 429}}},
		{"no limit", 0, []attempt{wrong("192.0.2.1"), wrong("192.0.2.1"), wrong("192.0.2.1"), ok("192.0.2.1")}},
		{"an IPv6 /64 is one visitor", 2, []attempt{wrong("[2001:db8::1]:1"), wrong("[2001:db8::2]:1"),
			{"alice", "s3cret", "[2001:db8::3]:1", 429}, ok("[2001:db8:0:1::1]:1")}},
	}
	sock := &state.Socket{SocketIn: state.SocketIn{SocketID: "s1", DNSName: "web.edge.localhost",
		Protected: true, ProtectedUsername: "alice", PasswordHash: hash(t, "s3cret")}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			holder := state.NewHolder("")
			holder.Replace(state.StateIn{Limits: state.Limits{AuthFailuresPerMinute: c.perMin}})
			checker := NewChecker(holder, roomy)
			for i, a := range c.attempts {
				r := httptest.NewRequest("GET", "http://web.edge.localhost/", nil)
				if a.user != "" {
					r.SetBasicAuth(a.user, a.pass)
				}
				rec := httptest.NewRecorder()
				passed := checker.Pass(rec, r, sock, a.peer)
				got := rec.Code
				if passed {
					got = http.StatusOK
					if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
						t.Fatalf("attempt %d passed but answered: %v %q", i, rec.Header(), rec.Body)
					}
				}
				if got != a.want {
					t.Fatalf("attempt %d (%s/%s from %s): %d, want %d", i, a.user, a.pass, a.peer, got, a.want)
				}
				switch got {
				case 401:
					if h := rec.Header()["WWW-Authenticate"]; len(h) != 1 || h[0] != `Basic realm="web.edge.localhost", charset="UTF-8"` {
						t.Fatalf("WWW-Authenticate %q", h)
					}
					if rec.Header().Get("Mysocket-Edge") != "unauthorized" {
						t.Fatalf("Mysocket-Edge %q", rec.Header().Get("Mysocket-Edge"))
					}
				case 429:
					if rec.Header().Get("Retry-After") != "60" || rec.Header().Get("Mysocket-Edge") != "rate-limited" {
						t.Fatalf("429 headers %v", rec.Header())
					}
				}
			}
		})
	}
}

func protected(stored string) *state.Socket {
	return &state.Socket{SocketIn: state.SocketIn{SocketID: "s1", DNSName: "web.edge.localhost",
		Protected: true, ProtectedUsername: "alice", PasswordHash: stored}}
}

func pass(c *Checker, sock *state.Socket, password, peer string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "http://web.edge.localhost/", nil)
	r.SetBasicAuth("alice", password)
	rec := httptest.NewRecorder()
	if c.Pass(rec, r, sock, peer) {
		rec.Code = http.StatusOK
	}
	return rec
}

func TestCheckerShedsPastItsBudgetAndPastAVisitorsShare(t *testing.T) {
	sock := protected(hash(t, "s3cret")) // 2 KiB a check
	cases := []struct {
		name   string
		opts   Options
		before func(c *Checker)
		peer   string
		want   int
		reason string
	}{
		{"room: checked", Options{MemoryBudget: 4096, VisitorShare: 0.5}, func(*Checker) {}, "192.0.2.1", 200, ""},
		{"budget spent: shed, not queued", Options{MemoryBudget: 4096, VisitorShare: 1},
			func(c *Checker) { c.memory.TryAcquire(4096) }, "192.0.2.1", 503, "unavailable"},
		{"this visitor runs its share", Options{MemoryBudget: 4096, VisitorShare: 0.5},
			func(c *Checker) { c.running.Enter("192.0.2.1", 0) }, "192.0.2.1", 429, "rate-limited"},
		{"another visitor still checks", Options{MemoryBudget: 4096, VisitorShare: 0.5},
			func(c *Checker) { c.running.Enter("192.0.2.1", 0) }, "192.0.2.2", 200, ""},
		{"the same /64 shares the share", Options{MemoryBudget: 4096, VisitorShare: 0.5},
			func(c *Checker) { c.running.Enter("2001:db8::/64", 0) }, "[2001:db8::9]:1", 429, "rate-limited"},
		{"a hash dearer than the whole budget", Options{MemoryBudget: 1024, VisitorShare: 1},
			func(*Checker) {}, "192.0.2.1", 503, "unavailable"},
		{"no budget: no bound", Options{MemoryBudget: 0, VisitorShare: 0.01},
			func(c *Checker) { c.running.Enter("192.0.2.1", 0) }, "192.0.2.1", 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			holder := state.NewHolder("")
			holder.Replace(state.StateIn{Limits: state.Limits{AuthFailuresPerMinute: 5}})
			checker := NewChecker(holder, c.opts)
			c.before(checker)
			rec := pass(checker, sock, "s3cret", c.peer)
			if rec.Code != c.want || rec.Header().Get("Mysocket-Edge") != c.reason {
				t.Fatalf("%d %q, want %d %q", rec.Code, rec.Header().Get("Mysocket-Edge"), c.want, c.reason)
			}
			if c.want != 200 && rec.Header().Get("Retry-After") != "1" {
				t.Fatalf("Retry-After %q", rec.Header().Get("Retry-After"))
			}
			if !checker.failures.Allowed(limits.Visitor(c.peer), 1) {
				t.Fatal("a shed check was counted as a failure")
			}
		})
	}
}

// TestCheckerBoundsMemoryUnderAFlood: 200 wrong passwords at once from 40
// addresses never run more checks than the budget holds, and each is answered
// by the edge (401, or shed: 429/503).
func TestCheckerBoundsMemoryUnderAFlood(t *testing.T) {
	sock := protected(hashN(t, "s3cret", 1024, 8)) // 1 MiB a check
	holder := state.NewHolder("")
	holder.Replace(state.StateIn{Limits: state.Limits{AuthFailuresPerMinute: 20}})
	budget := int64(4 << 20)
	checker := NewChecker(holder, Options{MemoryBudget: budget, VisitorShare: 0.25})
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[int]int{}
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := pass(checker, sock, fmt.Sprint("wrong-", i), fmt.Sprintf("192.0.2.%d:1", i%40))
			mu.Lock()
			seen[rec.Code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if peak := checker.peak.Load(); peak > budget || peak == 0 {
		t.Fatalf("checks peaked at %d bytes, budget %d", peak, budget)
	}
	for code := range seen {
		if code != 401 && code != 429 && code != 503 {
			t.Fatalf("answers %v", seen)
		}
	}
	if seen[401] == 0 {
		t.Fatalf("no check ran at all: %v", seen)
	}
	if rec := pass(checker, sock, "s3cret", "192.0.2.200:1"); rec.Code != 200 {
		t.Fatalf("after the flood, the right password: %d", rec.Code)
	}
}

// TestCheckerSharesIdenticalChecks: a browser's parallel requests with the same
// password cost one check, even with room for only one at a time.
func TestCheckerSharesIdenticalChecks(t *testing.T) {
	sock := protected(hashN(t, "s3cret", 1<<14, 8)) // 16 MiB, tens of ms
	holder := state.NewHolder("")
	holder.Replace(state.StateIn{})
	checker := NewChecker(holder, Options{MemoryBudget: 16 << 20, VisitorShare: 1})
	var wg sync.WaitGroup
	codes := make([]int, 12)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = pass(checker, sock, "s3cret", fmt.Sprintf("192.0.2.%d:1", i)).Code
		}()
	}
	wg.Wait()
	for i, code := range codes {
		if code != 200 {
			t.Fatalf("request %d: %d (identical checks did not share one run)", i, code)
		}
	}
}
