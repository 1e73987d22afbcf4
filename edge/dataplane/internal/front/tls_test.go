package front

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// TestPeekSNI: the server name is read from a real ClientHello, and the
// returned conn replays every byte the client sent, from the first.
func TestPeekSNI(t *testing.T) {
	cases := []struct{ serverName, want string }{
		{"web.edge.localhost", "web.edge.localhost"},
		{"Pass.Edge.Localhost", "pass.edge.localhost"},
		{"", ""}, // no SNI: still a ClientHello, and still replayed
	}
	for _, c := range cases {
		t.Run(c.serverName, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			defer server.Close()
			var sent bytes.Buffer
			go tls.Client(&teeConn{Conn: client, sent: &sent}, &tls.Config{ServerName: c.serverName,
				InsecureSkipVerify: c.serverName == ""}).Handshake()
			sni, replay, err := peekSNI(server, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if sni != c.want {
				t.Fatalf("sni %q, want %q", sni, c.want)
			}
			hello := sent.Len()
			got := make([]byte, hello)
			replay.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(replay, got); err != nil {
				t.Fatal(err)
			}
			if string(got) != sent.String() {
				t.Fatal("the replayed bytes are not the ClientHello the client sent")
			}
		})
	}
}

func TestPeekSNINotTLS(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	go func() { client.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); client.Close() }()
	if _, _, err := peekSNI(server, 10*time.Second); err == nil {
		t.Fatal("plain HTTP on the TLS port was taken for a ClientHello")
	}
}

// teeConn records what the client writes.
type teeConn struct {
	net.Conn
	sent *bytes.Buffer
}

func (c *teeConn) Write(p []byte) (int, error) {
	c.sent.Write(p)
	return c.Conn.Write(p)
}
