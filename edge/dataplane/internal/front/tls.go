package front

// The public TLS port: SNI decides, before any byte is answered, whether a
// connection is passed through untouched (a `tls` socket: the app holds the
// certificate) or terminated here (http/https sockets and the API name) and
// handed to the same per-request HTTP front as plain HTTP.
//
// Why it is shaped this way: Go's own TLS stack reads the ClientHello over a
// connection that only records bytes and never writes, so SNI is parsed by a
// proven parser, and the recorded bytes are then replayed either to the
// tunnel or to the real TLS server.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"mysocketd/edge/dataplane/internal/certs"
	"mysocketd/edge/dataplane/internal/logx"
	"mysocketd/edge/dataplane/internal/state"
)

var errPeeked = errors.New("client hello read")

type recordingConn struct {
	net.Conn
	buf bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.buf.Write(p[:n])
	return n, err
}
func (c *recordingConn) Write(p []byte) (int, error) { return 0, io.ErrClosedPipe }

type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// peekSNI returns the server name of the ClientHello and a conn that replays it;
// the ClientHello must come within timeout.
func peekSNI(c net.Conn, timeout time.Duration) (string, net.Conn, error) {
	rec := &recordingConn{Conn: c}
	var sni string
	if timeout > 0 {
		c.SetReadDeadline(time.Now().Add(timeout))
	}
	err := tls.Server(rec, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni = h.ServerName
		return nil, errPeeked
	}}).Handshake()
	c.SetReadDeadline(time.Time{})
	if sni == "" && !errors.Is(err, errPeeked) {
		return "", nil, err
	}
	return strings.ToLower(sni), &prefixConn{c, io.MultiReader(bytes.NewReader(rec.buf.Bytes()), c)}, nil
}

// TLS is the front of the TLS port.
type TLS struct {
	Shared
	certs *certs.Chooser
	http  *ChanListener
}

// NewTLS: terminated connections are handed to http (an HTTP front's server
// accepts them), with certificates from chooser.
func NewTLS(sh Shared, chooser *certs.Chooser, http *ChanListener) *TLS {
	return &TLS{Shared: sh, certs: chooser, http: http}
}

// Serve accepts the TLS port's connections until l (a limits.Listener, which
// waits out EMFILE and caps each visitor) is closed.
func (t *TLS) Serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if !logx.IsClosed(err) {
				logx.Printf("tls front: accept: %v", err)
			}
			t.http.Close()
			return
		}
		go t.handle(c)
	}
}

func (t *TLS) handle(c net.Conn) {
	sni, replay, err := peekSNI(c, t.Bounds.PeekTimeout)
	if err != nil {
		c.Close()
		return
	}
	if own := ownSocket(t.State, c); own != nil { // a Gateway's own address: its table decides (routes.go)
		t.serveOwnAddress(replay, sni, own)
		return
	}
	if sock := t.State.ByDNS(sni); sock != nil && sock.Type == "tls" {
		t.passthrough(replay, sock)
		return
	}
	cfg := &tls.Config{GetCertificate: t.certs.Get, NextProtos: alpn,
		MinVersion: tls.VersionTLS12}
	t.http.push(tls.Server(replay, cfg))
}

func (t *TLS) passthrough(c net.Conn, sock *state.Socket) {
	t.spliceToSocket(c, sock, "tls")
}

// ChanListener hands terminated TLS connections to an http.Server.
type ChanListener struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func NewChanListener(addr net.Addr) *ChanListener {
	return &ChanListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *ChanListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *ChanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *ChanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *ChanListener) Addr() net.Addr { return l.addr }
