package limits

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"mysocketd/edge/dataplane/internal/logx"
)

// Listener is a net.Listener with the caps a public listener needs, in the
// shape of golang.org/x/net/netutil.LimitListener:
//   - per key (a Visitor, by default) at most PerKey connections open at once;
//     one more is accepted and closed at once, so one address can never hold
//     the process's files (a slowloris, a pre-auth flood);
//   - at most Total open at once (0: no total): Accept waits for a free slot
//     before it accepts, so the rest wait in the kernel's backlog and hold no
//     file, as with LimitListener;
//   - an accept error that passes (EMFILE, ENFILE, ENOBUFS, ECONNABORTED...) is
//     retried after a delay doubling from 5 ms to 1 s, as net/http's Server
//     does, instead of spinning or ending the accept loop; the log says so once
//     per episode.
//
// A slot is held until the connection is closed, or until Conn.Release (the
// SSH server gives its pre-auth slot back once the handshake is over).
type Listener struct {
	net.Listener
	Name   string  // in log lines: "http", "ssh pre-auth", ...
	Counts *Counts // open connections per key; one Counts may serve several listeners
	PerKey int     // <= 0: no cap per key
	Key    func(net.Addr) string

	total     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	logs      *rate.Limiter
}

// NewListener caps inner; total <= 0 means no total.
func NewListener(inner net.Listener, name string, counts *Counts, perKey, total int) *Listener {
	l := &Listener{Listener: inner, Name: name, Counts: counts, PerKey: perKey, Key: VisitorOf,
		done: make(chan struct{}), logs: rate.NewLimiter(1, 1)}
	if total > 0 {
		l.total = make(chan struct{}, total)
	}
	return l
}

// Counts is how many of something (open connections, checks) each key holds.
type Counts struct {
	mu sync.Mutex
	n  map[string]int
}

func NewCounts() *Counts { return &Counts{n: map[string]int{}} }

// Enter counts one more for key unless it holds limit already (limit <= 0: no limit).
func (c *Counts) Enter(key string, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if limit > 0 && c.n[key] >= limit {
		return false
	}
	c.n[key]++
	return true
}

// Leave counts one less for key.
func (c *Counts) Leave(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key]--; c.n[key] <= 0 {
		delete(c.n, key)
	}
}

// Open is how many connections key holds (for tests and figures).
func (c *Counts) Open(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// Accept returns the next connection within the caps.
func (l *Listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		if l.total != nil {
			select {
			case l.total <- struct{}{}:
			case <-l.done:
				return nil, net.ErrClosed
			}
		}
		c, err := l.Listener.Accept()
		if err != nil {
			l.freeTotal()
			if !Passing(err) {
				return nil, err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			if delay == 5*time.Millisecond {
				logx.Printf("%s: accept: %v; retrying with a backoff up to 1s", l.Name, err)
			}
			select {
			case <-time.After(delay):
				continue
			case <-l.done:
				return nil, net.ErrClosed
			}
		}
		delay = 0
		key := l.Key(c.RemoteAddr())
		if l.Counts != nil && !l.Counts.Enter(key, l.PerKey) {
			l.freeTotal()
			c.Close()
			if l.logs.Allow() {
				logx.Printf("%s: connection from %s closed: it holds its %d open connections", l.Name, key, l.PerKey)
			}
			continue
		}
		return &Conn{Conn: c, release: func() {
			if l.Counts != nil {
				l.Counts.Leave(key)
			}
			l.freeTotal()
		}}, nil
	}
}

func (l *Listener) freeTotal() {
	if l.total != nil {
		<-l.total
	}
}

// Close closes the listener and wakes an Accept that waits.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Passing reports whether an accept error is one to wait out rather than stop on.
func Passing(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS,
		syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR, syscall.EAGAIN} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Conn is a connection accepted within a Listener's caps.
type Conn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Release gives the connection's slot back before it is closed (idempotent).
func (c *Conn) Release() { c.once.Do(c.release) }

func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.Release()
	return err
}

// CloseWrite half-closes when the connection can (net/http and splices use it).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// NetConn is the accepted connection itself (e.g. a *net.TCPConn).
func (c *Conn) NetConn() net.Conn { return c.Conn }
