package front

// What the fronts tell internal/metrics: each HTTP request once its answer is
// done (status class, and the edge's reason when the edge answered), the
// bytes of request and answer bodies and of upgraded and spliced streams,
// and each visitor connection of a socket.
//
// Why it is shaped this way: who answered is read from the one place the
// edge marks its own answers, the Mysocket-Edge header at WriteHeader time
// (the app's answers never carry it: fromApp strips it first), so no answer
// path needs its own call; the writer wraps the visitor's ResponseWriter with
// Unwrap, so http.ResponseController (flush, deadlines, hijack) sees through
// it as through toVisitor.

import (
	"context"
	"io"
	"net/http"
	"time"

	"mysocketd/edge/dataplane/internal/answer"
	"mysocketd/edge/dataplane/internal/metrics"
	"mysocketd/edge/dataplane/internal/state"
)

type ctxMeterKey struct{}

// meteredWriter records one request's status, the edge's reason and the bytes of its answer.
type meteredWriter struct {
	http.ResponseWriter
	m        *metrics.Edge
	start    time.Time
	socketID string
	skip     bool // not a socket's request (the REST API, an ACME challenge)
	code     int
	reason   string
	in, out  metrics.Counter
}

func (f *HTTP) meter(w http.ResponseWriter) *meteredWriter {
	return &meteredWriter{ResponseWriter: w, m: f.Metrics, start: time.Now()}
}

func (w *meteredWriter) WriteHeader(code int) {
	if w.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.code = code
		w.reason = w.Header().Get(answer.Header)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *meteredWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.out.Add(n)
	return n, err
}

func (w *meteredWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bind names the request's socket: counted under it from here on, its body's bytes too, and its
// visitor connection once per socket; returns r with the writer in its context (for fromApp).
func (w *meteredWriter) bind(r *http.Request, sock *state.Socket) *http.Request {
	w.socketID = sock.SocketID
	if w.m == nil {
		return r
	}
	w.in, w.out = w.m.Traffic(sock.SocketID)
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingBody{r.Body, w.in}
	}
	if v, _ := r.Context().Value(ctxVisitor).(*visitor); v != nil && v.firstFor(sock.SocketID) {
		front := "http"
		if r.TLS != nil {
			front = "https"
		}
		w.m.Connection(sock.SocketID, front)
	}
	return r.WithContext(context.WithValue(r.Context(), ctxMeterKey{}, w))
}

// done counts the request (ServeHTTP defers it, so a panic that aborts an answer counts too).
func (w *meteredWriter) done() {
	if w.skip || w.m == nil {
		return
	}
	code, reason := w.code, w.reason
	switch {
	case code == 499: // the visitor left (proxyError): nobody read an answer
		reason = metrics.VisitorLeft
	case code == 0:
		code = http.StatusOK
	}
	w.m.Request(w.socketID, reason, code, time.Since(w.start))
}

// firstFor: the visitor's connection has not been counted for this socket yet (now it is).
func (v *visitor) firstFor(socketID string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.counted == socketID {
		return false
	}
	v.counted = socketID
	return true
}

// countingBody counts a request body's bytes as they are read.
type countingBody struct {
	io.ReadCloser
	n metrics.Counter
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(n)
	return n, err
}

// countingUpgrade counts an upgraded connection's bytes (the app's side: what is read from it
// goes out to the visitor, what is written to it came in from the visitor).
type countingUpgrade struct {
	io.ReadWriteCloser
	in, out metrics.Counter
}

func (u *countingUpgrade) Read(p []byte) (int, error) {
	n, err := u.ReadWriteCloser.Read(p)
	u.out.Add(n)
	return n, err
}

func (u *countingUpgrade) Write(p []byte) (int, error) {
	n, err := u.ReadWriteCloser.Write(p)
	u.in.Add(n)
	return n, err
}

// meterUpgrade wraps an upgraded answer's body (fromApp) so its bytes are counted.
func meterUpgrade(res *http.Response) {
	w, _ := res.Request.Context().Value(ctxMeterKey{}).(*meteredWriter)
	if w == nil || w.m == nil {
		return
	}
	if w.code == 0 { // ReverseProxy writes the 101 on the hijacked connection, not through w
		w.code = http.StatusSwitchingProtocols
	}
	if rwc, ok := res.Body.(io.ReadWriteCloser); ok {
		res.Body = &countingUpgrade{rwc, w.in, w.out}
	}
}
