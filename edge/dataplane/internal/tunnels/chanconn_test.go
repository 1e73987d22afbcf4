package tunnels

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// channelPair opens one channel over a fresh in-memory SSH connection: both ends as ChanConns.
func channelPair(t testing.TB) (*ChanConn, *ChanConn, func()) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	server := &ssh.ServerConfig{NoClientAuth: true}
	server.AddHostKey(signer)
	// a real loopback connection: over net.Pipe both ends would block sending their version
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	type accepted struct {
		ch  ssh.Channel
		err error
	}
	got := make(chan accepted, 1)
	var sconn *ssh.ServerConn
	go func() {
		conn, chans, reqs, err := ssh.NewServerConn(a, server)
		if err != nil {
			got <- accepted{nil, err}
			return
		}
		sconn = conn
		go ssh.DiscardRequests(reqs)
		nc := <-chans
		ch, creqs, err := nc.Accept()
		if err == nil {
			go ssh.DiscardRequests(creqs)
		}
		got <- accepted{ch, err}
	}()
	cconn, cchans, creqs, err := ssh.NewClientConn(b, "pipe", &ssh.ClientConfig{
		User: "test", HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(cconn, cchans, creqs)
	ch, reqs, err := client.OpenChannel("test", nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	s := <-got
	if s.err != nil {
		t.Fatal(s.err)
	}
	c1, c2 := newChanConn(ch, nil), newChanConn(s.ch, nil)
	return c1, c2, func() {
		c1.Close()
		c2.Close()
		client.Close()
		if sconn != nil {
			sconn.Close()
		}
	}
}

// TestChanConnAsANetConn: the cases of x/net/nettest's conformance suite, as
// they apply: data both ways intact; a deadline set before a call ends it, or
// a blocked call, with os.ErrDeadlineExceeded and leaves the conn usable; a
// caller may reuse its buffer at once; Close ends blocked calls; every method
// may be called concurrently (under -race). Not nettest.TestConn itself: its
// ConcurrentMethods case expects a conn to stay usable after a deadline caught
// a call that started without one, and a ChanConn then ends (see chanconn.go).
func TestChanConnAsANetConn(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, c1, c2 *ChanConn)
	}{
		{"both ways, intact", func(t *testing.T, c1, c2 *ChanConn) {
			want := make([]byte, 1<<20)
			rand.Read(want)
			go func() { c2.Write(want); c2.CloseWrite() }()
			got, err := io.ReadAll(c1)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%d bytes read (%v), want the 1 MiB sent", len(got), err)
			}
		}},
		{"a past deadline fails at once, then the conn works", func(t *testing.T, c1, c2 *ChanConn) {
			go io.Copy(c2, c2)
			c1.SetDeadline(time.Now().Add(-time.Second))
			if n, err := c1.Write(make([]byte, 10)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("write: %d, %v", n, err)
			}
			if n, err := c1.Read(make([]byte, 10)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read: %d, %v", n, err)
			}
			roundtrip(t, c1)
		}},
		{"a future deadline ends blocked calls, then the conn works", func(t *testing.T, c1, c2 *ChanConn) {
			c1.SetDeadline(time.Now().Add(100 * time.Millisecond))
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); _, err := c1.Read(make([]byte, 10)); timedOut(t, err) }()
			go func() {
				defer wg.Done()
				var err error
				for err == nil { // past the channel's window: blocked
					_, err = c1.Write(make([]byte, 64<<10))
				}
				timedOut(t, err)
			}()
			wg.Wait()
			go io.Copy(c2, c2)
			c1.SetDeadline(time.Time{})
			resync(t, c1)
			roundtrip(t, c1)
		}},
		{"a deadline that catches a call started without one ends the conn", func(t *testing.T, c1, c2 *ChanConn) {
			errs := make(chan error, 1)
			go func() { _, err := c1.Read(make([]byte, 10)); errs <- err }()
			time.Sleep(50 * time.Millisecond)
			c1.SetReadDeadline(time.Now().Add(-time.Second))
			timedOut(t, <-errs)
			if _, err := c1.Write([]byte("x")); err == nil {
				t.Fatal("the conn still works")
			}
		}},
		{"a read timeout leaves writes alone", func(t *testing.T, c1, c2 *ChanConn) {
			go io.Copy(io.Discard, c2)
			c1.SetReadDeadline(time.Now().Add(-time.Second))
			_, err := c1.Read(make([]byte, 10))
			timedOut(t, err)
			if _, err := c1.Write(make([]byte, 1024)); err != nil {
				t.Fatalf("write after a read timeout: %v", err)
			}
		}},
		{"buffers are the caller's again at once", func(t *testing.T, c1, c2 *ChanConn) {
			go io.Copy(c2, io.LimitReader(rand.Reader, 4<<20))
			go io.Copy(io.Discard, c2)
			c1.SetDeadline(time.Now().Add(time.Millisecond))
			var wg sync.WaitGroup
			for range 10 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					b1, b2 := make([]byte, 1024), make([]byte, 1024)
					for range 50 {
						_, rerr := c1.Read(b1)
						copy(b1, b2) // the race detector sees a Read still writing into b1
						_, werr := c1.Write(b1)
						copy(b1, b2)
						if rerr != nil || werr != nil {
							c1.SetDeadline(time.Now().Add(time.Millisecond))
						}
					}
				}()
			}
			wg.Wait()
		}},
		{"Close ends blocked calls", func(t *testing.T, c1, c2 *ChanConn) {
			c1.SetDeadline(time.Time{})
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); c1.Read(make([]byte, 10)) }()
			go func() {
				defer wg.Done()
				for {
					if _, err := c1.Write(make([]byte, 64<<10)); err != nil {
						return
					}
				}
			}()
			time.Sleep(100 * time.Millisecond)
			c1.Close()
			wg.Wait()
		}},
		{"every method at once", func(t *testing.T, c1, c2 *ChanConn) {
			go io.Copy(c2, c2)
			var wg sync.WaitGroup
			for range 50 {
				wg.Add(7)
				go func() { defer wg.Done(); c1.Read(make([]byte, 1024)) }()
				go func() { defer wg.Done(); c1.Write(make([]byte, 1024)) }()
				go func() { defer wg.Done(); c1.SetDeadline(time.Now().Add(10 * time.Millisecond)) }()
				go func() { defer wg.Done(); c1.SetReadDeadline(time.Now().Add(-time.Second)) }()
				go func() { defer wg.Done(); c1.SetWriteDeadline(time.Now().Add(-time.Second)) }()
				go func() { defer wg.Done(); c1.LocalAddr() }()
				go func() { defer wg.Done(); c1.RemoteAddr() }()
			}
			wg.Wait()
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c1, c2, stop := channelPair(t)
			defer stop()
			done := make(chan struct{})
			go func() { defer close(done); c.run(t, c1, c2) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("blocked")
			}
		})
	}
}

func timedOut(t *testing.T, err error) {
	t.Helper()
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%v: want a timeout (os.ErrDeadlineExceeded)", err)
	}
}

// roundtrip writes to c and reads it back (the other end echoes).
func roundtrip(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("Hello, world!")); err != nil {
		t.Fatalf("roundtrip write: %v", err)
	}
	got := make([]byte, 13)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "Hello, world!" {
		t.Fatalf("roundtrip read %q: %v", got, err)
	}
}

// resync skips what an echo sends back of earlier writes, up to a marker.
func resync(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	mark := []byte("\x00resync\x00")
	if _, err := c.Write(mark); err != nil {
		t.Fatalf("resync write: %v", err)
	}
	var seen []byte
	buf := make([]byte, 64<<10)
	for !bytes.HasSuffix(seen, mark) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("resync read: %v", err)
		}
		seen = append(seen, buf[:n]...)
		if len(seen) > 64 {
			seen = seen[len(seen)-64:]
		}
	}
	c.SetDeadline(time.Time{})
}

func TestChanConnReadKeepsWhatATimedOutReadBrought(t *testing.T) {
	c1, c2, stop := channelPair(t)
	defer stop()
	c1.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := c1.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("first read: %v", err)
	}
	c2.Write([]byte("late bytes"))
	c1.SetReadDeadline(time.Time{})
	got, err := io.ReadAll(io.LimitReader(c1, 10))
	if err != nil || string(got) != "late bytes" {
		t.Fatalf("read %q, %v; want the bytes the timed-out read brought", got, err)
	}
}

func TestChanConnOnCloseRunsOnce(t *testing.T) {
	c1, _, stop := channelPair(t)
	defer stop()
	calls := 0
	c1.OnClose(func() { calls++ })
	c1.Close()
	c1.Close()
	c1.OnClose(func() { calls++ }) // already closed: at once
	if calls != 2 {
		t.Fatalf("hooks ran %d times, want 2", calls)
	}
}
