package main

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

// peekSNI returns the server name of the ClientHello and a conn that replays it.
func peekSNI(c net.Conn) (string, net.Conn, error) {
	rec := &recordingConn{Conn: c}
	var sni string
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
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

type TLSFront struct {
	state *StateHolder
	reg   *Registry
	certs *Certs
	conns *Counter
	http  *chanListener
}

func (t *TLSFront) Serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if isClosed(err) {
				t.http.Close()
				return
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go t.handle(c)
	}
}

func (t *TLSFront) handle(c net.Conn) {
	sni, replay, err := peekSNI(c)
	if err != nil {
		c.Close()
		return
	}
	if sock := t.state.ByDNS(sni); sock != nil && sock.Type == "tls" {
		t.passthrough(replay, sock)
		return
	}
	cfg := &tls.Config{GetCertificate: t.certs.Get, NextProtos: []string{"http/1.1"},
		MinVersion: tls.VersionTLS12}
	t.http.push(tls.Server(replay, cfg))
}

func (t *TLSFront) passthrough(c net.Conn, sock *Socket) {
	spliceToSocket(c, sock, t.reg, t.conns, t.state.Limits())
}

// spliceToSocket carries a visitor's connection (tcp, tls) to one of the
// socket's tunnels, within the account's connection quota, and closes it.
func spliceToSocket(c net.Conn, sock *Socket, reg *Registry, conns *Counter, limits Limits) {
	defer c.Close()
	release, ok := conns.Acquire(sock.UserID, limits.ConnectionsPerAccount)
	if !ok {
		logf("%s: connection refused: the account holds its quota of %d connections",
			sock.DNSName, limits.ConnectionsPerAccount)
		return
	}
	defer release()
	ch, err := reg.Open(reg.Candidates(sock), c.RemoteAddr().String())
	if err != nil {
		logf("%s socket %s: %v", sock.Type, sock.DNSName, err)
		return
	}
	splice(c, ch)
}

// splice copies both ways with half-closes until both directions ended.
func splice(a net.Conn, b *chanConn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(b, a)
		b.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		io.Copy(a, b)
		if tc, ok := a.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		} else {
			a.Close()
		}
	}()
	wg.Wait()
	b.Close()
	a.Close()
}

// chanListener hands terminated TLS connections to an http.Server.
type chanListener struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
