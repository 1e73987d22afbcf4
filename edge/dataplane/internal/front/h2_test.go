package front

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"mysocketd/edge/dataplane/internal/auth"
	"mysocketd/edge/dataplane/internal/state"
)

func TestVisitorsMaySpeakEveryHTTPVersion(t *testing.T) {
	p := visitorProtocols()
	if !p.HTTP1() || !p.HTTP2() || !p.UnencryptedHTTP2() {
		t.Fatalf("protocols = %v, want HTTP/1, HTTP/2 and h2c", p)
	}
	if alpn[0] != "h2" || alpn[1] != "http/1.1" {
		t.Fatalf("ALPN = %v, want h2 first, then http/1.1", alpn)
	}
}

// The app's protocol is its socket's: h2c only when the socket says so.
func TestUpstreamsSpeakTheSocketsProtocol(t *testing.T) {
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	app.Config.Protocols = visitorProtocols() // HTTP/1.1 and h2c with prior knowledge, like a gRPC server's port
	app.Start()
	defer app.Close()
	base := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", app.Listener.Addr().String())
	}}
	up := newUpstreams(base)
	defer up.h1.CloseIdleConnections()
	defer up.h2c.CloseIdleConnections()
	for _, tc := range []struct{ protocol, want string }{
		{"", "HTTP/1.1"}, {"http/1.1", "HTTP/1.1"}, {"h2c", "HTTP/2.0"}, {"h3", "HTTP/1.1"},
	} {
		sock := &state.Socket{SocketIn: state.SocketIn{UpstreamProtocol: tc.protocol}}
		req, _ := http.NewRequestWithContext(context.WithValue(context.Background(), ctxSocket, sock),
			"GET", "http://app.key/", nil)
		res, err := up.RoundTrip(req)
		if err != nil {
			t.Fatalf("%q: %v", tc.protocol, err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(got) != tc.want {
			t.Errorf("upstream_protocol %q: the app heard %s, want %s", tc.protocol, got, tc.want)
		}
	}
}

type brokenBody struct {
	data string
	err  error
}

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.data == "" {
		return 0, b.err
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}
func (b *brokenBody) Close() error { return nil }

// A gRPC answer whose app connection breaks ends with UNAVAILABLE in its
// trailers; one that ends well, or whose visitor left, is untouched.
func TestGRPCBodyTurnsALostTunnelIntoUnavailable(t *testing.T) {
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	lost := errors.New("http2: client connection lost")
	for _, tc := range []struct {
		name       string
		err        error
		ctx        context.Context
		trailer    http.Header
		wantErr    error
		wantStatus string
	}{
		{"tunnel lost", lost, context.Background(), nil, io.EOF, "14"},
		{"the app's own status stays", lost, context.Background(), http.Header{"Grpc-Status": {"0"}}, io.EOF, "0"},
		{"a clean end", io.EOF, context.Background(), http.Header{"Grpc-Status": {"5"}}, io.EOF, "5"},
		{"the visitor left", lost, gone, nil, lost, ""},
	} {
		req, _ := http.NewRequestWithContext(tc.ctx, "POST", "http://x/", nil)
		res := &http.Response{Request: req, Trailer: tc.trailer}
		b := &grpcBody{ReadCloser: &brokenBody{data: "msg", err: tc.err}, res: res}
		got, err := io.ReadAll(struct{ io.Reader }{b})
		if !errors.Is(err, tc.wantErr) && !(tc.wantErr == io.EOF && err == nil) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
		}
		if string(got) != "msg" {
			t.Errorf("%s: body = %q", tc.name, got)
		}
		if s := res.Trailer.Get("Grpc-Status"); s != tc.wantStatus {
			t.Errorf("%s: grpc-status = %q, want %q", tc.name, s, tc.wantStatus)
		}
		if tc.wantStatus == "14" && !strings.Contains(res.Trailer.Get("Grpc-Message"), "tunnel") {
			t.Errorf("%s: grpc-message = %q", tc.name, res.Trailer.Get("Grpc-Message"))
		}
	}
}

func TestSetH2KeepsAnIdleAppConnectionPerStream(t *testing.T) {
	f := NewHTTP(Shared{}, auth.Options{}, "", "", nil)
	f.SetH2(H2{MaxStreams: 7})
	if f.up.h1.MaxIdleConnsPerHost != 7 || f.h2.config().MaxConcurrentStreams != 7 {
		t.Fatalf("idle per visitor = %d, streams = %d; want 7 and 7", f.up.h1.MaxIdleConnsPerHost,
			f.h2.config().MaxConcurrentStreams)
	}
}

// A gRPC call over HTTP/2 may be quiet between messages; anything else keeps
// the body's stall bound.
func TestOnlyGRPCOverHTTP2MayStallItsBody(t *testing.T) {
	f := &HTTP{Shared: Shared{Bounds: Bounds{BodyReadTimeout: 15 * time.Second}}}
	for _, tc := range []struct {
		major       int
		contentType string
		want        time.Duration
	}{
		{2, "application/grpc", 0},
		{2, "application/grpc+proto", 0},
		{1, "application/grpc", 15 * time.Second},
		{2, "application/json", 15 * time.Second},
	} {
		r := &http.Request{ProtoMajor: tc.major, Header: http.Header{"Content-Type": {tc.contentType}}}
		if got := f.bodyReadTimeout(r); got != tc.want {
			t.Errorf("HTTP/%d %s: %v, want %v", tc.major, tc.contentType, got, tc.want)
		}
	}
}
