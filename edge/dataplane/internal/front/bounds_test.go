package front

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// bodyServer serves one handler behind guardBody, as ServeHTTP does: read
// answers 200 with the body's length once it has all of it (408 when it
// stalled); refuse answers 429 without reading it.
func bodyServer(t *testing.T, timeout time.Duration) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer guardBody(w, r, timeout)()
		if r.URL.Path == "/refuse" {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			w.WriteHeader(http.StatusRequestTimeout)
			return
		}
		fmt.Fprint(w, n)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestABodyMustKeepMoving: a stalled body ends (408, or the connection closes),
// a slow one that keeps moving is read to its end, however long it takes in all.
func TestABodyMustKeepMoving(t *testing.T) {
	const timeout = 300 * time.Millisecond
	cases := []struct {
		name   string
		path   string
		chunks int           // 10-byte chunks of a 100-byte body
		every  time.Duration // between chunks
		want   string        // status line prefix, or "closed"
	}{
		{"at once", "/read", 10, 0, "HTTP/1.1 200"},
		{"slow but moving: 1 s in all, 100 ms apart", "/read", 10, 100 * time.Millisecond, "HTTP/1.1 200"},
		{"one byte, then nothing", "/read", 1, 0, "HTTP/1.1 408"},
		{"refused unread, the rest trickling", "/refuse", 10, time.Second, "HTTP/1.1 429"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", bodyServer(t, timeout))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", c.path)
			go func() {
				for range c.chunks {
					if _, err := conn.Write([]byte("0123456789")); err != nil {
						return
					}
					time.Sleep(c.every)
				}
			}()
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			line, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, c.want) {
				t.Fatalf("answer %q (%v), want %s", line, err, c.want)
			}
			if c.want != "HTTP/1.1 200" { // and the connection is not held for the rest
				if _, err := io.Copy(io.Discard, br); err != nil {
					t.Fatalf("the connection stayed open: %v", err)
				}
			}
		})
	}
}

// TestSpliceEndsWhenIdleNotWhileMoving: a splice with bytes one way only stays
// past its idle timeout; once nothing moves either way it ends after about it.
func TestSpliceEndsWhenIdleNotWhileMoving(t *testing.T) {
	const idle = 200 * time.Millisecond
	for _, moving := range []time.Duration{5 * idle, 0} {
		t.Run(fmt.Sprint("one way for ", moving), func(t *testing.T) {
			visitor, edgeSide := net.Pipe()
			appSide, app := net.Pipe()
			ended := make(chan struct{})
			go func() { splice(edgeSide, appSide, idle); close(ended) }()
			go io.Copy(io.Discard, visitor) // the visitor reads, never writes
			for start := time.Now(); time.Since(start) < moving; time.Sleep(idle / 4) {
				select {
				case <-ended:
					t.Fatal("the splice ended while bytes moved one way")
				default:
				}
				if _, err := app.Write([]byte("x")); err != nil {
					t.Fatalf("the splice ended while bytes moved one way: %v", err)
				}
			}
			select {
			case <-ended:
			case <-time.After(10 * idle):
				t.Fatal("still open after 10 idle timeouts without a byte")
			}
			visitor.Close()
			app.Close()
		})
	}
}

// TestAVisitorMustTakeTheAnswer: a visitor who stops reading an answer ends it
// after the send timeout, instead of holding the request (and its share of
// the account) for ever; one who reads slowly gets all of it.
func TestAVisitorMustTakeTheAnswer(t *testing.T) {
	const sendTimeout = 300 * time.Millisecond
	ended := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := newToVisitor(w, sendTimeout)
		defer out.done()
		chunk := make([]byte, 64<<10)
		var err error
		for i := 0; i < 1600 && err == nil; i++ { // 100 MiB
			_, err = out.Write(chunk)
		}
		ended <- err
	}))
	defer srv.Close()
	for _, reads := range []bool{false, true} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if reads { // slowly: a pause shorter than the timeout between reads
			go func() {
				buf := make([]byte, 1<<20)
				for {
					if _, err := conn.Read(buf); err != nil {
						return
					}
					time.Sleep(sendTimeout / 10)
				}
			}()
		}
		select {
		case err := <-ended:
			if !reads && err == nil {
				t.Fatal("the answer was written to a visitor who read nothing")
			}
			if reads && err != nil {
				t.Fatalf("a slow reader lost the answer: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("the handler was still writing (visitor reads: %v)", reads)
		}
		conn.Close()
	}
}
