// Package front answers "where does a visitor's connection go": the public
// fronts (HTTP, TLS, TCP ports) and the splice to a tunnel.
//
// The HTTP(S) front: every request is routed by its own Host and
// checked against its own socket's auth, then proxied over a tunnel.
//
// Why it is shaped this way:
//   - net/http parses requests and httputil.ReverseProxy forwards them, so
//     keep-alive, pipelining, chunked and streaming bodies, and WebSocket
//     upgrades are handled by a proven implementation, and a second request
//     on a connection can never ride on the first one's routing or auth.
//   - Upstream connections are SSH channels, and each visitor connection gets
//     its own (the transport's pool key names the forward AND the visitor's
//     connection; the channel is closed when the visitor's connection ends).
//     Keep-alive requests reuse their channel, and new visitor connections
//     reach the Service as new connections, so kube-proxy spreads them over
//     the pods exactly as it would without the edge.
//   - Everything the edge answers by itself carries `Mysocket-Edge: <reason>`
//     and a short plain-text body, so it is never mistaken for the app's.
//   - Whether a visitor may pass is the auth package's answer (basic auth) or
//     the signin package's (cloud authentication: the OIDC sign-in, whose
//     identity headers rewrite sets after removing the visitor's own); what
//     the edge answers by itself is the answer package's.
package front

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mysocketd/edge/dataplane/internal/answer"
	"mysocketd/edge/dataplane/internal/auth"
	"mysocketd/edge/dataplane/internal/certs"
	"mysocketd/edge/dataplane/internal/limits"
	"mysocketd/edge/dataplane/internal/logx"
	"mysocketd/edge/dataplane/internal/metrics"
	"mysocketd/edge/dataplane/internal/signin"
	"mysocketd/edge/dataplane/internal/state"
	"mysocketd/edge/dataplane/internal/tunnels"
)

const maxHeaderBytes = 64 << 10

// Shared is what every front reads: the pushed state, the live tunnels, what
// each account and each of its visitors holds at once (one Holdings for the
// HTTP, TLS and TCP fronts, so the account's connection quota counts them
// all), and the fronts' bounds.
type Shared struct {
	State    *state.Holder
	Tunnels  *tunnels.Registry
	Holdings *limits.Holdings
	Bounds   Bounds
	Metrics  *metrics.Edge // nil: none
}

// hold takes one of the account's connections for the visitor at remote:
// release, or the edge's refusal (answer reason, status, text).
func (sh Shared) hold(sock *state.Socket, remote string) (func(), *refusal) {
	quota := sh.State.Limits().ConnectionsPerAccount
	release, refused := sh.Holdings.Acquire(sock.UserID, limits.Visitor(remote), quota, sh.Bounds.VisitorShare)
	if refused == limits.Granted {
		held, unheld := release, sh.Metrics.Hold(sock.SocketID)
		release = func() { held(); unheld() }
	}
	switch refused {
	case limits.AccountFull:
		return nil, &refusal{http.StatusServiceUnavailable, answer.Unavailable,
			fmt.Sprintf("too many concurrent requests for this account (its quota is %d)", quota)}
	case limits.VisitorShare:
		return nil, &refusal{http.StatusTooManyRequests, answer.RateLimited,
			fmt.Sprintf("too many concurrent requests from your address for this account (at most %d)",
				limits.Share(quota, sh.Bounds.VisitorShare))}
	}
	return release, nil
}

type refusal struct {
	status int
	reason answer.Reason
	text   string
}

// HTTP is the per-request front of the HTTP port and of terminated TLS.
type HTTP struct {
	Shared
	proxy    *httputil.ReverseProxy
	api      *httputil.ReverseProxy // the REST API behind apiName, over TLS only
	apiName  string
	acme     *certs.ACME
	auth     *auth.Checker
	signin   *signin.Service // the sign-in of cloud-auth sockets (nil: they answer 403)
	nextID   atomic.Uint64
	visitors sync.Map   // net.Conn -> *visitor
	h2       H2         // HTTP/2 bounds (SetH2, h2.go)
	up       *upstreams // the transports to apps, by the protocol they speak (h2.go)
}

// connContext and connState are the http.Server hooks that track visitors.
func (f *HTTP) connContext(ctx context.Context, c net.Conn) context.Context {
	v := &visitor{id: f.nextID.Add(1)}
	f.visitors.Store(c, v)
	return context.WithValue(ctx, ctxVisitor, v)
}

func (f *HTTP) connState(c net.Conn, cs http.ConnState) {
	switch cs {
	case http.StateClosed:
		if v, ok := f.visitors.LoadAndDelete(c); ok {
			v.(*visitor).close()
		}
	case http.StateHijacked: // an upgrade: the proxy owns and closes the channel now
		f.visitors.Delete(c)
	}
}

type ctxKey int

const (
	ctxSocket ctxKey = iota
	ctxPeer
	ctxVisitor
	ctxIdentity
)

// visitor is one public connection: its id, its last forward, its open
// channels (each removes itself when it closes, so a long keep-alive
// connection whose app closes after every answer holds only what is open).
type visitor struct {
	id      uint64
	mu      sync.Mutex
	last    *tunnels.Forward
	chans   map[*tunnels.ChanConn]struct{}
	counted string // the socket this connection was last counted for (metered.go)
}

func (v *visitor) add(c *tunnels.ChanConn) {
	v.mu.Lock()
	v.last = c.Forward()
	if v.chans == nil {
		v.chans = map[*tunnels.ChanConn]struct{}{}
	}
	v.chans[c] = struct{}{}
	v.mu.Unlock()
	c.OnClose(func() {
		v.mu.Lock()
		delete(v.chans, c)
		v.mu.Unlock()
	})
}

func (v *visitor) close() {
	v.mu.Lock()
	chans := v.chans
	v.chans = nil
	v.mu.Unlock()
	for c := range chans {
		c.Close()
	}
}

// NewHTTP: apiName (lower case) is proxied to apiUpstream over TLS; acme, when
// not nil, answers its HTTP-01 challenges.
func NewHTTP(sh Shared, checks auth.Options, apiName, apiUpstream string, acme *certs.ACME) *HTTP {
	f := &HTTP{Shared: sh, apiName: apiName, acme: acme, auth: auth.NewChecker(sh.State, checks)}
	transport := &http.Transport{
		DialContext:           f.dial,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   1, // one key per visitor connection and forward
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: sh.Bounds.ResponseHeaderTimeout,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	f.up = newUpstreams(transport)
	f.proxy = &httputil.ReverseProxy{
		Rewrite:        f.rewrite,
		Transport:      f.up,
		FlushInterval:  0, // streamed (chunked, unknown-length) answers are still flushed at once
		ErrorHandler:   f.proxyError,
		ModifyResponse: f.fromApp,
		BufferPool:     newBufferPool(),
	}
	if apiUpstream != "" {
		target := &url.URL{Scheme: "http", Host: apiUpstream}
		f.api = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
			r.Out.Host = r.In.Host
			answer.Strip(r.Out.Header) // a visitor cannot speak as the edge to the API either
			if id, _ := r.In.Context().Value(ctxIdentity).(*signin.Identity); id != nil {
				f.signin.SetHeaders(r.Out.Header, id) // a sign-in to the edge's own name, just redeemed
			}
		}, ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			answer.Write(w, http.StatusBadGateway, answer.Unavailable, "the API is not reachable")
		}}
	}
	return f
}

func (f *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// From here on a body must keep moving: also the rest net/http reads away
	// after the edge answered by itself without reading it.
	defer guardBody(w, r, f.bodyReadTimeout(r))()
	mw := f.meter(w) // counts the request when it is done (metered.go)
	defer mw.done()
	w = mw
	host := state.HostOnly(r.Host)
	if r.TLS == nil && f.acme != nil && strings.HasPrefix(r.URL.Path, certs.ACMEChallengePrefix) {
		mw.skip = true
		f.acme.ServeChallenge(w, r)
		return
	}
	if host == "" {
		answer.Write(w, http.StatusBadRequest, answer.BadRequest, "the request has no Host header")
		return
	}
	if headerBytes(r) > maxHeaderBytes {
		answer.Write(w, http.StatusRequestHeaderFieldsTooLarge, answer.TooLarge, "request head too large")
		return
	}
	if host == f.apiName && f.api != nil {
		mw.skip = true
		if r.TLS == nil {
			answer.RedirectHTTPS(w, r, host)
			return
		}
		if f.signin != nil { // the sign-in's start, callback and JWKS, and sign-ins to this name (internal/signin)
			var id *signin.Identity
			if r, id = f.signin.ServeOwn(w, r); r == nil {
				return
			}
			if id != nil {
				r = r.WithContext(context.WithValue(r.Context(), ctxIdentity, id))
			}
		}
		f.api.ServeHTTP(w, r)
		return
	}
	sock := f.socketFor(r, host) // by the address it came to, else by Host (routes.go)
	if sock == nil {
		answer.Write(w, http.StatusNotFound, answer.UnknownHost, "no socket named "+host)
		return
	}
	r = mw.bind(r, sock)
	switch {
	case sock.Type == "tcp" || sock.Type == "tls":
		answer.Write(w, http.StatusMisdirectedRequest, answer.Misdirected,
			fmt.Sprintf("%s is a %s socket: connect to its own port", host, sock.Type))
		return
	case sock.Type == "https" && r.TLS == nil:
		answer.RedirectHTTPS(w, r, host)
		return
	case sock.CloudAuth && !f.signin.Enabled():
		answer.Write(w, http.StatusForbidden, answer.Forbidden,
			"this socket needs a sign-in and this edge has no identity provider configured (--oidc-issuer)")
		return
	case sock.CloudAuth && r.TLS == nil: // the session cookie is Secure: sign-in happens over https only
		answer.RedirectHTTPS(w, r, host)
		return
	}
	var id *signin.Identity
	if sock.CloudAuth {
		if id = f.signin.Pass(w, r, sock, host); id == nil {
			return
		}
	}
	if sock.Protected && !f.auth.Pass(w, r, sock, r.RemoteAddr) {
		return
	}
	release, refused := f.hold(sock, r.RemoteAddr)
	if refused != nil {
		w.Header().Set("Retry-After", "1")
		answer.Write(w, refused.status, refused.reason, refused.text)
		return
	}
	defer release()
	if sock.Routes != nil || sock.RoutesErr != nil { // a Gateway's or an Ingress's socket (routes.go)
		var routed bool
		if sock, r, routed = f.route(w, r, sock); !routed {
			return
		}
	}
	cands := f.Tunnels.Candidates(sock)
	if len(cands) == 0 {
		answer.Write(w, http.StatusBadGateway, answer.NoTunnel, host+": no tunnel of this socket is connected")
		return
	}
	ctx := context.WithValue(r.Context(), ctxSocket, sock)
	ctx = context.WithValue(ctx, ctxPeer, r.RemoteAddr)
	if id != nil {
		ctx = context.WithValue(ctx, ctxIdentity, id)
	}
	r = r.WithContext(ctx)
	if sock.Protected {
		r.Header.Del("Authorization") // the edge's password is not the app's business
	}
	out := newToVisitor(w, f.Bounds.SendTimeout)
	defer out.done()
	f.proxy.ServeHTTP(out, r)
}

// fromApp (the proxy's ModifyResponse) makes a route's response edits,
// cleans the answer of the edge's voice, and puts the idle timeout on an
// upgraded connection.
func (f *HTTP) fromApp(res *http.Response) error {
	routeEdits(res) // a route's response header edits first (routes.go): no route may speak as the edge either
	answer.Strip(res.Header)
	if res.StatusCode == http.StatusSwitchingProtocols {
		meterUpgrade(res)
	}
	if res.Trailer != nil || len(res.TransferEncoding) > 0 || res.ProtoMajor == 2 {
		res.Body = trailerGuard{res.Body, res}
	}
	if res.StatusCode == http.StatusSwitchingProtocols && f.Bounds.UpgradeIdleTimeout > 0 {
		if rwc, ok := res.Body.(io.ReadWriteCloser); ok {
			res.Body = newIdleUpgrade(rwc, f.Bounds.UpgradeIdleTimeout)
		}
	}
	return nil
}

func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + 12
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// rewrite sends the request to a forward of its socket; the pool key names the forward.
func (f *HTTP) rewrite(pr *httputil.ProxyRequest) {
	ctx := pr.In.Context()
	sock := ctx.Value(ctxSocket).(*state.Socket)
	v, _ := ctx.Value(ctxVisitor).(*visitor)
	var vid uint64
	var pick *tunnels.Forward
	if v != nil {
		vid = v.id
		v.mu.Lock()
		pick = v.last
		v.mu.Unlock()
	}
	cands := f.Tunnels.Candidates(sock)
	if pick == nil || !contains(cands, pick) || pick.IsAside(time.Now()) {
		pick = nil
		if len(cands) > 0 {
			pick = cands[0]
		}
	}
	key := fmt.Sprintf("%s.%d.socket", sock.SocketID, vid)
	if pick != nil {
		key = fmt.Sprintf("%d.%d.%d.forward", pick.Port, pick.Session.ID, vid)
	}
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = key
	toApp(pr)
	if id, _ := ctx.Value(ctxIdentity).(*signin.Identity); id != nil {
		signin.StripCookie(pr.Out.Header)
		f.signin.SetHeaders(pr.Out.Header, id) // after toApp removed what the visitor sent under these names
	}
}

// SetSignIn gives the front the sign-in of cloud-auth sockets (main wires it).
func (f *HTTP) SetSignIn(s *signin.Service) { f.signin = s }

// toApp: what the app gets besides the visitor's request: its Host, the
// X-Forwarded-* headers, and never a header the edge speaks with.
func toApp(pr *httputil.ProxyRequest) {
	pr.Out.Host = pr.In.Host
	answer.Strip(pr.Out.Header) // a visitor cannot speak as the edge to the app either
	pr.SetXForwarded()
	if pr.In.TLS != nil {
		pr.Out.Header.Set("X-Forwarded-Proto", "https")
	}
}

// dial opens a channel for the transport: the forward the key names first,
// then the socket's other forwards, as long as nothing was sent.
func (f *HTTP) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	sock, _ := ctx.Value(ctxSocket).(*state.Socket)
	if sock == nil {
		return nil, &tunnels.NoTunnel{Reason: "no socket for this connection"}
	}
	cands := append(f.Tunnels.Candidates(sock), f.fallbackCandidates(ctx)...) // routes.go
	host, _, _ := net.SplitHostPort(addr)
	if parts := strings.SplitN(host, ".", 4); len(parts) == 4 && parts[3] == "forward" {
		port, _ := strconv.Atoi(parts[0])
		for i, c := range cands {
			if c.Port == port && strconv.FormatInt(c.Session.ID, 10) == parts[1] {
				cands[0], cands[i] = cands[i], cands[0]
				break
			}
		}
	}
	peer, _ := ctx.Value(ctxPeer).(string)
	c, err := f.Tunnels.Open(cands, peer)
	if err != nil {
		return nil, err
	}
	if v, _ := ctx.Value(ctxVisitor).(*visitor); v != nil {
		v.add(c)
	}
	return c, nil
}

func contains(fs []*tunnels.Forward, f *tunnels.Forward) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

func (f *HTTP) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var nt *tunnels.NoTunnel
	var stalled *errBodyStalled
	switch {
	case errors.As(err, &stalled):
		answer.Write(w, http.StatusRequestTimeout, answer.Timeout, "the request body stalled")
	case errors.As(err, &nt):
		answer.Write(w, http.StatusBadGateway, answer.NoTunnel, state.HostOnly(r.Host)+": "+nt.Reason)
	case errors.Is(err, context.Canceled):
		w.WriteHeader(499) // the visitor left; nobody reads this
	case errors.Is(err, context.DeadlineExceeded):
		answer.Write(w, http.StatusGatewayTimeout, answer.Timeout, "the tunnel's target did not answer in time")
	default:
		logx.Printf("proxy %s: %v", state.HostOnly(r.Host), err)
		answer.Write(w, http.StatusBadGateway, answer.UpstreamFailed, "the tunnel's target broke off the answer")
	}
}

type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}}
}
func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

// NewServer is an http.Server for this front (the HTTP port and terminated
// TLS each get one): visitors tracked, net/http's own error log silenced.
func (f *HTTP) NewServer() *http.Server {
	return &http.Server{Handler: f, ReadHeaderTimeout: f.Bounds.HeadTimeout, IdleTimeout: f.Bounds.IdleTimeout,
		MaxHeaderBytes: maxHeaderBytes * 2, ErrorLog: log.New(discard{}, "", 0),
		ConnContext: f.connContext, ConnState: f.connState,
		Protocols: visitorProtocols(), HTTP2: f.h2.config()}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
