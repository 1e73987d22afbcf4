package front

// The fronts' bounds: how long a visitor or an app may keep something open
// without progress, and the edge's own voice kept its own.
//
// Why it is shaped this way: every timeout here measures progress, never a
// total, so a slow but live visitor (a large upload over a poor link, a long
// WebSocket) is never cut, and one that stops moving is:
//   - a request body must bring a byte within BodyReadTimeout of the last one
//     (a byte every 30 s holds nothing for long; nginx's client_body_timeout
//     works the same way); a stalled body is answered 408 `timeout`;
//   - an upgraded connection (WebSocket) or a splice (tls passthrough, tcp)
//     ends after its idle timeout with no byte either way (idleWatch): a
//     one-way stream keeps both directions alive;
//   - the app must begin its answer within ResponseHeaderTimeout (504 `timeout`),
//     and the visitor must take each write of it within SendTimeout;
// The edge speaks with the headers in answer.Voice; what the app sends (and
// what a visitor sends to the app) never carries them, 1xx and trailers
// included, so only the edge can mark an answer as its own.

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"mysocketd/edge/dataplane/internal/answer"
)

// Bounds are the fronts' timeouts and visitor limits (main's flags; edge/README.md lists them).
type Bounds struct {
	HeadTimeout           time.Duration // request line and headers, from the first byte
	BodyReadTimeout       time.Duration // between two reads of a request body
	ResponseHeaderTimeout time.Duration // until the app begins its answer
	IdleTimeout           time.Duration // a keep-alive connection between requests
	SendTimeout           time.Duration // for a visitor to take each write of an answer
	UpgradeIdleTimeout    time.Duration // an upgraded connection with no byte either way
	SpliceIdleTimeout     time.Duration // a tls passthrough or tcp connection, the same
	VisitorShare          float64       // of connections-per-account one visitor may hold
	PeekTimeout           time.Duration // a TLS ClientHello, from the connection
}

// errBodyStalled: a request body brought nothing for BodyReadTimeout.
type errBodyStalled struct{ err error }

func (e *errBodyStalled) Error() string { return "request body stalled: " + e.err.Error() }
func (e *errBodyStalled) Unwrap() error { return e.err }

// stallGuard reads a request body with a read deadline renewed before every
// read. It stops touching the connection once the handler is done (done),
// because the connection then belongs to the next request; the deadline it
// leaves bounds what net/http still reads of an unread body.
type stallGuard struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	mu      sync.Mutex
	done    bool
}

func (g *stallGuard) Read(p []byte) (int, error) {
	g.mu.Lock()
	if !g.done {
		g.rc.SetReadDeadline(time.Now().Add(g.timeout))
	}
	g.mu.Unlock()
	n, err := g.ReadCloser.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return n, &errBodyStalled{err}
	}
	if err != nil {
		g.finish(true)
	}
	return n, err
}

// finish stops the guard; clear: lift its deadline (the body is read: net/http's
// own read for the next request must not inherit it).
func (g *stallGuard) finish(clear bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.done && clear {
		g.rc.SetReadDeadline(time.Time{})
	}
	g.done = true
}

// guardBody puts a stallGuard on r's body, if it has one; the returned func
// ends the guard when the handler returns.
func guardBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) func() {
	if timeout <= 0 || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return func() {}
	}
	g := &stallGuard{ReadCloser: r.Body, rc: http.NewResponseController(w), timeout: timeout}
	g.rc.SetReadDeadline(time.Now().Add(timeout))
	r.Body = g
	return func() { g.finish(false) } // the deadline stays for what net/http reads away after
}

// idleWatch calls onIdle once nothing touched it for timeout. Each direction
// of a splice or an upgraded connection touches it as bytes move, so a
// one-way stream keeps both directions alive, and a write blocked on a peer
// who stopped reading is no progress. A timer rather than deadlines: a
// deadline on a tunnel's channel sends every read through a goroutine.
type idleWatch struct {
	last    atomic.Int64 // unix nanoseconds of the last byte either way
	timeout time.Duration
	timer   *time.Timer
}

func watchIdle(timeout time.Duration, onIdle func()) *idleWatch {
	w := &idleWatch{timeout: timeout}
	w.touch()
	w.timer = time.AfterFunc(timeout, func() {
		if quiet := time.Since(time.Unix(0, w.last.Load())); quiet < w.timeout {
			w.timer.Reset(w.timeout - quiet)
			return
		}
		onIdle()
	})
	return w
}

func (w *idleWatch) touch() { w.last.Store(time.Now().UnixNano()) }
func (w *idleWatch) stop()  { w.timer.Stop() }

// idleUpgrade is the app's side of an upgraded connection as ReverseProxy
// copies it both ways: closed (which ends the copies and the visitor's side)
// after timeout with no byte either way.
type idleUpgrade struct {
	io.ReadWriteCloser
	watch *idleWatch
}

func newIdleUpgrade(rwc io.ReadWriteCloser, timeout time.Duration) *idleUpgrade {
	return &idleUpgrade{ReadWriteCloser: rwc, watch: watchIdle(timeout, func() { rwc.Close() })}
}

func (u *idleUpgrade) Read(p []byte) (int, error) {
	n, err := u.ReadWriteCloser.Read(p)
	u.watch.touch()
	return n, err
}

func (u *idleUpgrade) Write(p []byte) (int, error) {
	n, err := u.ReadWriteCloser.Write(p)
	u.watch.touch()
	return n, err
}

func (u *idleUpgrade) Close() error {
	u.watch.stop()
	return u.ReadWriteCloser.Close()
}

// toVisitor is what ReverseProxy writes the app's answer through: the edge's
// headers are kept out of the 1xx answers it relays (final answers are
// cleaned in ModifyResponse), and every write must be taken by the visitor
// within sendTimeout, so a visitor who stops reading holds nothing for long.
type toVisitor struct {
	http.ResponseWriter
	rc          *http.ResponseController
	sendTimeout time.Duration
}

func newToVisitor(w http.ResponseWriter, sendTimeout time.Duration) *toVisitor {
	return &toVisitor{ResponseWriter: w, rc: http.NewResponseController(w), sendTimeout: sendTimeout}
}

func (w *toVisitor) WriteHeader(code int) {
	if code < 200 {
		answer.Strip(w.Header())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *toVisitor) Write(p []byte) (int, error) {
	if w.sendTimeout > 0 {
		w.rc.SetWriteDeadline(time.Now().Add(w.sendTimeout))
	}
	return w.ResponseWriter.Write(p)
}

// done lifts the write deadline: the connection's next answer starts afresh.
func (w *toVisitor) done() {
	if w.sendTimeout > 0 {
		w.rc.SetWriteDeadline(time.Time{})
	}
}

func (w *toVisitor) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// trailerGuard strips the edge's headers from an answer's trailers, which
// net/http fills in while the body reaches its end.
type trailerGuard struct {
	io.ReadCloser
	res *http.Response
}

func (g trailerGuard) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	if err == io.EOF {
		answer.Strip(g.res.Trailer)
	}
	return n, err
}
