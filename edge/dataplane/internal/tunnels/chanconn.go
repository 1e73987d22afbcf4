package tunnels

// ChanConn: an SSH channel as a net.Conn whose deadlines work.
//
// Why it is shaped this way: golang.org/x/crypto/ssh gives a channel no
// deadline, and a Read or Write blocked on it can only be ended by closing the
// channel (its own tcpip chanConn answers "deadline not supported"). So:
//   - with no deadline set, Read and Write call the channel directly: the
//     proxied request's path costs nothing more than before (a goroutine hop
//     on every call cost ~10% of keep-alive requests on one connection);
//   - with a deadline set, the channel call runs in a goroutine of its own and
//     the caller waits for it, for the deadline or for Close, whichever comes
//     first; the conn stays usable after a timeout. A Read that times out
//     leaves its channel read under way: what it brings is kept for the next
//     Read (reads go through the conn's own buffer, so the caller may reuse
//     its buffer at once). A Write that times out may still deliver its bytes
//     later, so the next Write waits for it first; as with TLS, a write timeout
//     is best treated as the end of the stream;
//   - a deadline set while a direct call is already blocked cannot interrupt
//     it, so when that deadline passes the channel is closed: the call returns
//     os.ErrDeadlineExceeded and the conn is done (a deadline timer that closes).

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// A ChanConn is a net.Conn for net/http and the splices, and an ssh.Channel for the relay.
var (
	_ net.Conn    = (*ChanConn)(nil)
	_ ssh.Channel = (*ChanConn)(nil)
)

// readChunk bounds the conn's read buffer (a channel read returns at most what is buffered).
const readChunk = 32 << 10

// ChanConn is an SSH channel as a net.Conn (for net/http and splicing).
type ChanConn struct {
	ch      ssh.Channel
	fwd     *Forward // nil in tests
	closed  chan struct{}
	once    sync.Once
	hookMu  sync.Mutex
	onEnd   []func()
	expired atomic.Bool // closed because a deadline passed during a direct call

	rd, wd deadline

	rmu      sync.Mutex
	rdirect  direct
	reading  bool // a channel read is under way (started by a Read that may have timed out)
	readDone chan readResult
	rbuf     []byte // what channel reads fill
	rleft    []byte // read from the channel, not returned yet
	rerr     error  // the channel's read error, returned once rleft is empty (sticky)

	wmu       sync.Mutex
	wdirect   direct
	writing   bool // a channel write is under way (its Write timed out)
	writeDone chan error
	wbuf      []byte
	werr      error
}

type readResult struct {
	n   int
	err error
}

// direct is the direct call under way, if any: done is closed when it returns.
type direct struct {
	mu   sync.Mutex
	done chan struct{}
}

// begin registers a direct call unless d (the op's deadline) is set: false
// means take the goroutine path. Registering before looking at the deadline
// means a concurrent Set*Deadline either sees this call or is seen by it.
func (x *direct) begin(d *deadline) bool {
	done := make(chan struct{})
	x.mu.Lock()
	x.done = done
	x.mu.Unlock()
	if d.isSet() {
		x.end()
		return false
	}
	return true
}

func (x *direct) end() {
	x.mu.Lock()
	if x.done != nil {
		close(x.done)
		x.done = nil
	}
	x.mu.Unlock()
}

func (x *direct) current() chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.done
}

func newChanConn(ch ssh.Channel, fwd *Forward) *ChanConn {
	return &ChanConn{ch: ch, fwd: fwd, closed: make(chan struct{}), rd: makeDeadline(),
		wd: makeDeadline(), readDone: make(chan readResult, 1), writeDone: make(chan error, 1)}
}

// Forward is the forward the channel was opened on.
func (c *ChanConn) Forward() *Forward { return c.fwd }

// OnClose runs f once the conn is closed (at once if it is already).
func (c *ChanConn) OnClose(f func()) {
	c.hookMu.Lock()
	select {
	case <-c.closed:
		c.hookMu.Unlock()
		f()
		return
	default:
	}
	c.onEnd = append(c.onEnd, f)
	c.hookMu.Unlock()
}

func (c *ChanConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if len(c.rleft) > 0 {
			n := copy(p, c.rleft)
			c.rleft = c.rleft[n:]
			return n, nil
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		if !c.reading {
			if err := c.usable(&c.rd); err != nil {
				return 0, err
			}
			if c.rdirect.begin(&c.rd) {
				n, err := c.ch.Read(p)
				c.rdirect.end()
				if err != nil {
					c.rerr = c.mapErr(err)
				}
				return n, c.mapErr(err)
			}
			size := min(len(p), readChunk)
			if cap(c.rbuf) < size {
				c.rbuf = make([]byte, size)
			}
			buf := c.rbuf[:size]
			c.reading = true
			go func() {
				n, err := c.ch.Read(buf)
				c.readDone <- readResult{n, err}
			}()
		}
		select {
		case r := <-c.readDone:
			c.reading = false
			c.rleft, c.rerr = c.rbuf[:r.n], c.mapErr(r.err)
		case <-c.rd.wait():
			return 0, os.ErrDeadlineExceeded
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
}

func (c *ChanConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writing { // the write of a Write that timed out: it goes out first
		if err := c.waitWrite(); err != nil {
			return 0, err
		}
	}
	if c.werr != nil {
		return 0, c.werr
	}
	if err := c.usable(&c.wd); err != nil {
		return 0, err
	}
	if c.wdirect.begin(&c.wd) {
		n, err := c.ch.Write(p)
		c.wdirect.end()
		if err != nil {
			c.werr = c.mapErr(err)
		}
		return n, c.mapErr(err)
	}
	if cap(c.wbuf) < len(p) {
		c.wbuf = make([]byte, len(p))
	}
	buf := c.wbuf[:len(p)]
	copy(buf, p) // the caller may reuse p as soon as Write returns, even on a timeout
	c.writing = true
	go func() {
		_, err := c.ch.Write(buf)
		c.writeDone <- err
	}()
	if err := c.waitWrite(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// waitWrite waits for the write under way; called with wmu held.
func (c *ChanConn) waitWrite() error {
	select {
	case err := <-c.writeDone:
		c.writing = false
		if err != nil {
			c.werr = c.mapErr(err)
		}
		return c.werr
	case <-c.wd.wait():
		return os.ErrDeadlineExceeded
	case <-c.closed:
		return net.ErrClosed
	}
}

// usable: nil unless the conn is closed or d has passed.
func (c *ChanConn) usable(d *deadline) error {
	select {
	case <-c.closed:
		if c.expired.Load() {
			return os.ErrDeadlineExceeded
		}
		return net.ErrClosed
	case <-d.wait():
		return os.ErrDeadlineExceeded
	default:
		return nil
	}
}

// mapErr: the error of a direct call ended by its deadline is the deadline's.
func (c *ChanConn) mapErr(err error) error {
	if err != nil && c.expired.Load() {
		return os.ErrDeadlineExceeded
	}
	return err
}

// SendRequest and Stderr make a ChanConn an ssh.Channel too, for the relay
// between nodes (Registry.OpenLocal), which splices two channels.
func (c *ChanConn) SendRequest(name string, wantReply bool, payload []byte) (bool, error) {
	return c.ch.SendRequest(name, wantReply, payload)
}

func (c *ChanConn) Stderr() io.ReadWriter { return c.ch.Stderr() }

// CloseWrite sends EOF: the tunnel's client sees the visitor's half-close.
func (c *ChanConn) CloseWrite() error { return c.ch.CloseWrite() }

func (c *ChanConn) Close() error {
	var err error
	c.once.Do(func() {
		c.hookMu.Lock()
		close(c.closed)
		hooks := c.onEnd
		c.onEnd = nil
		c.hookMu.Unlock()
		if err = c.ch.Close(); errors.Is(err, io.EOF) {
			err = nil // the other end had closed it already
		}
		if c.fwd != nil {
			c.fwd.mu.Lock()
			delete(c.fwd.channels, c)
			c.fwd.mu.Unlock()
		}
		for _, f := range hooks {
			f()
		}
	})
	return err
}

type tunnelAddr struct{ port int }

func (a tunnelAddr) Network() string { return "ssh" }
func (a tunnelAddr) String() string  { return fmt.Sprintf("tunnel:%d", a.port) }

func (c *ChanConn) LocalAddr() net.Addr { return tunnelAddr{0} }
func (c *ChanConn) RemoteAddr() net.Addr {
	if c.fwd == nil {
		return tunnelAddr{0}
	}
	return tunnelAddr{c.fwd.Port}
}

func (c *ChanConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *ChanConn) SetReadDeadline(t time.Time) error {
	c.rd.set(t)
	c.expireDirect(&c.rd, &c.rdirect)
	return nil
}

func (c *ChanConn) SetWriteDeadline(t time.Time) error {
	c.wd.set(t)
	c.expireDirect(&c.wd, &c.wdirect)
	return nil
}

// expireDirect: a direct call under way that d catches up with ends with the channel.
func (c *ChanConn) expireDirect(d *deadline, x *direct) {
	done := x.current()
	if done == nil || !d.isSet() {
		return
	}
	passed := d.wait()
	go func() {
		select {
		case <-passed:
			select {
			case <-done: // it returned in time after all
			default:
				c.expired.Store(true)
				c.Close()
			}
		case <-done:
		case <-c.closed:
		}
	}()
}

// deadline is a time after which its channel is closed; set may move it either way
// (the shape of the standard library's net.Pipe deadlines).
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // closed once the deadline has passed
	isOn   bool          // a deadline is set (not zero)
}

func makeDeadline() deadline { return deadline{cancel: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait until its func has closed cancel
	}
	d.timer = nil
	d.isOn = !t.IsZero()
	passed := isClosed(d.cancel)
	if t.IsZero() {
		if passed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if wait := time.Until(t); wait > 0 {
		if passed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(wait, func() { close(cancel) })
		return
	}
	if !passed {
		close(d.cancel)
	}
}

func (d *deadline) isSet() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.isOn
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
