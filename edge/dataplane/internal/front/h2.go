package front

// HTTP/2: to visitors on every terminated TLS name (ALPN h2, then http/1.1)
// and with prior knowledge (h2c) on the plain HTTP port, and to apps whose
// socket says `upstream_protocol: "h2c"` (gRPC) over h2c through the tunnel.
//
// Why it is shaped this way:
//   - net/http speaks HTTP/2 itself (Server.Protocols, Transport.Protocols,
//     since Go 1.24), so an HTTP/2 stream is one more request to the same
//     handler: the same Host routing, auth, marking and account quota as
//     HTTP/1.1, with no second code path.
//   - The floods are bounded by net/http's HTTP/2 server (h2_bundle.go):
//     rapid reset (CVE-2023-44487) by running at most MaxConcurrentStreams
//     handlers per connection and closing with ENHANCE_YOUR_CALM a
//     connection that queues more than four times that; CONTINUATION floods
//     (CVE-2023-45288) by capping a header block, CONTINUATION frames
//     included, at the server's MaxHeaderBytes; SETTINGS and PING floods of a
//     peer that does not read by closing a connection with more than 10,000
//     control frames queued; and a first SETTINGS within 2 s. The edge's own
//     part: MaxConcurrentStreams per connection (H2.MaxStreams), a smaller
//     frame and header table than the defaults, the request-head cap of
//     HTTP/1.1 (431 `too-large`), and every stream counting as one of the
//     account's concurrent requests (Conns), so one visitor's streams cannot
//     take more of an account than its connections could.
//   - The app's protocol is the socket's (the control plane's
//     `upstream_protocol`), chosen in one place (upstreams.RoundTrip); an h2c
//     app gets one HTTP/2 connection (one SSH channel) per visitor connection
//     and forward, multiplexing that visitor's streams, as an HTTP/1.1 app
//     gets one channel per visitor connection.
//   - gRPC ends a stream with trailers; a tunnel lost mid-answer would
//     otherwise end it with RST_STREAM, which gRPC clients report as INTERNAL.
//     grpcBody turns that loss into the trailers `grpc-status: 14`
//     (UNAVAILABLE), which clients retry on.

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"mysocketd/edge/dataplane/internal/state"
)

// H2 are the HTTP/2 bounds (main's flags; edge/README.md lists them).
type H2 struct {
	MaxStreams int // concurrent streams per visitor connection (SETTINGS_MAX_CONCURRENT_STREAMS)
}

// SetH2 sets the HTTP/2 bounds (before NewServer): the servers' settings, and
// how many idle HTTP/1.1 connections to an app one visitor connection keeps,
// one per stream it may have open, so an HTTP/2 visitor's streams reuse their
// channels as an HTTP/1.1 visitor's keep-alive requests do, instead of
// opening one per request.
func (f *HTTP) SetH2(h H2) {
	f.h2 = h
	f.up.h1.MaxIdleConnsPerHost = max(1, h.MaxStreams)
}

// UpstreamH2C is the socket's `upstream_protocol` of an app that speaks
// HTTP/2 without TLS; anything else (absent: "") is HTTP/1.1.
const UpstreamH2C = "h2c"

// alpn is what the TLS front offers visitors, in order of preference.
var alpn = []string{"h2", "http/1.1"}

// visitorProtocols: HTTP/1.1, HTTP/2 over TLS, and h2c with prior knowledge.
func visitorProtocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

// h2Config is the visitor side's HTTP/2 settings.
func (h H2) config() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:      h.MaxStreams,
		MaxReadFrameSize:          16 << 10, // the protocol's minimum: a frame never holds more
		MaxDecoderHeaderTableSize: 4 << 10,  // the protocol's default HPACK table
		MaxEncoderHeaderTableSize: 4 << 10,
	}
}

// upstreams sends each request over the protocol its socket's app speaks.
type upstreams struct {
	h1, h2c *http.Transport
}

func newUpstreams(base *http.Transport) *upstreams {
	h2c := base.Clone()
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	h2c.Protocols = p
	h2c.HTTP2 = &http.HTTP2Config{MaxReadFrameSize: 16 << 10}
	h2c.ResponseHeaderTimeout = 0 // a gRPC stream (a watch) begins its answer when it has something to say
	return &upstreams{h1: base, h2c: h2c}
}

func (u *upstreams) RoundTrip(r *http.Request) (*http.Response, error) {
	if sock, _ := r.Context().Value(ctxSocket).(*state.Socket); sock != nil && sock.UpstreamProtocol == UpstreamH2C {
		res, err := u.h2c.RoundTrip(r)
		if err == nil && isGRPC(res.Header) {
			res.Body = &grpcBody{ReadCloser: res.Body, res: res}
		}
		return res, err
	}
	return u.h1.RoundTrip(r)
}

// bodyReadTimeout is how long r's body may stall: not at all bounded for a
// gRPC call over HTTP/2, whose streams are quiet between messages by design
// (a chat, a subscription) and which are bounded instead by the streams a
// connection may have open and the visitor's share of the account.
func (f *HTTP) bodyReadTimeout(r *http.Request) time.Duration {
	if r.ProtoMajor == 2 && isGRPC(r.Header) {
		return 0
	}
	return f.Bounds.BodyReadTimeout
}

func isGRPC(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "application/grpc")
}

// grpcBody ends a gRPC answer whose app connection broke (the tunnel was lost)
// with the trailers of status UNAVAILABLE instead of a reset stream.
type grpcBody struct {
	io.ReadCloser
	res *http.Response
}

func (b *grpcBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == nil || errors.Is(err, io.EOF) || b.res.Request.Context().Err() != nil {
		return n, err // the end, or the visitor left (nobody to tell)
	}
	if b.res.Trailer == nil {
		b.res.Trailer = http.Header{}
	}
	if b.res.Trailer.Get("Grpc-Status") == "" {
		b.res.Trailer.Set("Grpc-Status", "14")
		b.res.Trailer.Set("Grpc-Message", "the edge lost the tunnel to the app")
	}
	return n, io.EOF
}
