package front

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mysocketd/edge/dataplane/internal/auth"
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

// TestTheAppCannotSpeakAsTheEdge: through a ReverseProxy set up as the front's,
// the app's Mysocket-Edge never reaches the visitor: not in a 1xx, not in the
// answer, not in its trailers; nor does a visitor's reach the app.
func TestTheAppCannotSpeakAsTheEdge(t *testing.T) {
	var fromVisitor atomic.Value
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fromVisitor.Store(r.Header.Get("Mysocket-Edge") + "|")
		w.Header().Set("Mysocket-Edge", "no-tunnel")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Trailer", "Mysocket-Edge")
		w.Header().Add("mysocket-edge", "unknown-host")
		w.WriteHeader(http.StatusBadGateway)
		w.(http.Flusher).Flush()
		fmt.Fprint(w, "the app's own answer")
		w.Header().Set("Mysocket-Edge", "timeout")
		w.Header().Set(http.TrailerPrefix+"Mysocket-Edge", "forbidden")
	}))
	defer app.Close()
	target, _ := url.Parse(app.URL)
	f := &HTTP{}
	proxy := &httputil.ReverseProxy{ModifyResponse: f.fromApp, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		toApp(pr)
	}}
	edge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxy.ServeHTTP(newToVisitor(w, 0), r)
	}))
	defer edge.Close()

	var early []textproto.MIMEHeader
	req, _ := http.NewRequest("GET", edge.URL, nil)
	req.Header.Set("Mysocket-Edge", "unauthorized")
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error { early = append(early, h); return nil }}))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway || string(body) != "the app's own answer" {
		t.Fatalf("%d %q", res.StatusCode, body)
	}
	if len(early) != 1 {
		t.Fatalf("%d 1xx answers, want the app's one", len(early))
	}
	for where, h := range map[string]http.Header{"answer": res.Header, "trailer": res.Trailer,
		"103": http.Header(early[0])} {
		if v := h.Values("Mysocket-Edge"); len(v) != 0 {
			t.Errorf("the app's Mysocket-Edge reached the visitor in the %s: %q", where, v)
		}
	}
	if got := fromVisitor.Load(); got != "|" {
		t.Errorf("a visitor's Mysocket-Edge reached the app: %q", got)
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

// TestTheFrontsOwnProxyCleansTheAnswer: the proxy NewHTTP builds (not a copy
// set up by a test) strips the app's Mysocket-Edge, also when a route's
// response edits are wired in beside it.
func TestTheFrontsOwnProxyCleansTheAnswer(t *testing.T) {
	f := NewHTTP(Shared{}, auth.Options{}, "", "", nil)
	req := httptest.NewRequest("GET", "http://app.edge/", nil)
	res := &http.Response{StatusCode: 200, Header: http.Header{"Mysocket-Edge": {"no-tunnel"}}, Request: req,
		Body: io.NopCloser(strings.NewReader(""))}
	if err := f.proxy.ModifyResponse(res); err != nil {
		t.Fatal(err)
	}
	if v := res.Header.Values("Mysocket-Edge"); len(v) != 0 {
		t.Fatalf("the front's proxy let the app's Mysocket-Edge through: %q", v)
	}
}
