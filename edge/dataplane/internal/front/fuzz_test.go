package front

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"mysocketd/edge/dataplane/internal/auth"
	"mysocketd/edge/dataplane/internal/limits"
	"mysocketd/edge/dataplane/internal/state"
	"mysocketd/edge/dataplane/internal/tunnels"
)

// fuzzFront is an HTTP front with one socket of every kind and no tunnel.
func fuzzFront() *HTTP {
	holder := state.NewHolder("")
	holder.Replace(state.StateIn{Version: 1, Limits: state.Limits{ConnectionsPerAccount: 10,
		AuthFailuresPerMinute: 5}, Sockets: []state.SocketIn{
		{SocketID: "1", UserID: "u", DNSName: "web.edge.localhost", Type: "http", LocalPorts: []int{10000}},
		{SocketID: "2", UserID: "u", DNSName: "secure.edge.localhost", Type: "https"},
		{SocketID: "3", UserID: "u", DNSName: "raw.edge.localhost", Type: "tcp", TCPPort: 20000},
		{SocketID: "4", UserID: "u", DNSName: "pass.edge.localhost", Type: "http", Protected: true,
			ProtectedUsername: "alice", PasswordHash: "scrypt$16$1$1$MDEyMzQ1Njc4OWFiY2RlZg==$AAAA"},
		{SocketID: "5", UserID: "u", DNSName: "cloud.edge.localhost", Type: "http", CloudAuth: true},
	}})
	sh := Shared{State: holder, Tunnels: tunnels.NewRegistry(time.Second, time.Second, nil),
		Holdings: limits.NewHoldings(), Bounds: Bounds{VisitorShare: 0.5, BodyReadTimeout: time.Second}}
	return NewHTTP(sh, auth.Options{MemoryBudget: 1 << 20, VisitorShare: 1}, "api.edge.localhost", "127.0.0.1:9", nil)
}

// FuzzHTTPFront: whatever request net/http parses, the front answers it
// without panicking, and, no tunnel being connected, every answer is the
// edge's own and says so (Mysocket-Edge).
func FuzzHTTPFront(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: web.edge.localhost\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: WEB.edge.localhost.:8000\r\nMysocket-Edge: no-tunnel\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: pass.edge.localhost\r\nAuthorization: Basic YWxpY2U6d3Jvbmc=\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: secure.edge.localhost\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: raw.edge.localhost\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: cloud.edge.localhost\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: api.edge.localhost\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: nobody.example\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: web.edge.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	front := fuzzFront()
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // net/http refuses it before any handler runs
		}
		r.RemoteAddr = "192.0.2.1:1234"
		rec := httptest.NewRecorder()
		front.ServeHTTP(rec, r)
		if rec.Header().Get("Mysocket-Edge") == "" {
			t.Fatalf("an answer without Mysocket-Edge and no tunnel: %d %v", rec.Code, rec.Header())
		}
	})
}

// byteConn is a connection whose client sent data and then nothing more.
type byteConn struct {
	net.Conn
	r io.Reader
}

func (c *byteConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *byteConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *byteConn) Close() error                     { return nil }
func (c *byteConn) SetReadDeadline(time.Time) error  { return nil }
func (c *byteConn) SetWriteDeadline(time.Time) error { return nil }
func (c *byteConn) SetDeadline(time.Time) error      { return nil }
func (c *byteConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// FuzzPeekSNI: whatever a client sends first, peeking at it never panics, and
// when it yields a name the conn it returns replays every byte sent, in order.
func FuzzPeekSNI(f *testing.F) {
	var hello bytes.Buffer
	client, server := net.Pipe()
	go func() {
		tls.Client(client, &tls.Config{ServerName: "web.edge.localhost"}).Handshake()
	}()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, _ := server.Read(buf)
	hello.Write(buf[:n])
	client.Close()
	server.Close()
	f.Add(hello.Bytes())
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, sent []byte) {
		_, replay, err := peekSNI(&byteConn{r: bytes.NewReader(sent)}, 0)
		if err != nil {
			return
		}
		got, _ := io.ReadAll(replay)
		if !bytes.Equal(got, sent) {
			t.Fatalf("replayed %d bytes, not the %d sent", len(got), len(sent))
		}
	})
}
