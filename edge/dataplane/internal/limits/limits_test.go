package limits

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestVisitor(t *testing.T) {
	cases := []struct{ in, want string }{
		{"192.0.2.7:443", "192.0.2.7"},
		{"192.0.2.7", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:80", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:80", "2001:db8:1:2::/64"}, // same /64: the same visitor
		{"[2001:db8:1:3::1]:80", "2001:db8:1:3::/64"},      // the next /64: another one
		{"[::ffff:192.0.2.7]:80", "192.0.2.7"},             // IPv4-mapped
		{"[fe80::1%eth0]:22", "fe80::/64"},
		{"@", "@"}, // not an address: itself
	}
	for _, c := range cases {
		if got := Visitor(c.in); got != c.want {
			t.Errorf("Visitor(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// fakeClock lets a test move time without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestLimiterSpendsAndRefills(t *testing.T) {
	cases := []struct {
		name      string
		perMinute float64
		spends    int
		elapsed   time.Duration
		want      bool
	}{
		{"fresh key", 5, 0, 0, true},
		{"one failure left", 5, 4, 0, true},
		{"all spent", 5, 5, 0, false},
		{"overspent", 5, 9, 0, false},
		{"one per minute, spent", 1, 1, 0, false},
		{"a tenth of the refill", 5, 5, 6 * time.Second, false},
		{"a fifth: one token back", 5, 5, 13 * time.Second, true},
		{"a minute: full", 5, 5, time.Minute, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1e9, 0)}
			l := newLimiter(100, clock.now)
			for range c.spends {
				l.Spend("192.0.2.1", c.perMinute)
			}
			clock.add(c.elapsed)
			if got := l.Allowed("192.0.2.1", c.perMinute); got != c.want {
				t.Fatalf("Allowed = %v, want %v", got, c.want)
			}
			if !l.Allowed("192.0.2.2", c.perMinute) {
				t.Fatal("another key was limited too")
			}
		})
	}
}

func TestLimiterIsBoundedAndNeverWipedWhole(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l := newLimiter(1000, clock.now)
	for range 5 {
		l.Spend("attacker", 5)
	}
	// a flood of other addresses, each failing once, while the attacker keeps failing
	for i := range 5000 {
		l.Spend(fmt.Sprintf("flood-%d", i), 5)
		if i%100 == 0 {
			l.Spend("attacker", 5)
		}
	}
	if n := l.Len(); n > 1000 {
		t.Fatalf("%d buckets held, want at most 1000", n)
	}
	if l.Allowed("attacker", 5) {
		t.Fatal("the flood reset the attacker's bucket")
	}
}

func TestLimiterFollowsAChangedLimit(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l := newLimiter(10, clock.now)
	l.Spend("k", 1)
	if l.Allowed("k", 1) {
		t.Fatal("one per minute, spent: allowed")
	}
	l.Allowed("k", 600) // raised to 10 a second, from now on
	clock.add(time.Second)
	if !l.Allowed("k", 600) {
		t.Fatal("a raised limit was not applied")
	}
}

func TestShare(t *testing.T) {
	cases := []struct {
		quota int
		share float64
		want  int
	}{
		{1000, 0.05, 50}, {100, 0.05, 5}, {10, 0.05, 1}, {1, 0.05, 1}, {101, 0.05, 6},
		{0, 0.05, 0}, {100, 0, 0}, {100, 1, 100},
	}
	for _, c := range cases {
		if got := Share(c.quota, c.share); got != c.want {
			t.Errorf("Share(%d, %v) = %d, want %d", c.quota, c.share, got, c.want)
		}
	}
}

func TestHoldings(t *testing.T) {
	cases := []struct {
		name   string
		quota  int
		share  float64
		held   map[string]int // visitor -> units held first
		ask    string
		refuse Refusal
	}{
		{"room for both", 10, 0.5, map[string]int{"a": 2}, "b", Granted},
		{"visitor holds its share", 10, 0.2, map[string]int{"a": 2}, "a", VisitorShare},
		{"another visitor still gets one", 10, 0.2, map[string]int{"a": 2}, "b", Granted},
		{"account full", 4, 0.5, map[string]int{"a": 2, "b": 2}, "c", AccountFull},
		{"no quota: no limit", 0, 0.2, map[string]int{"a": 50}, "a", Granted},
		{"no share: only the quota", 10, 0, map[string]int{"a": 9}, "a", Granted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := NewHoldings()
			for v, n := range c.held {
				for range n {
					if _, r := h.Acquire("acct", v, c.quota, c.share); r != Granted {
						t.Fatalf("setup refused: %v", r)
					}
				}
			}
			release, r := h.Acquire("acct", c.ask, c.quota, c.share)
			if r != c.refuse {
				t.Fatalf("Acquire = %v, want %v", r, c.refuse)
			}
			if r == Granted {
				release()
				release() // idempotent
				if _, v := h.Held("acct", c.ask); v != c.held[c.ask] {
					t.Fatalf("after release the visitor holds %d, want %d", v, c.held[c.ask])
				}
			}
			if _, r := h.Acquire("other", c.ask, c.quota, c.share); r != Granted {
				t.Fatal("another account was limited too")
			}
		})
	}
}

func TestHoldingsForgetWhatIsReleased(t *testing.T) {
	h := NewHoldings()
	var releases []func()
	for i := range 1000 {
		release, _ := h.Acquire("acct", fmt.Sprint("v", i), 0, 0.05)
		releases = append(releases, release)
	}
	for _, release := range releases {
		release()
	}
	if len(h.accounts) != 0 || len(h.visitors) != 0 {
		t.Fatalf("maps hold %d accounts and %d visitors after every release", len(h.accounts), len(h.visitors))
	}
}

func TestPassing(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ENFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)}, true},
		{net.ErrClosed, false},
		{errors.New("something else"), false},
	}
	for _, c := range cases {
		if got := Passing(c.err); got != c.want {
			t.Errorf("Passing(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// script is a listener that fails with EMFILE a number of times, then hands out pipes.
type script struct {
	emfile  atomic.Int32
	accepts atomic.Int32
	closed  chan struct{}
	once    sync.Once
	from    string
}

func newScript(emfile int, from string) *script {
	s := &script{closed: make(chan struct{}), from: from}
	s.emfile.Store(int32(emfile))
	return s
}

func (s *script) Accept() (net.Conn, error) {
	s.accepts.Add(1)
	select {
	case <-s.closed:
		return nil, net.ErrClosed
	default:
	}
	if s.emfile.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	a, b := net.Pipe()
	go func() { <-s.closed; b.Close() }()
	return addrConn{a, s.from}, nil
}
func (s *script) Close() error   { s.once.Do(func() { close(s.closed) }); return nil }
func (s *script) Addr() net.Addr { return &net.TCPAddr{} }

type addrConn struct {
	net.Conn
	from string
}

func (c addrConn) RemoteAddr() net.Addr {
	a, _ := net.ResolveTCPAddr("tcp", c.from)
	return a
}

func TestListenerBacksOffOnEMFILE(t *testing.T) {
	inner := newScript(6, "192.0.2.1:1000")
	l := NewListener(inner, "test", NewCounts(), 0, 0)
	defer l.Close()
	start := time.Now()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// 6 failures: waits of 5, 10, 20, 40, 80, 160 ms, not a spin
	if n := inner.accepts.Load(); n != 7 {
		t.Fatalf("%d accept calls for 6 EMFILEs and one connection, want 7", n)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("6 EMFILEs took %v: no backoff", waited)
	}
}

func TestListenerCloseWakesABackoff(t *testing.T) {
	l := NewListener(newScript(1000, "192.0.2.1:1"), "test", NewCounts(), 0, 0)
	done := make(chan error)
	go func() { _, err := l.Accept(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

func TestListenerCapsEachVisitorAndTheTotal(t *testing.T) {
	cases := []struct {
		name          string
		perKey, total int
		from          []string
		open          int // accepted and held open
	}{
		{"per visitor", 2, 0, []string{"192.0.2.1:1", "192.0.2.1:2", "192.0.2.1:3", "192.0.2.2:1"}, 3},
		{"an IPv6 /64 is one visitor", 1, 0, []string{"[2001:db8::1]:1", "[2001:db8::2]:1", "[2001:db8:0:1::1]:1"}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			counts := NewCounts()
			var held []net.Conn
			for _, from := range c.from {
				l := NewListener(newScript(0, from), "test", counts, c.perKey, c.total)
				got := make(chan net.Conn, 1)
				go func() {
					conn, err := l.Accept()
					if err == nil {
						got <- conn
					}
				}()
				select {
				case conn := <-got:
					held = append(held, conn)
				case <-time.After(200 * time.Millisecond): // refused ones are closed and it accepts again
				}
				l.Close()
			}
			if len(held) != c.open {
				t.Fatalf("%d held open, want %d", len(held), c.open)
			}
			for _, conn := range held {
				conn.Close()
			}
			if counts.Open(Visitor(c.from[0])) != 0 {
				t.Fatal("closed connections still counted")
			}
		})
	}
}

func TestListenerTotalWaitsAndReleaseFreesASlot(t *testing.T) {
	l := NewListener(newScript(0, "192.0.2.1:1"), "test", NewCounts(), 0, 1)
	defer l.Close()
	first, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			second <- c
		}
	}()
	select {
	case <-second:
		t.Fatal("a second connection past a total of 1")
	case <-time.After(100 * time.Millisecond):
	}
	first.(*Conn).Release() // a handshake is over: the slot is free, the connection stays
	select {
	case c := <-second:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("Release did not free the slot")
	}
	first.Close() // after Release: nothing counted twice
	if n := len(l.total); n != 0 {
		t.Fatalf("%d slots taken after everything closed", n)
	}
}
