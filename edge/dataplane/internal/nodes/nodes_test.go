package nodes

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func signer(t *testing.T) ssh.Signer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tcpChannel is a TCP connection as an ssh.Channel (the local forward stand-in).
type tcpChannel struct{ *net.TCPConn }

func (c tcpChannel) CloseWrite() error { return c.TCPConn.CloseWrite() }
func (c tcpChannel) SendRequest(string, bool, []byte) (bool, error) {
	return false, errors.New("no requests")
}
func (c tcpChannel) Stderr() io.ReadWriter { return nil }

// echoLocal opens port 7 as a connection to an echo server; any other port fails.
type echoLocal struct {
	addr    string
	mu      sync.Mutex
	origins []string
}

func (e *echoLocal) OpenLocal(port int, origin string) (ssh.Channel, error) {
	e.mu.Lock()
	e.origins = append(e.origins, origin)
	e.mu.Unlock()
	if port != 7 {
		return nil, errors.New("no forward of this port here")
	}
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		return nil, err
	}
	return tcpChannel{c.(*net.TCPConn)}, nil
}

func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return l.Addr().String()
}

type node struct {
	links *Links
	addr  string
	local *echoLocal
}

func startNode(t *testing.T, name string, key ssh.Signer, secret string, echo string) *node {
	t.Helper()
	local := &echoLocal{addr: echo}
	links := New(Config{Name: name, HostKey: key, Secret: []byte(secret), Local: local,
		Held: func() []int { return []int{7} }, Keepalive: 100 * time.Millisecond}) // no Logf: a link may log after its test ended
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go links.Serve(l)
	t.Cleanup(func() { links.Close(); l.Close() })
	return &node{links: links, addr: l.Addr().String(), local: local}
}

func waitUp(t *testing.T, l *Links, name string, want bool) *Link {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if link := l.Get(name); (link != nil) == want {
			return link
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("link to %s up=%v never came", name, want)
	return nil
}

func relay(link *Link, port uint32) (ssh.Channel, error) {
	ch, reqs, err := link.Conn.OpenChannel(ChannelType, ssh.Marshal(RelayPayload{"", port, "198.51.100.7", 4242}))
	if err != nil {
		return nil, err
	}
	go ssh.DiscardRequests(reqs)
	return ch, nil
}

func TestARelayCarriesBytesBothWaysAndEnds(t *testing.T) {
	key, echo := signer(t), echoServer(t)
	a := startNode(t, "a", key, "s3cret", echo)
	b := startNode(t, "b", key, "s3cret", echo)
	a.links.Update([]Peer{{"a", a.addr}, {"b", b.addr}}) // itself is skipped
	link := waitUp(t, a.links, "b", true)
	if got := a.links.Up(); len(got) != 1 || got[0] != "b" {
		t.Fatalf("up = %v", got)
	}
	ch, err := relay(link, 7)
	if err != nil {
		t.Fatal(err)
	}
	payload := strings.Repeat("through the link ", 10000)
	go func() {
		io.WriteString(ch, payload)
		ch.CloseWrite()
	}()
	got, err := io.ReadAll(ch)
	if err != nil || string(got) != payload {
		t.Fatalf("echo: %d bytes, %v", len(got), err)
	}
	ch.Close()
	b.local.mu.Lock()
	defer b.local.mu.Unlock()
	if len(b.local.origins) != 1 || b.local.origins[0] != "198.51.100.7:4242" {
		t.Fatalf("origin seen by the far node: %v", b.local.origins)
	}
}

func TestANodeWithoutTheForwardRefusesAtOnceWithItsReason(t *testing.T) {
	key, echo := signer(t), echoServer(t)
	a := startNode(t, "a", key, "s3cret", echo)
	b := startNode(t, "b", key, "s3cret", echo)
	a.links.Update([]Peer{{"b", b.addr}})
	_, err := relay(waitUp(t, a.links, "b", true), 8)
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) || !strings.Contains(oce.Message, "no forward") {
		t.Fatalf("err = %v", err)
	}
}

func TestOnlyNodesWithTheEdgesKeyAndTheClusterSecretLink(t *testing.T) {
	key, other, echo := signer(t), signer(t), echoServer(t)
	cases := []struct {
		name   string
		key    ssh.Signer
		secret string
		up     bool
	}{
		{"the edge's key and secret", key, "s3cret", true},
		{"the wrong secret", key, "guess", false},
		{"another key", other, "s3cret", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := startNode(t, "b", key, "s3cret", echo)
			x := startNode(t, "x", c.key, c.secret, echo)
			x.links.Update([]Peer{{"b", b.addr}})
			if c.up {
				waitUp(t, x.links, "b", true)
				return
			}
			time.Sleep(500 * time.Millisecond)
			if x.links.Get("b") != nil {
				t.Fatal("a link came up")
			}
		})
	}
}

func TestALinkGoesDownWithItsPeerAndComesBackAndUpdateDropsGonePeers(t *testing.T) {
	key, echo := signer(t), echoServer(t)
	a := startNode(t, "a", key, "s3cret", echo)
	downs := make(chan string, 4)
	a.links.OnDown(func(l *Link) { downs <- l.Name })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	b := New(Config{Name: "b", HostKey: key, Secret: []byte("s3cret"), Local: &echoLocal{addr: echo}})
	go b.Serve(l)
	a.links.Update([]Peer{{"b", addr}})
	first := waitUp(t, a.links, "b", true)
	b.Close() // the peer goes away: its inbound links close
	l.Close()
	select {
	case name := <-downs:
		if name != "b" {
			t.Fatalf("down: %s", name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no down callback")
	}
	l2, err := net.Listen("tcp", addr) // the peer again, same address
	if err != nil {
		t.Fatal(err)
	}
	b2 := New(Config{Name: "b", HostKey: key, Secret: []byte("s3cret"), Local: &echoLocal{addr: echo}})
	go b2.Serve(l2)
	t.Cleanup(func() { b2.Close(); l2.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if link := a.links.Get("b"); link != nil && link.ID != first.ID {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if link := a.links.Get("b"); link == nil || link.ID == first.ID {
		t.Fatal("the link did not come back")
	}
	a.links.Update(nil) // b is no longer live
	waitUp(t, a.links, "b", false)
}

func TestHeldSaysWhichPortsEachPeerHolds(t *testing.T) {
	key, echo := signer(t), echoServer(t)
	a := startNode(t, "a", key, "s3cret", echo)
	b := startNode(t, "b", key, "s3cret", echo)
	c := startNode(t, "c", key, "s3cret", echo)
	a.links.Update([]Peer{{"b", b.addr}, {"c", c.addr}})
	waitUp(t, a.links, "b", true)
	waitUp(t, a.links, "c", true)
	got := a.links.Held(time.Second)
	if len(got) != 2 || len(got["b"]) != 1 || got["b"][0] != 7 || len(got["c"]) != 1 {
		t.Fatalf("held: %v", got)
	}
}
