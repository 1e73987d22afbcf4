package main

// The public HTTP(S) front: every request is routed by its own Host and
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
//   - Basic-auth failures are rate-limited per client address; a verified
//     password is cached (scrypt costs tens of milliseconds on purpose).

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const maxHeaderBytes = 64 << 10

type Front struct {
	state    *StateHolder
	reg      *Registry
	proxy    *httputil.ReverseProxy
	api      *httputil.ReverseProxy // the REST API behind apiName, over TLS only
	apiName  string
	acme     *ACME
	authOK   sync.Map // sha256(socket, hash, password) -> struct{}
	failures *Limiter
	conns    *Counter
	nextID   atomic.Uint64
	visitors sync.Map // net.Conn -> *visitor
}

// ConnContext and ConnState are the http.Server hooks that track visitors.
func (f *Front) ConnContext(ctx context.Context, c net.Conn) context.Context {
	v := &visitor{id: f.nextID.Add(1)}
	f.visitors.Store(c, v)
	return context.WithValue(ctx, ctxVisitor, v)
}

func (f *Front) ConnState(c net.Conn, state http.ConnState) {
	switch state {
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
)

// visitor is one public connection: its id, its last forward, its channels.
type visitor struct {
	id    uint64
	mu    sync.Mutex
	last  *Forward
	chans []*chanConn
}

func (v *visitor) close() {
	v.mu.Lock()
	chans := v.chans
	v.chans = nil
	v.mu.Unlock()
	for _, c := range chans {
		c.Close()
	}
}

func NewFront(state *StateHolder, reg *Registry, apiName, apiUpstream string, acme *ACME) *Front {
	f := &Front{state: state, reg: reg, apiName: apiName, acme: acme,
		failures: NewLimiter(), conns: NewCounter()}
	transport := &http.Transport{
		DialContext:           f.dial,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   1, // one key per visitor connection and forward
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: 0,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite:       f.rewrite,
		Transport:     transport,
		FlushInterval: 0, // streamed (chunked, unknown-length) answers are still flushed at once
		ErrorHandler:  f.proxyError,
		BufferPool:    newBufferPool(),
	}
	if apiUpstream != "" {
		target := &url.URL{Scheme: "http", Host: apiUpstream}
		f.api = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
			r.Out.Host = r.In.Host
		}, ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			edgeAnswer(w, http.StatusBadGateway, "unavailable", "the API is not reachable")
		}}
	}
	return f
}

// edgeAnswer writes one of the edge's own answers.
func edgeAnswer(w http.ResponseWriter, status int, reason, text string) {
	h := w.Header()
	h.Set("Mysocket-Edge", reason)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintln(w, text)
}

func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := hostOnly(r.Host)
	if r.TLS == nil && f.acme != nil && strings.HasPrefix(r.URL.Path, acmeChallengePrefix) {
		f.acme.ServeChallenge(w, r)
		return
	}
	if host == "" {
		edgeAnswer(w, http.StatusBadRequest, "bad-request", "the request has no Host header")
		return
	}
	if headerBytes(r) > maxHeaderBytes {
		edgeAnswer(w, http.StatusRequestHeaderFieldsTooLarge, "too-large", "request head too large")
		return
	}
	if host == f.apiName && f.api != nil {
		if r.TLS == nil {
			redirectHTTPS(w, r, host)
			return
		}
		f.api.ServeHTTP(w, r)
		return
	}
	sock := f.state.ByDNS(host)
	if sock == nil {
		edgeAnswer(w, http.StatusNotFound, "unknown-host", "no socket named "+host)
		return
	}
	switch {
	case sock.Type == "tcp" || sock.Type == "tls":
		edgeAnswer(w, http.StatusMisdirectedRequest, "misdirected",
			fmt.Sprintf("%s is a %s socket: connect to its own port", host, sock.Type))
		return
	case sock.Type == "https" && r.TLS == nil:
		redirectHTTPS(w, r, host)
		return
	case sock.CloudAuth:
		edgeAnswer(w, http.StatusForbidden, "forbidden", "cloud authentication is not implemented by this edge")
		return
	}
	peer := clientIP(r.RemoteAddr)
	if sock.Protected && !f.authorized(w, r, sock, peer) {
		return
	}
	release, ok := f.conns.Acquire(sock.UserID, f.state.Limits().ConnectionsPerAccount)
	if !ok {
		edgeAnswer(w, http.StatusServiceUnavailable, "unavailable", "too many concurrent requests for this account")
		return
	}
	defer release()
	cands := f.reg.Candidates(sock)
	if len(cands) == 0 {
		edgeAnswer(w, http.StatusBadGateway, "no-tunnel", host+": no tunnel of this socket is connected")
		return
	}
	ctx := context.WithValue(r.Context(), ctxSocket, sock)
	ctx = context.WithValue(ctx, ctxPeer, r.RemoteAddr)
	r = r.WithContext(ctx)
	if sock.Protected {
		r.Header.Del("Authorization") // the edge's password is not the app's business
	}
	f.proxy.ServeHTTP(w, r)
}

func redirectHTTPS(w http.ResponseWriter, r *http.Request, host string) {
	w.Header().Set("Mysocket-Edge", "https-redirect")
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
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

func clientIP(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

func (f *Front) authorized(w http.ResponseWriter, r *http.Request, sock *Socket, peer string) bool {
	limit := f.state.Limits().AuthFailuresPerMinute
	if limit > 0 && !f.failures.Allowed("auth:"+peer, limit) {
		w.Header().Set("Retry-After", "60")
		edgeAnswer(w, http.StatusTooManyRequests, "rate-limited", "too many failed logins from your address; try again later")
		return false
	}
	user, pass, ok := r.BasicAuth()
	if ok && subtle.ConstantTimeCompare([]byte(user), []byte(sock.ProtectedUsername)) == 1 {
		sum := sha256.Sum256([]byte(sock.SocketID + "\x00" + sock.PasswordHash + "\x00" + pass))
		key := hex.EncodeToString(sum[:])
		if _, hit := f.authOK.Load(key); hit {
			return true
		}
		if verifyScrypt(pass, sock.PasswordHash) {
			f.authOK.Store(key, struct{}{})
			return true
		}
	}
	if ok && limit > 0 {
		f.failures.Spend("auth:"+peer, limit)
	}
	// spelled as RFC 7235 does (not Go's canonical Www-Authenticate), for naive clients
	w.Header()["WWW-Authenticate"] = []string{fmt.Sprintf(`Basic realm="%s", charset="UTF-8"`, sock.DNSName)}
	edgeAnswer(w, http.StatusUnauthorized, "unauthorized", "this socket needs a username and password")
	return false
}

// rewrite sends the request to a forward of its socket; the pool key names the forward.
func (f *Front) rewrite(pr *httputil.ProxyRequest) {
	ctx := pr.In.Context()
	sock := ctx.Value(ctxSocket).(*Socket)
	v, _ := ctx.Value(ctxVisitor).(*visitor)
	var vid uint64
	var pick *Forward
	if v != nil {
		vid = v.id
		v.mu.Lock()
		pick = v.last
		v.mu.Unlock()
	}
	cands := f.reg.Candidates(sock)
	if pick == nil || !contains(cands, pick) || pick.isAside(time.Now()) {
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
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	if pr.In.TLS != nil {
		pr.Out.Header.Set("X-Forwarded-Proto", "https")
	}
}

// dial opens a channel for the transport: the forward the key names first,
// then the socket's other forwards, as long as nothing was sent.
func (f *Front) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	sock, _ := ctx.Value(ctxSocket).(*Socket)
	if sock == nil {
		return nil, &NoTunnel{"no socket for this connection"}
	}
	cands := f.reg.Candidates(sock)
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
	c, err := f.reg.Open(cands, peer)
	if err != nil {
		return nil, err
	}
	if v, _ := ctx.Value(ctxVisitor).(*visitor); v != nil {
		v.mu.Lock()
		v.last = c.fwd
		v.chans = append(v.chans, c)
		v.mu.Unlock()
	}
	return c, nil
}

func contains(fs []*Forward, f *Forward) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

func (f *Front) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var nt *NoTunnel
	switch {
	case errors.As(err, &nt):
		edgeAnswer(w, http.StatusBadGateway, "no-tunnel", hostOnly(r.Host)+": "+nt.Reason)
	case errors.Is(err, context.Canceled):
		w.WriteHeader(499) // the visitor left; nobody reads this
	case errors.Is(err, context.DeadlineExceeded):
		edgeAnswer(w, http.StatusGatewayTimeout, "timeout", "the tunnel's target did not answer in time")
	default:
		logf("proxy %s: %v", hostOnly(r.Host), err)
		edgeAnswer(w, http.StatusBadGateway, "upstream-failed", "the tunnel's target broke off the answer")
	}
}

type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}}
}
func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }
