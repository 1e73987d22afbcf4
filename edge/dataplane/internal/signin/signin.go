// Package signin answers "who is this visitor": the edge as an OpenID Connect
// relying party for sockets with cloud authentication (a list of allowed
// e-mail addresses and domains).
//
// The flow, as oauth2-proxy and Cloudflare Access do it:
//
//  1. A visitor without a session for a protected socket's host H gets a
//     binding cookie on H (host-only, a random value) and is sent to the
//     edge's own name (https://api.<domain>/.edge/start?rd=<url on H>&b=<hash
//     of the binding>).
//  2. There the edge makes a state, a nonce and a PKCE verifier, keeps them
//     and the binding's hash in a sealed cookie on its own name, and sends the
//     visitor to the provider (authorization code flow).
//  3. The provider sends the visitor back to the one callback on the edge's
//     own name (/.edge/callback). The edge checks the state against the
//     cookie, exchanges the code with the verifier, verifies the ID token and
//     its nonce, and requires a verified e-mail address.
//  4. It hands the e-mail to H by a one-time code (sealed, valid a minute,
//     bound to H and to the binding's hash): https://H/.edge/signin?code=...;
//     H takes it only from the browser holding the binding cookie, sets its
//     own session cookie (host-only: `__Host-` prefix, Secure, HttpOnly,
//     SameSite=Lax, sealed, expiring) and sends the visitor to where it was
//     going.
//  5. Every request to H checks the session and the socket's lists *now*
//     (a changed list takes effect at once); one that passes reaches the app
//     with the e-mail and a signed assertion (a JWT verifiable against the
//     JWKS at https://api.<domain>/.well-known/jwks.json) in headers that
//     only the edge can set (answer.Voice).
//
// The edge's own name (the API name, where the dashboard is) is signed in to by
// the same flow with H = that name: the dashboard links to StartPath with rd a
// path of it; start sets the binding there and then (the browser is on H
// already), and the code redeemed on it is not a session cookie: the front
// passes that one request on to the API, for the path the sign-in returns to,
// with the identity headers (an assertion whose audience is the edge's own
// name), and the dashboard makes its own session from it (ServeOwn).
//
// Why it is shaped this way: every token is sealed with a key every node
// derives from one shared secret, so any node of a many-node edge accepts a
// session or a code another node issued, and nothing is stored per visitor
// but a bounded set of used codes. That set is each node's own, so a code URL
// someone else saw (a proxy's log, a synced history, a Referer) could be
// replayed on another node within its minute: the binding cookie is what makes
// a code worthless outside the browser that started the sign-in, on every
// node, with no store shared between nodes. The provider is asked nothing until a
// visitor signs in (provider.go): its outage never takes other names off the
// air, and sessions already made keep working through it. Sign-in starts and
// callbacks are limited per visitor, and every call to the provider is
// bounded by a timeout.
package signin

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/oauth2"

	"mysocketd/edge/dataplane/internal/answer"
	"mysocketd/edge/dataplane/internal/limits"
	"mysocketd/edge/dataplane/internal/logx"
	"mysocketd/edge/dataplane/internal/state"
)

// Paths the edge answers itself: on its own name, and on the hosts of sockets with cloud authentication.
const (
	StartPath    = "/.edge/start"
	CallbackPath = "/.edge/callback"
	JWKSPath     = "/.well-known/jwks.json"
	RedeemPath   = "/.edge/signin"
	SignOutPath  = "/.edge/signout"

	SessionCookie = "__Host-mysocket-session"
	flowCookie    = "__Host-mysocket-signin"
	bindCookie    = "__Host-mysocket-bind" // on H: the browser that started a sign-in there
	flowFor       = 10 * time.Minute       // a visitor has this long at the provider
	codeFor       = time.Minute
	usedCodes     = 100_000 // the ids of redeemed codes kept (a little more than codeFor)
)

// Config is what the operator gives: the provider, the client, the shared secret.
type Config struct {
	Issuer, ClientID, ClientSecret string
	// PublicURL is the edge's own name as visitors reach it, e.g. https://api.edge.example.com
	// (with its port when not 443): the callback is PublicURL+CallbackPath, the assertions' issuer is PublicURL.
	PublicURL string
	Secret    []byte        // every node's same secret: the sealing key and the assertion key come from it
	Session   time.Duration // how long a session lasts
	Timeout   time.Duration // each call to the provider
	PerMinute float64       // sign-in starts and callbacks per visitor per minute (0: no limit)
}

// Service is the sign-in of one data plane.
type Service struct {
	cfg      Config
	state    *state.Holder
	seal     *sealer
	assert   *asserter
	op       *provider
	public   *url.URL
	limiter  *limits.Limiter
	used     *expirable.LRU[string, struct{}]
	now      func() time.Time
	disabled bool // no provider configured: every protected socket answers 403
}

// New makes the sign-in; with no Issuer it only refuses (cloud-auth sockets fail closed).
func New(cfg Config, holder *state.Holder) (*Service, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Session <= 0 {
		cfg.Session = 12 * time.Hour
	}
	s := &Service{cfg: cfg, state: holder, now: time.Now, limiter: limits.NewLimiter(),
		used: expirable.NewLRU[string, struct{}](usedCodes, nil, 2*codeFor)}
	if cfg.Issuer == "" {
		s.disabled = true
		return s, nil
	}
	if cfg.ClientID == "" || len(cfg.Secret) < 16 {
		return nil, errors.New("an OIDC issuer needs a client id and a secret of at least 16 bytes")
	}
	pub, err := url.Parse(cfg.PublicURL)
	if err != nil || pub.Scheme != "https" || pub.Host == "" {
		return nil, fmt.Errorf("the public URL %q is not https://<name>[:port]", cfg.PublicURL)
	}
	s.public = pub
	sealKey, err := hkdf.Key(sha256.New, cfg.Secret, nil, "mysocketd signin sealing", 32)
	if err != nil {
		return nil, err
	}
	seed, err := hkdf.Key(sha256.New, cfg.Secret, nil, "mysocketd signin assertion", 32)
	if err != nil {
		return nil, err
	}
	if s.seal, err = newSealer(sealKey); err != nil {
		return nil, err
	}
	if s.assert, err = newAsserter(strings.TrimSuffix(cfg.PublicURL, "/"), seed); err != nil {
		return nil, err
	}
	s.op = &provider{issuer: cfg.Issuer, clientID: cfg.ClientID, clientSecret: cfg.ClientSecret,
		redirect: strings.TrimSuffix(cfg.PublicURL, "/") + CallbackPath,
		client:   &http.Client{Timeout: cfg.Timeout}}
	return s, nil
}

// Enabled: a provider is configured, so cloud-auth sockets can be signed in to.
func (s *Service) Enabled() bool { return s != nil && !s.disabled }

// Identity is who passed: the app gets it in headers (SetHeaders).
type Identity struct {
	Email, Host string
}

// SetHeaders puts the identity in h: the e-mail and a fresh assertion. The
// caller has already removed whatever the visitor sent under those names.
func (s *Service) SetHeaders(h http.Header, id *Identity) {
	h.Set(answer.VisitorEmail, id.Email)
	if jwt, err := s.assert.assert(id.Email, id.Host, s.now()); err == nil {
		h.Set(answer.VisitorAssertion, jwt)
	} else {
		logx.Printf("sign-in: cannot sign an assertion: %v", err)
	}
}

// Pass decides a request to host, a socket with cloud authentication: the
// identity when it may reach the app; otherwise nil, and the edge has
// answered (a redirect to sign in, the 403 page, the sign-out page).
func (s *Service) Pass(w http.ResponseWriter, r *http.Request, sock *state.Socket, host string) *Identity {
	if s.disabled {
		answer.Write(w, http.StatusForbidden, answer.Forbidden,
			"this socket needs a sign-in and this edge has no identity provider configured (--oidc-issuer)")
		return nil
	}
	switch r.URL.Path {
	case RedeemPath:
		s.redeem(w, r, host)
		return nil
	case SignOutPath:
		http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
			Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		answer.Page(w, http.StatusOK, answer.SignIn, "Signed out", "You are signed out of "+host+".",
			[2]string{"Sign in again", "/"})
		return nil
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		if cl, err := s.seal.open("session", c.Value, s.now()); err == nil && cl.Host == host {
			if !Allowed(cl.Email, sock) {
				answer.Page(w, http.StatusForbidden, answer.NotAllowed, "Not allowed",
					fmt.Sprintf("%s may not open %s. Sign out, then sign in with an address this site allows.", cl.Email, host),
					[2]string{"Sign out", SignOutPath})
				return nil
			}
			return &Identity{Email: cl.Email, Host: host}
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		answer.Write(w, http.StatusUnauthorized, answer.SignIn, "sign in first: open https://"+host+"/ in a browser")
		return nil
	}
	back := url.URL{Scheme: "https", Host: s.visitorHost(host), Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	start := *s.public
	start.Path, start.RawQuery = StartPath, url.Values{"rd": {back.String()}, "b": {bindHash(s.binding(w, r))}}.Encode()
	w.Header().Set(answer.Header, string(answer.SignIn))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, start.String(), http.StatusFound)
	return nil
}

// binding sets (or renews) the browser's binding cookie on this host and
// returns its value. A binding the browser already holds is kept: the page's
// other requests (an XHR, a second tab) also come here while the visitor is at
// the provider, and must not strand that sign-in's code. No other host can
// plant one (the `__Host-` prefix: host-only, Secure).
func (s *Service) binding(w http.ResponseWriter, r *http.Request) string {
	v := ""
	if c, err := r.Cookie(bindCookie); err == nil && len(c.Value) == bindLen {
		v = c.Value
	} else {
		v = random(32)
	}
	http.SetCookie(w, &http.Cookie{Name: bindCookie, Value: v, Path: "/", MaxAge: int(flowFor / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return v
}

// bindLen is the length of a binding value (random(32)).
var bindLen = len(random(32))

// bindHash is what travels through start, the flow and the code instead of the binding itself.
func bindHash(v string) string {
	sum := sha256.Sum256([]byte("mysocketd signin binding\x00" + v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// visitorHost is host with the edge's public https port when it is not 443.
func (s *Service) visitorHost(host string) string {
	if p := s.public.Port(); p != "" && p != "443" {
		return net.JoinHostPort(host, p)
	}
	return host
}

// ServeOwn answers the sign-in's paths on the edge's own name. It returns the
// request the front passes on to the API, nil when it answered itself: r, or,
// when this request redeems a sign-in to the edge's own name, a GET of the
// path that sign-in returns to, with the identity that signed in (the front
// puts it in the headers the API gets, as it does for apps).
func (s *Service) ServeOwn(w http.ResponseWriter, r *http.Request) (*http.Request, *Identity) {
	if s.disabled {
		return r, nil
	}
	switch r.URL.Path {
	case JWKSPath:
		s.assert.serveJWKS(w)
	case StartPath:
		if s.limited(w, r) {
			return nil, nil
		}
		s.start(w, r)
	case CallbackPath:
		if s.limited(w, r) {
			return nil, nil
		}
		s.callback(w, r)
	case RedeemPath:
		return s.redeemOwn(w, r)
	default:
		return r, nil
	}
	return nil, nil
}

// Own is the edge's own name (lower case, no port): the host of its sign-in
// pages, and the audience of the assertions made for it.
func (s *Service) Own() string { return strings.ToLower(s.public.Hostname()) }

// Keys is what the control plane verifies the assertions with: their issuer and the JWKS.
func (s *Service) Keys() (issuer string, jwks []byte) {
	if s.disabled {
		return "", nil
	}
	return s.assert.issuer, s.assert.jwks
}

// limited spends one of the visitor's sign-in steps; true: none left, and the edge answered 429.
func (s *Service) limited(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.PerMinute <= 0 {
		return false
	}
	v := limits.Visitor(r.RemoteAddr)
	if !s.limiter.Allowed(v, s.cfg.PerMinute) {
		w.Header().Set("Retry-After", "60")
		answer.Write(w, http.StatusTooManyRequests, answer.RateLimited, "too many sign-ins from your address; try again in a minute")
		return true
	}
	s.limiter.Spend(v, s.cfg.PerMinute)
	return false
}

// target checks rd: an https URL on the edge's public port whose host is a
// socket with cloud authentication or the edge's own name, or a path of the
// edge's own name. own: it is the edge's own name.
func (s *Service) target(rd string) (u *url.URL, own, ok bool) {
	u, err := url.Parse(rd)
	if err != nil || u.User != nil || u.Opaque != "" {
		return nil, false, false
	}
	if u.Scheme == "" && u.Host == "" && strings.HasPrefix(u.Path, "/") && !strings.HasPrefix(u.Path, "//") { // a path of the edge's own name
		abs := *s.public
		abs.Path, abs.RawPath, abs.RawQuery, abs.Fragment = u.Path, u.RawPath, u.RawQuery, ""
		return &abs, true, true
	}
	if u.Scheme != "https" || u.Hostname() == "" {
		return nil, false, false
	}
	if u.Host != s.visitorHost(u.Hostname()) { // only the edge's own https port: never another port of the name
		return nil, false, false
	}
	host := strings.ToLower(u.Hostname())
	if host == s.Own() {
		return u, true, true
	}
	sock := s.state.ByDNS(host)
	return u, false, sock != nil && sock.CloudAuth
}

func (s *Service) start(w http.ResponseWriter, r *http.Request) {
	rd, own, ok := s.target(r.URL.Query().Get("rd"))
	if !ok {
		answer.Write(w, http.StatusBadRequest, answer.SignIn, "nothing to sign in to: rd must name a socket of this edge that needs a sign-in, or a page of the edge's own name")
		return
	}
	bind := r.URL.Query().Get("b")
	if own { // the browser is on the edge's own name already: its binding is set here
		bind = bindHash(s.binding(w, r))
	}
	if len(bind) != len(bindHash("")) {
		answer.Write(w, http.StatusBadRequest, answer.SignIn, "start from the site itself: open "+rd.String())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	op, err := s.op.get(ctx)
	if err != nil {
		logx.Printf("sign-in: the identity provider %s: %v", s.cfg.Issuer, err)
		w.Header().Set("Retry-After", "10")
		answer.Page(w, http.StatusServiceUnavailable, answer.Unavailable, "Sign-in unavailable",
			"The identity provider cannot be reached right now; try again in a little while.",
			[2]string{"Try again", rd.String()})
		return
	}
	fl := claims{Exp: s.now().Add(flowFor).Unix(), Target: rd.String(), State: random(24), Nonce: random(24),
		Verifier: oauth2.GenerateVerifier(), Bind: bind}
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: s.seal.seal("flow", fl), Path: "/",
		MaxAge: int(flowFor / time.Second), Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set(answer.Header, string(answer.SignIn))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, op.oauth.AuthCodeURL(fl.State, oidc.Nonce(fl.Nonce), oauth2.S256ChallengeOption(fl.Verifier)),
		http.StatusFound)
}

// failed answers a callback that cannot sign the visitor in: a page with a link to start again.
func failed(w http.ResponseWriter, status int, text, again string) {
	links := [][2]string{}
	if again != "" {
		links = append(links, [2]string{"Sign in again", again})
	}
	answer.Page(w, status, answer.SignIn, "Sign-in failed", text, links...)
}

func (s *Service) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	c, err := r.Cookie(flowCookie)
	if err != nil {
		failed(w, http.StatusBadRequest, "This sign-in was not started in this browser, or it took too long.", "")
		return
	}
	fl, err := s.seal.open("flow", c.Value, s.now())
	if err != nil {
		failed(w, http.StatusBadRequest, "This sign-in took too long; start again.", "")
		return
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(fl.State)) != 1 {
		failed(w, http.StatusBadRequest, "This sign-in does not match the one this browser started.", fl.Target)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode}) // a flow is used once
	if e := q.Get("error"); e != "" {
		failed(w, http.StatusForbidden, "The identity provider refused the sign-in: "+e+" "+q.Get("error_description"), fl.Target)
		return
	}
	email, why := s.identify(r.Context(), q.Get("code"), fl)
	if why != "" {
		failed(w, http.StatusForbidden, why, fl.Target)
		return
	}
	rd, _, ok := s.target(fl.Target)
	if !ok {
		failed(w, http.StatusBadRequest, "The site this sign-in was for is gone.", "")
		return
	}
	code := s.seal.seal("code", claims{Exp: s.now().Add(codeFor).Unix(), Email: email,
		Host: strings.ToLower(rd.Hostname()), Target: rd.RequestURI(), ID: random(18), Bind: fl.Bind})
	next := url.URL{Scheme: "https", Host: rd.Host, Path: RedeemPath, RawQuery: url.Values{"code": {code}}.Encode()}
	w.Header().Set(answer.Header, string(answer.SignIn))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, next.String(), http.StatusFound)
}

// identify exchanges the code and verifies the ID token: the verified e-mail
// address, or why the visitor cannot be signed in (a sentence for the page).
func (s *Service) identify(ctx context.Context, code string, fl claims) (string, string) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	op, err := s.op.get(ctx)
	if err != nil {
		logx.Printf("sign-in: the identity provider %s: %v", s.cfg.Issuer, err)
		return "", "The identity provider cannot be reached right now; try again in a little while."
	}
	ctx = s.op.ctx(ctx)
	tok, err := op.oauth.Exchange(ctx, code, oauth2.VerifierOption(fl.Verifier))
	if err != nil {
		logx.Printf("sign-in: code exchange: %v", err)
		return "", "The identity provider did not accept the sign-in; start again."
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := op.verifier.Verify(ctx, raw)
	if err != nil {
		logx.Printf("sign-in: ID token: %v", err)
		return "", "The identity provider's answer could not be verified; start again."
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(fl.Nonce)) != 1 {
		return "", "The identity provider's answer was not for this sign-in; start again."
	}
	var cl struct {
		Email    string `json:"email"`
		Verified any    `json:"email_verified"`
	}
	idt.Claims(&cl)
	if cl.Email == "" { // many providers put the e-mail in the userinfo only
		info, err := op.op.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil || info.Subject != idt.Subject {
			logx.Printf("sign-in: userinfo: %v", err)
			return "", "The identity provider did not say who you are; start again."
		}
		cl.Email, cl.Verified = info.Email, info.EmailVerified
	}
	if cl.Email == "" {
		return "", "The identity provider gave no e-mail address; this site needs one."
	}
	if !verified(cl.Verified) {
		return "", cl.Email + " is not verified by the identity provider; this site needs a verified e-mail address."
	}
	return strings.ToLower(cl.Email), ""
}

// verified reads email_verified: a boolean, or the string "true" some providers send.
func verified(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		b, _ := strconv.ParseBool(x)
		return b
	}
	return false
}

// redeem takes a one-time code on the socket's host and gives it its own
// session cookie, only in the browser that started the sign-in (its binding
// cookie), and sends the visitor where it was going.
func (s *Service) redeem(w http.ResponseWriter, r *http.Request, host string) {
	cl, ok := s.spend(w, r, host)
	if !ok {
		return
	}
	exp := s.now().Add(s.cfg.Session)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Path: "/", Expires: exp, MaxAge: int(s.cfg.Session / time.Second),
		Value:  s.seal.seal("session", claims{Exp: exp.Unix(), Email: cl.Email, Host: host}),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set(answer.Header, string(answer.SignIn))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, cl.Target, http.StatusFound)
}

// redeemOwn takes a one-time code on the edge's own name: no session of the
// data plane's, but this one request, made a GET of the path the sign-in
// returns to, goes on to the API with the identity (the dashboard verifies the
// assertion and makes its own session). Nothing else on the edge's own name
// ever carries an identity.
func (s *Service) redeemOwn(w http.ResponseWriter, r *http.Request) (*http.Request, *Identity) {
	cl, ok := s.spend(w, r, s.Own())
	if !ok {
		return nil, nil
	}
	next := r.Clone(r.Context())
	next.Method, next.Body, next.ContentLength = http.MethodGet, http.NoBody, 0
	u, err := url.ParseRequestURI(cl.Target)
	if err != nil {
		u = &url.URL{Path: "/"}
	}
	next.URL.Path, next.URL.RawPath, next.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
	next.RequestURI = u.RequestURI()
	return next, &Identity{Email: cl.Email, Host: s.Own()}
}

// spend checks a one-time code for host and marks it used: its claims (Target a
// path of host), or false and the edge answered. The binding is checked before
// the code is marked used, so a stranger's replay cannot spend the visitor's code.
func (s *Service) spend(w http.ResponseWriter, r *http.Request, host string) (claims, bool) {
	cl, err := s.seal.open("code", r.URL.Query().Get("code"), s.now())
	if err != nil || cl.Host != host || cl.ID == "" || cl.Bind == "" {
		answer.Page(w, http.StatusBadRequest, answer.SignIn, "Sign-in failed",
			"This sign-in link is not valid here, or it expired.", [2]string{"Sign in again", "/"})
		return cl, false
	}
	c, err := r.Cookie(bindCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(bindHash(c.Value)), []byte(cl.Bind)) != 1 {
		answer.Page(w, http.StatusBadRequest, answer.SignIn, "Sign-in failed",
			"This sign-in link belongs to the browser that started the sign-in; sign in here instead.",
			[2]string{"Sign in again", "/"})
		return cl, false
	}
	http.SetCookie(w, &http.Cookie{Name: bindCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode}) // a binding serves one sign-in
	if _, seen := s.used.Get(cl.ID); seen {
		answer.Page(w, http.StatusBadRequest, answer.SignIn, "Sign-in failed",
			"This sign-in link was already used.", [2]string{"Sign in again", "/"})
		return cl, false
	}
	s.used.Add(cl.ID, struct{}{})
	if !strings.HasPrefix(cl.Target, "/") || strings.HasPrefix(cl.Target, "//") {
		cl.Target = "/"
	}
	return cl, true
}

// StripCookie removes the edge's session and binding cookies from what the app
// gets: the app learns who the visitor is from the headers, never holds either.
func StripCookie(h http.Header) {
	lines := h.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	r := http.Request{Header: http.Header{"Cookie": lines}}
	var kept []string
	for _, c := range r.Cookies() {
		if c.Name != SessionCookie && c.Name != bindCookie {
			kept = append(kept, c.Name+"="+c.Value)
		}
	}
	h.Del("Cookie")
	if len(kept) > 0 {
		h.Set("Cookie", strings.Join(kept, "; "))
	}
}
