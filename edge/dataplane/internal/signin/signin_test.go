package signin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"mysocketd/edge/dataplane/internal/state"
)

const public = "https://api.edge.localhost:8443"

func holder(t *testing.T) *state.Holder {
	h := state.NewHolder("")
	h.Replace(state.StateIn{Version: 1, Sockets: []state.SocketIn{
		{SocketID: "1", UserID: "u", DNSName: "a.edge.localhost", Type: "http", CloudAuth: true,
			AllowedAddresses: []string{"Alice@Example.com"}},
		{SocketID: "2", UserID: "u", DNSName: "b.edge.localhost", Type: "http", CloudAuth: true,
			AllowedDomains: []string{"example.com"}},
		{SocketID: "3", UserID: "u", DNSName: "open.edge.localhost", Type: "http"},
	}})
	return h
}

// service: a sign-in whose provider is a closed port (these tests never reach it but for the outage case).
func service(t *testing.T, now time.Time) *Service { return limitedService(t, now, 0) }

func limitedService(t *testing.T, now time.Time, perMinute float64) *Service {
	s, err := New(Config{Issuer: "http://127.0.0.1:1/", ClientID: "edge", ClientSecret: "s", PublicURL: public,
		Secret: []byte("0123456789abcdef0123456789abcdef"), Session: time.Hour, Timeout: 2 * time.Second,
		PerMinute: perMinute}, holder(t))
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return now }
	return s
}

func TestAllowed(t *testing.T) {
	sock := &state.Socket{SocketIn: state.SocketIn{AllowedAddresses: []string{"Alice@Example.com", " bob@x.io "},
		AllowedDomains: []string{"corp.example", "@team.example"}}}
	cases := []struct {
		email string
		want  bool
	}{
		{"alice@example.com", true},
		{"ALICE@EXAMPLE.COM", true},
		{"bob@x.io", true},
		{"carol@example.com", false}, // the address list names alice only
		{"dave@corp.example", true},
		{"dave@sub.corp.example", false}, // a domain is that domain, not its subdomains
		{"eve@team.example", true},
		{"eve@corp.example.evil", false},
		{"corp.example", false},
		{"@corp.example", false},
		{"x@", false},
		{"", false},
	}
	for _, c := range cases {
		if got := Allowed(c.email, sock); got != c.want {
			t.Errorf("Allowed(%q) = %v, want %v", c.email, got, c.want)
		}
	}
	if Allowed("alice@example.com", &state.Socket{}) {
		t.Error("empty lists must allow nobody")
	}
}

func TestSealer(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, _ := newSealer([]byte("0123456789abcdef0123456789abcdef"))
	other, _ := newSealer([]byte("fedcba9876543210fedcba9876543210"))
	tok := s.seal("session", claims{Exp: now.Add(time.Minute).Unix(), Email: "a@b.c", Host: "h"})
	tampered := []byte(tok)
	tampered[len(tampered)/2] ^= 1
	cases := []struct {
		name, purpose, token string
		sealer               *sealer
		at                   time.Time
		ok                   bool
	}{
		{"good", "session", tok, s, now, true},
		{"another purpose", "code", tok, s, now, false},
		{"expired", "session", tok, s, now.Add(time.Minute), false},
		{"tampered", "session", string(tampered), s, now, false},
		{"another key", "session", tok, other, now, false},
		{"not base64", "session", "!!!", s, now, false},
		{"empty", "session", "", s, now, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, err := c.sealer.open(c.purpose, c.token, c.at)
			if (err == nil) != c.ok {
				t.Fatalf("open: %v, want ok=%v", err, c.ok)
			}
			if c.ok && (cl.Email != "a@b.c" || cl.Host != "h") {
				t.Fatalf("claims %+v", cl)
			}
		})
	}
	if strings.Contains(tok, "a@b.c") {
		t.Error("the e-mail is readable in the token")
	}
}

func session(s *Service, email, host string, exp time.Time) *http.Cookie {
	return &http.Cookie{Name: SessionCookie, Value: s.seal.seal("session", claims{Exp: exp.Unix(), Email: email, Host: host})}
}

func TestPass(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := service(t, now)
	a := s.state.ByDNS("a.edge.localhost")
	cases := []struct {
		name, method, path string
		cookie             *http.Cookie
		pass               bool
		status             int
		reason             string
	}{
		{"no session: to sign in", "GET", "/x?y=1", nil, false, 302, "sign-in"},
		{"no session, POST: 401", "POST", "/x", nil, false, 401, "sign-in"},
		{"session", "GET", "/", session(s, "alice@example.com", "a.edge.localhost", now.Add(time.Minute)), true, 0, ""},
		{"session of another host", "GET", "/", session(s, "alice@example.com", "b.edge.localhost", now.Add(time.Minute)), false, 302, "sign-in"},
		{"expired session", "GET", "/", session(s, "alice@example.com", "a.edge.localhost", now), false, 302, "sign-in"},
		{"tampered session", "GET", "/", &http.Cookie{Name: SessionCookie, Value: tamper(session(s, "alice@example.com", "a.edge.localhost", now.Add(time.Minute)).Value)}, false, 302, "sign-in"},
		{"not on the list", "GET", "/", session(s, "carol@example.com", "a.edge.localhost", now.Add(time.Minute)), false, 403, "not-allowed"},
		{"sign-out", "GET", SignOutPath, session(s, "alice@example.com", "a.edge.localhost", now.Add(time.Minute)), false, 200, "sign-in"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, "https://a.edge.localhost:8443"+c.path, nil)
			if c.cookie != nil {
				r.AddCookie(c.cookie)
			}
			w := httptest.NewRecorder()
			id := s.Pass(w, r, a, "a.edge.localhost")
			if (id != nil) != c.pass {
				t.Fatalf("passed=%v, want %v (status %d %s)", id != nil, c.pass, w.Code, w.Body)
			}
			if c.pass {
				if id.Email != "alice@example.com" || id.Host != "a.edge.localhost" {
					t.Fatalf("identity %+v", id)
				}
				return
			}
			if w.Code != c.status || w.Header().Get("Mysocket-Edge") != c.reason {
				t.Fatalf("status %d %q, want %d %q", w.Code, w.Header().Get("Mysocket-Edge"), c.status, c.reason)
			}
			if c.status == 302 {
				loc, _ := url.Parse(w.Header().Get("Location"))
				if loc.Scheme+"://"+loc.Host+loc.Path != public+StartPath ||
					loc.Query().Get("rd") != "https://a.edge.localhost:8443"+c.path {
					t.Fatalf("Location %s", loc)
				}
				b := cookieNamed(w.Result(), bindCookie)
				if b == nil || !b.Secure || !b.HttpOnly || b.Domain != "" || b.Path != "/" || loc.Query().Get("b") != bindHash(b.Value) {
					t.Fatalf("binding cookie %+v for b=%q", b, loc.Query().Get("b"))
				}
			}
			if c.path == SignOutPath && !strings.Contains(w.Header().Get("Set-Cookie"), "Max-Age=0") {
				t.Fatalf("sign-out left the cookie: %q", w.Header().Get("Set-Cookie"))
			}
		})
	}
}

func TestRedeem(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := service(t, now)
	a := s.state.ByDNS("a.edge.localhost")
	code := func(host string, exp time.Time, id string) string {
		return s.seal.seal("code", claims{Exp: exp.Unix(), Email: "alice@example.com", Host: host, Target: "/deep?q=1", ID: id,
			Bind: bindHash("browser")})
	}
	good := code("a.edge.localhost", now.Add(time.Minute), "one")
	cases := []struct {
		name, code string
		status     int
	}{
		{"good", good, 302},
		{"used twice", good, 400},
		{"for another host", code("b.edge.localhost", now.Add(time.Minute), "two"), 400},
		{"expired", code("a.edge.localhost", now, "three"), 400},
		{"a session is not a code", session(s, "alice@example.com", "a.edge.localhost", now.Add(time.Minute)).Value, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest("GET", "https://a.edge.localhost:8443"+RedeemPath+"?code="+url.QueryEscape(c.code), nil)
			r.AddCookie(&http.Cookie{Name: bindCookie, Value: "browser"})
			if s.Pass(w, r, a, "a.edge.localhost") != nil || w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
			if c.status != 302 {
				return
			}
			if w.Header().Get("Location") != "/deep?q=1" {
				t.Fatalf("Location %q", w.Header().Get("Location"))
			}
			ck := cookieNamed(w.Result(), SessionCookie)
			if ck == nil || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Domain != "" || ck.Path != "/" || ck.MaxAge != 3600 {
				t.Fatalf("session cookie %+v", ck)
			}
			r2 := httptest.NewRequest("GET", "https://a.edge.localhost:8443/", nil)
			r2.AddCookie(ck)
			if id := s.Pass(httptest.NewRecorder(), r2, a, "a.edge.localhost"); id == nil || id.Email != "alice@example.com" {
				t.Fatalf("the new session does not pass: %+v", id)
			}
		})
	}
}

func cookieNamed(res *http.Response, name string) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// redeemAt asks node s to take code on a.edge.localhost with the binding cookie bind ("": none).
func redeemAt(s *Service, code, bind string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "https://a.edge.localhost:8443"+RedeemPath+"?code="+url.QueryEscape(code), nil)
	if bind != "" {
		r.AddCookie(&http.Cookie{Name: bindCookie, Value: bind})
	}
	s.Pass(w, r, s.state.ByDNS("a.edge.localhost"), "a.edge.localhost")
	return w
}

// TestCodeNeedsTheBrowserThatStarted: a code is taken only with the binding
// cookie H gave the browser that started the sign-in (its hash is in the code),
// on any node; a stranger's replay does not spend it; without the cookie a
// code is worthless even on a node that never saw it used (two Services with
// one secret are two nodes of an edge: each keeps its own used codes).
func TestCodeNeedsTheBrowserThatStarted(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	node1, node2 := service(t, now), service(t, now)
	// the browser's binding, as H sets it when it sends the visitor to sign in
	w := httptest.NewRecorder()
	s := node1
	s.Pass(w, httptest.NewRequest("GET", "https://a.edge.localhost:8443/x", nil), s.state.ByDNS("a.edge.localhost"), "a.edge.localhost")
	mine := ""
	if c := cookieNamed(w.Result(), bindCookie); c != nil {
		mine = c.Value
	} else {
		t.Error("no binding cookie on the way to sign in")
	}
	loc, _ := url.Parse(w.Header().Get("Location"))
	code := node1.seal.seal("code", claims{Exp: now.Add(time.Minute).Unix(), Email: "alice@example.com",
		Host: "a.edge.localhost", Target: "/x", ID: "c1", Bind: loc.Query().Get("b")})
	unbound := node1.seal.seal("code", claims{Exp: now.Add(time.Minute).Unix(), Email: "alice@example.com",
		Host: "a.edge.localhost", Target: "/x", ID: "c2"})
	cases := []struct {
		name       string
		node       *Service
		code, bind string
		status     int
		text       string
	}{
		{"no binding cookie", node1, code, "", 400, "belongs to the browser"},
		{"another browser's binding", node1, code, random(32), 400, "belongs to the browser"},
		{"on another node, no binding cookie", node2, code, "", 400, "belongs to the browser"},
		{"on another node, another browser's binding", node2, code, random(32), 400, "belongs to the browser"},
		{"a code bound to no browser", node1, unbound, mine, 400, "not valid"},
		{"the browser that started", node1, code, mine, 302, ""}, // the strangers above did not spend it
		{"once per node", node1, code, mine, 400, "already used"},
		{"after it was taken, on another node", node2, code, "", 400, "belongs to the browser"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := redeemAt(c.node, c.code, c.bind)
			if w.Code != c.status || !strings.Contains(w.Body.String(), c.text) {
				t.Fatalf("status %d, want %d with %q: %s", w.Code, c.status, c.text, w.Body)
			}
			sess := cookieNamed(w.Result(), SessionCookie)
			if (sess != nil) != (c.status == 302) {
				t.Fatalf("session cookie %+v with status %d", sess, w.Code)
			}
			if c.status == 302 {
				if b := cookieNamed(w.Result(), bindCookie); b == nil || b.MaxAge >= 0 {
					t.Fatalf("the binding was not cleared: %+v", b)
				}
			}
		})
	}
}

// TestBindingIsKept: a browser that already holds a binding keeps it (its
// other requests while it is at the provider must not strand its code); a
// malformed one is replaced.
func TestBindingIsKept(t *testing.T) {
	s := service(t, time.Unix(1_800_000_000, 0))
	held := random(32)
	for _, c := range []struct {
		name, sent string
		kept       bool
	}{{"none", "", false}, {"held", held, true}, {"malformed", "short", false}} {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest("GET", "https://a.edge.localhost:8443/", nil)
			if c.sent != "" {
				r.AddCookie(&http.Cookie{Name: bindCookie, Value: c.sent})
			}
			s.Pass(w, r, s.state.ByDNS("a.edge.localhost"), "a.edge.localhost")
			ck := cookieNamed(w.Result(), bindCookie)
			if ck == nil {
				t.Fatal("no binding cookie on the way to sign in")
			}
			if got := ck.Value; (got == c.sent) != c.kept || len(got) != bindLen {
				t.Fatalf("sent %q, got %q", c.sent, ck.Value)
			}
		})
	}
}

// TestStart: only a cloud-auth socket of this edge on its own https port may be returned to; an
// unreachable provider is a 503 page within the timeout; starts are limited per visitor.
func TestStart(t *testing.T) {
	s := service(t, time.Now())
	cases := []struct {
		name, rd string
		status   int
	}{
		{"no binding", "https://a.edge.localhost:8443/", 400},
		{"an open socket", "https://open.edge.localhost:8443/", 400},
		{"another port of the name", "https://a.edge.localhost:20001/", 400},
		{"plain http", "http://a.edge.localhost:8443/", 400},
		{"elsewhere", "https://evil.example:8443/", 400},
		{"with userinfo", "https://x@a.edge.localhost:8443/", 400},
		{"the provider is down", "https://a.edge.localhost:8443/", 503},
		{"the edge's own name, another port", "https://api.edge.localhost:9999/dashboard/", 400},
		{"the edge's own name over http", "http://api.edge.localhost:8443/dashboard/", 400},
		{"a path that names another host", "//evil.example/dashboard/", 400},
		{"an opaque URL", "https:evil.example", 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			q := "?rd=" + url.QueryEscape(c.rd)
			if c.name != "no binding" {
				q += "&b=" + bindHash("browser")
			}
			r := httptest.NewRequest("GET", public+StartPath+q, nil)
			r.RemoteAddr = "192.0.2.1:1234"
			if next, _ := s.ServeOwn(w, r); next != nil || w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
		})
	}
}

// TestLimits: sign-in starts and callbacks share one budget per visitor (an IPv6 /64 is one).
func TestLimits(t *testing.T) {
	s := limitedService(t, time.Now(), 3)
	cases := []struct {
		peer, path string
		status     int
	}{
		{"192.0.2.1:1", StartPath + "?rd=x", 400},
		{"192.0.2.1:2", CallbackPath, 400},
		{"192.0.2.1:3", StartPath + "?rd=x", 400},
		{"192.0.2.1:4", CallbackPath, 429}, // the fourth in a minute
		{"192.0.2.2:1", CallbackPath, 400}, // another visitor is not held back
		{"[2001:db8::1]:1", StartPath, 400},
		{"[2001:db8::2]:1", StartPath, 400},
		{"[2001:db8::3]:1", StartPath, 400},
		{"[2001:db8::4]:1", StartPath, 429}, // one /64
		{"192.0.2.1:5", JWKSPath, 200},      // the JWKS is not a sign-in step
	}
	for i, c := range cases {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", public+c.path, nil)
		r.RemoteAddr = c.peer
		if s.ServeOwn(w, r); w.Code != c.status {
			t.Fatalf("%d %s %s: status %d, want %d", i, c.peer, c.path, w.Code, c.status)
		}
	}
}

func TestCallbackChecksTheFlow(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := service(t, now)
	flow := s.seal.seal("flow", claims{Exp: now.Add(time.Minute).Unix(), State: "st", Nonce: "n", Verifier: "v",
		Target: "https://a.edge.localhost:8443/"})
	cases := []struct {
		name, query string
		cookie      string
		status      int
		text        string
	}{
		{"no flow cookie", "state=st&code=c", "", 400, "not started in this browser"},
		{"state mismatch", "state=other&code=c", flow, 400, "does not match"},
		{"a session is not a flow", "state=st&code=c", session(s, "a@b.c", "a.edge.localhost", now.Add(time.Minute)).Value, 400, "took too long"},
		{"provider error", "state=st&error=access_denied", flow, 403, "access_denied"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", public+CallbackPath+"?"+c.query, nil)
			if c.cookie != "" {
				r.AddCookie(&http.Cookie{Name: flowCookie, Value: c.cookie})
			}
			w := httptest.NewRecorder()
			s.ServeOwn(w, r)
			if w.Code != c.status || !strings.Contains(w.Body.String(), c.text) {
				t.Fatalf("status %d, want %d with %q: %s", w.Code, c.status, c.text, w.Body)
			}
		})
	}
}

func TestAssertionVerifiesAgainstTheJWKS(t *testing.T) {
	now := time.Now()
	s := service(t, now)
	tok, err := s.assert.assert("alice@example.com", "a.edge.localhost", now)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	s.ServeOwn(w, httptest.NewRequest("GET", public+JWKSPath, nil))
	var set jose.JSONWebKeySet
	if err := jsonUnmarshal(w.Body.Bytes(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks %s: %v", w.Body, err)
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.Claims
	var extra struct {
		Email string `json:"email"`
	}
	if err := parsed.Claims(set.Keys[0].Key, &c, &extra); err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: public, AnyAudience: jwt.Audience{"a.edge.localhost"}, Time: now}, 0); err != nil {
		t.Fatal(err)
	}
	if c.Subject != "alice@example.com" || extra.Email != "alice@example.com" {
		t.Fatalf("claims %+v %+v", c, extra)
	}
	// every node derives the same key from the same secret
	s2 := service(t, now)
	if string(s2.assert.jwks) != string(s.assert.jwks) {
		t.Fatal("two services with one secret publish different keys")
	}
}

func TestStripCookie(t *testing.T) {
	cases := []struct{ in, want []string }{
		{[]string{"a=1; " + SessionCookie + "=x; b=2"}, []string{"a=1; b=2"}},
		{[]string{SessionCookie + "=x"}, nil},
		{[]string{"a=1", SessionCookie + "=x"}, []string{"a=1"}},
		{[]string{bindCookie + "=y; a=1"}, []string{"a=1"}},
		{nil, nil},
	}
	for _, c := range cases {
		h := http.Header{}
		for _, v := range c.in {
			h.Add("Cookie", v)
		}
		StripCookie(h)
		if got := h.Values("Cookie"); strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%q -> %q, want %q", c.in, got, c.want)
		}
	}
}

func TestVerified(t *testing.T) {
	for v, want := range map[any]bool{true: true, false: false, "true": true, "false": false, nil: false, "yes": false, 1.0: false} {
		if verified(v) != want {
			t.Errorf("verified(%v) != %v", v, want)
		}
	}
}

func TestDisabledRefuses(t *testing.T) {
	s, err := New(Config{}, holder(t))
	if err != nil || s.Enabled() {
		t.Fatalf("%v %v", s, err)
	}
	w := httptest.NewRecorder()
	if s.Pass(w, httptest.NewRequest("GET", "https://a.edge.localhost/", nil), s.state.ByDNS("a.edge.localhost"), "a.edge.localhost") != nil || w.Code != 403 {
		t.Fatalf("status %d", w.Code)
	}
	if next, _ := s.ServeOwn(httptest.NewRecorder(), httptest.NewRequest("GET", public+StartPath, nil)); next == nil {
		t.Fatal("a disabled sign-in answered on the edge's own name")
	}
}

// TestStartOwnName: a sign-in to the edge's own name (the dashboard's) starts on that name with
// rd a path or a URL of it, and binds the browser right there (no b: the browser is on H already).
func TestStartOwnName(t *testing.T) {
	op := fakeProvider(t)
	s := service(t, time.Now())
	s.op.issuer = op.URL + "/"
	cases := []struct {
		name, rd, b, target string
		status              int
	}{
		{"a path", "/dashboard/sign-in/oidc?x=1", "", public + "/dashboard/sign-in/oidc?x=1", 302},
		{"a URL of the name", public + "/dashboard/", "", public + "/dashboard/", 302},
		{"in any case", "https://API.edge.localhost:8443/d", "", "https://API.edge.localhost:8443/d", 302},
		{"a b given is not taken: the binding is this browser's", "/d", bindHash("someone else"), public + "/d", 302},
		{"a path with a backslash stays on the name", "/\\evil.example/", "", public + "/%5Cevil.example/", 302},
		{"a socket without sign-in", "https://open.edge.localhost:8443/", "", "", 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := url.Values{"rd": {c.rd}}
			if c.b != "" {
				q.Set("b", c.b)
			}
			w := httptest.NewRecorder()
			if next, _ := s.ServeOwn(w, httptest.NewRequest("GET", public+StartPath+"?"+q.Encode(), nil)); next != nil || w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
			if c.status != 302 {
				return
			}
			if loc := w.Header().Get("Location"); !strings.HasPrefix(loc, op.URL+"/authorize?") {
				t.Fatalf("Location %q", loc)
			}
			b := cookieNamed(w.Result(), bindCookie)
			if b == nil || !b.Secure || !b.HttpOnly || b.Domain != "" || b.Path != "/" || len(b.Value) != bindLen {
				t.Fatalf("binding cookie %+v", b)
			}
			fl, err := s.seal.open("flow", cookieNamed(w.Result(), flowCookie).Value, s.now())
			if err != nil || fl.Bind != bindHash(b.Value) || fl.Target != c.target {
				t.Fatalf("flow %+v (%v), want the binding %q and the target %q", fl, err, bindHash(b.Value), c.target)
			}
		})
	}
}

// fakeProvider answers discovery only: enough for a start to send the visitor on.
func fakeProvider(t *testing.T) *httptest.Server {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL + "/", "authorization_endpoint": srv.URL + "/authorize",
			"token_endpoint": srv.URL + "/token", "jwks_uri": srv.URL + "/keys", "id_token_signing_alg_values_supported": []string{"RS256"}})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRedeemOwnName: a code for the edge's own name, taken there by the browser that started,
// is no session cookie but that one request made a GET of the path the sign-in returns to, with
// the identity; everything else is the socket hosts' refusals.
func TestRedeemOwnName(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := service(t, now)
	code := func(host, target, id string, exp time.Time) string {
		return s.seal.seal("code", claims{Exp: exp.Unix(), Email: "alice@example.com", Host: host, Target: target, ID: id,
			Bind: bindHash("browser")})
	}
	good := code("api.edge.localhost", "/dashboard/sign-in/oidc?x=1", "one", now.Add(time.Minute))
	cases := []struct {
		name, method, code, bind string
		status                   int    // 0: passed on
		path                     string // passed on for this path and query
	}{
		{"good", "GET", good, "browser", 0, "/dashboard/sign-in/oidc?x=1"},
		{"used twice", "GET", good, "browser", 400, ""},
		{"another browser", "GET", code("api.edge.localhost", "/d", "two", now.Add(time.Minute)), "other", 400, ""},
		{"no binding", "GET", code("api.edge.localhost", "/d", "three", now.Add(time.Minute)), "", 400, ""},
		{"a socket's code", "GET", code("a.edge.localhost", "/d", "four", now.Add(time.Minute)), "browser", 400, ""},
		{"expired", "GET", code("api.edge.localhost", "/d", "five", now), "browser", 400, ""},
		{"a session is not a code", "GET", session(s, "alice@example.com", "api.edge.localhost", now.Add(time.Minute)).Value, "browser", 400, ""},
		{"a POST is passed on as a GET", "POST", code("api.edge.localhost", "/d", "six", now.Add(time.Minute)), "browser", 0, "/d"},
		{"a target that is not a path", "GET", code("api.edge.localhost", "//evil.example/", "seven", now.Add(time.Minute)), "browser", 0, "/"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(c.method, public+RedeemPath+"?code="+url.QueryEscape(c.code), strings.NewReader("body"))
			if c.bind != "" {
				r.AddCookie(&http.Cookie{Name: bindCookie, Value: c.bind})
			}
			next, id := s.ServeOwn(w, r)
			if c.status != 0 {
				if next != nil || id != nil || w.Code != c.status {
					t.Fatalf("passed on %v %+v, status %d, want %d", next, id, w.Code, c.status)
				}
				return
			}
			if next == nil || id == nil {
				t.Fatalf("not passed on: %d %s", w.Code, w.Body)
			}
			if next.Method != "GET" || next.URL.RequestURI() != c.path || next.RequestURI != c.path || next.ContentLength != 0 {
				t.Fatalf("passed on %s %s (%q, %d bytes)", next.Method, next.URL.RequestURI(), next.RequestURI, next.ContentLength)
			}
			if *id != (Identity{Email: "alice@example.com", Host: "api.edge.localhost"}) {
				t.Fatalf("identity %+v", id)
			}
			if cookieNamed(w.Result(), SessionCookie) != nil {
				t.Fatal("a session cookie on the edge's own name")
			}
			if b := cookieNamed(w.Result(), bindCookie); b == nil || b.MaxAge >= 0 {
				t.Fatalf("the binding was not cleared: %+v", b)
			}
		})
	}
	// a code for the edge's own name is not taken on a socket's host either
	w := redeemAt(s, code("api.edge.localhost", "/d", "eight", now.Add(time.Minute)), "browser")
	if w.Code != 400 || cookieNamed(w.Result(), SessionCookie) != nil {
		t.Fatalf("a socket's host took the own name's code: %d", w.Code)
	}
	// other paths of the own name pass as they are, with no identity
	r := httptest.NewRequest("GET", public+"/dashboard/", nil)
	if next, id := s.ServeOwn(httptest.NewRecorder(), r); next != r || id != nil {
		t.Fatalf("an ordinary request: %v %+v", next, id)
	}
	if issuer, jwks := s.Keys(); issuer != public || string(jwks) != string(s.assert.jwks) || s.Own() != "api.edge.localhost" {
		t.Fatalf("keys %q %s, own %q", issuer, jwks, s.Own())
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// tamper changes a token's first character to another one ("x" + v[1:] left a token that began
// with "x" untouched, about one run in 64).
func tamper(v string) string {
	if v[0] == 'x' {
		return "y" + v[1:]
	}
	return "x" + v[1:]
}
