package routes

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func mustCompile(t *testing.T, tb Table) *Compiled {
	t.Helper()
	c, err := Compile(tb)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return c
}

func to(backend string) Action { return Action{Backends: []Backend{{Backend: backend, Weight: 1}}} }

func req(method, target, host string, headers ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.Host = host
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

func first(int) int { return 0 }

// The table mysocketd would send for a Gateway with three HTTP listeners and routes already ordered.
func sample() Table {
	return Table{
		Actions: []Action{to("a"), to("b"), to("c"), to("d"), to("e"), to("f"), to("g"), {}},
		Listeners: []Listener{
			{Name: "any", Port: 80, Protocol: "HTTP", Routes: []Route{
				{Match: Match{Path: PathMatch{"Exact", "/exact"}}, Action: 0},
				{Match: Match{Path: PathMatch{"RegularExpression", "/re/[0-9]+"}}, Action: 6},
				{Match: Match{Path: PathMatch{"PathPrefix", "/v2/"}}, Action: 1},
				{Match: Match{Path: PathMatch{"PathPrefix", "/"}, Method: "POST"}, Action: 2},
				{Match: Match{Path: PathMatch{"PathPrefix", "/"},
					Headers: []ValueMatch{{Name: "version", Value: "two"}}}, Action: 3},
				{Match: Match{Path: PathMatch{"PathPrefix", "/"},
					Query: []ValueMatch{{Name: "animal", Value: "whale"}}}, Action: 4},
				{Match: Match{Path: PathMatch{"PathPrefix", "/empty"}}, Action: 7},
				{Match: Match{Path: PathMatch{"PathPrefix", "/"}}, Action: 5},
			}},
			{Name: "bar", Port: 80, Protocol: "HTTP", Hostname: "bar.com", Routes: []Route{
				{Hostname: "bar.com", Match: Match{Path: PathMatch{"PathPrefix", "/"}}, Action: 0}}},
			{Name: "wild", Port: 80, Protocol: "HTTP", Hostname: "*.bar.com", Routes: []Route{
				{Hostname: "foo.bar.com", Match: Match{Path: PathMatch{"PathPrefix", "/only"}}, Action: 1},
				{Hostname: "*.bar.com", Match: Match{Path: PathMatch{"PathPrefix", "/"}}, Action: 2}}},
		},
	}
}

func TestMatching(t *testing.T) {
	c := mustCompile(t, sample())
	cases := []struct {
		name    string
		r       *http.Request
		backend string
		status  int
	}{
		{"exact", req("GET", "/exact", "x.com"), "a", 0},
		{"exact is not a prefix", req("GET", "/exact/more", "x.com"), "f", 0},
		{"regex", req("GET", "/re/123", "x.com"), "g", 0},
		{"regex is anchored", req("GET", "/re/123/x", "x.com"), "f", 0},
		{"prefix with trailing slash ignored", req("GET", "/v2", "x.com"), "b", 0},
		{"prefix element-wise", req("GET", "/v2/x", "x.com"), "b", 0},
		{"not a path element", req("GET", "/v2x", "x.com"), "f", 0},
		{"method", req("POST", "/", "x.com"), "c", 0},
		{"header, any case", req("GET", "/", "x.com", "VERSION", "two"), "d", 0},
		{"header value differs", req("GET", "/", "x.com", "version", "three"), "f", 0},
		{"query", req("GET", "/?animal=whale", "x.com"), "e", 0},
		{"query is case-sensitive", req("GET", "/?Animal=whale", "x.com"), "f", 0},
		{"no backend: 500", req("GET", "/empty", "x.com"), "", 500},
		{"listener by exact hostname", req("GET", "/x", "bar.com"), "a", 0},
		{"port in Host is ignored", req("GET", "/x", "BAR.com:1234"), "a", 0},
		{"wildcard listener, route narrowed to one name", req("GET", "/only", "foo.bar.com"), "b", 0},
		{"wildcard listener, other name", req("GET", "/only", "baz.bar.com"), "c", 0},
		{"the listener without hostname takes the rest", req("GET", "/exact", "elsewhere.org"), "a", 0},
	}
	for _, tc := range cases {
		d := c.decide(Request{Port: 80, HTTP: tc.r}, first)
		if d.Backend != tc.backend || d.Status != tc.status {
			t.Errorf("%s: got backend %q status %d, want %q %d", tc.name, d.Backend, d.Status, tc.backend, tc.status)
		}
	}
}

func TestNoRouteIs404(t *testing.T) {
	c := mustCompile(t, Table{Actions: []Action{to("a")}, Listeners: []Listener{
		{Name: "l", Port: 80, Protocol: "HTTP", Hostname: "a.com", Routes: []Route{
			{Hostname: "a.com", Match: Match{Path: PathMatch{"Exact", "/a"}}}}}}})
	for _, r := range []*http.Request{req("GET", "/b", "a.com"), req("GET", "/a", "b.com")} {
		if d := c.Decide(Request{Port: 80, HTTP: r}); d.Status != 404 || d.Reason != "no-route" {
			t.Errorf("%s %s: got %+v", r.Host, r.URL.Path, d)
		}
	}
	if d := c.Decide(Request{Port: 443, HTTP: req("GET", "/a", "a.com")}); d.Status != 404 {
		t.Errorf("the HTTPS front has no listener here: got %+v", d)
	}
}

func TestWeights(t *testing.T) {
	backends := []Backend{{Backend: "a", Weight: 70}, {Backend: "", Weight: 10}, {Backend: "b", Weight: 20},
		{Backend: "never", Weight: 0}}
	c := mustCompile(t, Table{Actions: []Action{{Backends: backends}}, Listeners: []Listener{
		{Name: "l", Port: 80, Protocol: "HTTP", Routes: []Route{{Match: Match{Path: PathMatch{"PathPrefix", "/"}}}}}}})
	got := map[string]int{}
	for n := 0; n < 100; n++ {
		d := c.decide(Request{Port: 80, HTTP: req("GET", "/", "x")}, func(total int) int {
			if total != 100 {
				t.Fatalf("total weight %d", total)
			}
			return n
		})
		got[d.Backend+"/"+http.StatusText(d.Status)]++
	}
	want := map[string]int{"a/": 70, "/Internal Server Error": 10, "b/": 20}
	d := c.decide(Request{Port: 80, HTTP: req("GET", "/", "x")}, func(int) int { return 0 })
	if d.Backend != "a" || len(d.Fallbacks) != 1 || d.Fallbacks[0] != "b" {
		t.Errorf("fallbacks of a: %v, want [b] (not the invalid one, not a weight 0)", d.Fallbacks)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d of 100, want %d (all: %v)", k, got[k], v, got)
		}
	}
	zero := mustCompile(t, Table{Actions: []Action{{Backends: []Backend{{Backend: "a", Weight: 0}}}},
		Listeners: []Listener{{Name: "l", Port: 80, Protocol: "HTTP", Routes: []Route{{}}}}})
	if d := zero.Decide(Request{Port: 80, HTTP: req("GET", "/", "x")}); d.Status != 500 {
		t.Errorf("all weights 0: got %+v, want 500", d)
	}
}

func TestRedirects(t *testing.T) {
	redirect := func(f Filter, match PathMatch) *Compiled {
		f.Type = "RequestRedirect"
		return mustCompile(t, Table{Actions: []Action{{Filters: []Filter{f}}}, Listeners: []Listener{
			{Name: "l", Port: 80, Protocol: "HTTP", Routes: []Route{{Match: Match{Path: match}}}}}})
	}
	prefix := PathMatch{"PathPrefix", "/original-prefix"}
	cases := []struct {
		name   string
		f      Filter
		target string
		want   string
		status int
	}{
		{"host, default 302", Filter{Hostname: "example.org"}, "/a?x=1", "http://example.org/a?x=1", 302},
		{"status", Filter{Hostname: "example.org", StatusCode: 301}, "/a", "http://example.org/a", 301},
		{"host kept", Filter{StatusCode: 308}, "/a", "http://gw.example.com/a", 308},
		{"scheme https drops the port", Filter{Scheme: "https"}, "/a", "https://gw.example.com/a", 302},
		{"port 80 not written", Filter{Hostname: "example.org", Port: 80}, "/a", "http://example.org/a", 302},
		{"other port written", Filter{Hostname: "example.org", Port: 8083}, "/a", "http://example.org:8083/a", 302},
		{"https and 8443", Filter{Scheme: "https", Port: 8443}, "/a", "https://gw.example.com:8443/a", 302},
		{"full path", Filter{Path: &PathModifier{"ReplaceFullPath", "/replacement-full"}},
			"/original-prefix/lemon", "http://gw.example.com/replacement-full", 302},
		{"prefix", Filter{Path: &PathModifier{"ReplacePrefixMatch", "/replacement-prefix"}},
			"/original-prefix/lemon", "http://gw.example.com/replacement-prefix/lemon", 302},
		{"prefix to /", Filter{Path: &PathModifier{"ReplacePrefixMatch", "/"}},
			"/original-prefix/lemon", "http://gw.example.com/lemon", 302},
		{"prefix alone", Filter{Path: &PathModifier{"ReplacePrefixMatch", "/replacement-prefix"}},
			"/original-prefix", "http://gw.example.com/replacement-prefix", 302},
	}
	for _, tc := range cases {
		match := PathMatch{"PathPrefix", "/"}
		if tc.f.Path != nil {
			match = prefix
		}
		d := redirect(tc.f, match).Decide(Request{Port: 80, HTTP: req("GET", tc.target, "gw.example.com:80")})
		if d.Status != tc.status || d.Location != tc.want {
			t.Errorf("%s: got %d %q, want %d %q", tc.name, d.Status, d.Location, tc.status, tc.want)
		}
	}
}

func TestRewritesAndHeaders(t *testing.T) {
	headers := Filter{Type: "RequestHeaderModifier", Set: []Header{{"X-Header-Set", "set-overwrites-values"}},
		Add: []Header{{"X-Header-Add", "header-val-1"}}, Remove: []string{"x-header-remove"}}
	tb := Table{Actions: []Action{
		{Filters: []Filter{{Type: "URLRewrite", Path: &PathModifier{"ReplacePrefixMatch", "/one"}}}, Backends: []Backend{{"a", 1, nil}}},
		{Filters: []Filter{{Type: "URLRewrite", Path: &PathModifier{"ReplacePrefixMatch", "/"}}}, Backends: []Backend{{"a", 1, nil}}},
		{Filters: []Filter{{Type: "URLRewrite", Path: &PathModifier{"ReplaceFullPath", "/one"}}}, Backends: []Backend{{"a", 1, nil}}},
		{Filters: []Filter{{Type: "URLRewrite", Hostname: "one.example.org"}, headers,
			{Type: "ResponseHeaderModifier", Set: []Header{{"X-Out", "1"}}, Remove: []string{"Server"}}},
			Backends: []Backend{{"a", 1, []Filter{{Type: "RequestHeaderModifier", Set: []Header{{"X-Backend", "a"}}}}}}},
	}, Listeners: []Listener{{Name: "l", Port: 80, Protocol: "HTTP", Routes: []Route{
		{Match: Match{Path: PathMatch{"PathPrefix", "/prefix/one"}}, Action: 0},
		{Match: Match{Path: PathMatch{"PathPrefix", "/strip-prefix"}}, Action: 1},
		{Match: Match{Path: PathMatch{"PathPrefix", "/full/one"}}, Action: 2},
		{Match: Match{Path: PathMatch{"PathPrefix", "/"}}, Action: 3},
	}}}}
	c := mustCompile(t, tb)
	for target, want := range map[string]string{"/prefix/one/two": "/one/two", "/prefix/one": "/one",
		"/strip-prefix/three": "/three", "/strip-prefix": "/", "/full/one/two": "/one"} {
		in := req("GET", target, "x")
		d := c.Decide(Request{Port: 80, HTTP: in})
		out := in.Clone(in.Context())
		d.Rewrite(out)
		if out.URL.Path != want {
			t.Errorf("%s: rewritten to %s, want %s", target, out.URL.Path, want)
		}
	}
	in := req("GET", "/x", "x", "X-Header-Set", "old", "X-Header-Add", "existing", "X-Header-Remove", "gone")
	d := c.Decide(Request{Port: 80, HTTP: in})
	out := in.Clone(in.Context())
	d.Rewrite(out)
	if out.Host != "one.example.org" || out.Header.Get("X-Header-Set") != "set-overwrites-values" ||
		strings.Join(out.Header.Values("X-Header-Add"), ",") != "existing,header-val-1" ||
		out.Header.Get("X-Header-Remove") != "" || out.Header.Get("X-Backend") != "a" {
		t.Errorf("request edits: host %s headers %v", out.Host, out.Header)
	}
	resp := http.Header{"Server": {"app"}}
	if !d.HasResponseEdits() {
		t.Fatal("response edits missing")
	}
	d.ModifyResponse(resp)
	if resp.Get("X-Out") != "1" || resp.Get("Server") != "" {
		t.Errorf("response edits: %v", resp)
	}
}

func selfSigned(t *testing.T, names ...string) Cert {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return Cert{string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))}
}

func TestTLSListeners(t *testing.T) {
	second, wild := selfSigned(t, "second-example.org"), selfSigned(t, "*.wildcard.org")
	c := mustCompile(t, Table{Actions: []Action{to("a"), to("b"), to("p")}, Listeners: []Listener{
		{Name: "https", Port: 443, Protocol: "HTTPS", Certificates: []Cert{wild}, Routes: []Route{{Action: 0}}},
		{Name: "second", Port: 443, Protocol: "HTTPS", Hostname: "second-example.org", Certificates: []Cert{second},
			Routes: []Route{{Hostname: "second-example.org", Action: 1}}},
		{Name: "pass", Port: 443, Protocol: "TLS", Hostname: "abc.example.com",
			Routes: []Route{{Hostname: "abc.example.com", Action: 2}}},
	}})
	if cert := c.Certificate("Second-Example.org"); cert == nil || cert.Leaf.Subject.CommonName != "second-example.org" {
		t.Errorf("certificate for second-example.org: %v", cert)
	}
	if cert := c.Certificate("other.org"); cert == nil || cert.Leaf.Subject.CommonName != "*.wildcard.org" {
		t.Errorf("certificate of the listener without hostname: %v", cert)
	}
	if b, ok := c.Passthrough("abc.example.com"); !ok || b != "p" {
		t.Errorf("passthrough: %q %v", b, ok)
	}
	if _, ok := c.Passthrough("second-example.org"); ok {
		t.Error("an HTTPS listener's name is not passed through")
	}
	if !c.Terminates("second-example.org") {
		t.Error("second-example.org is terminated here")
	}
	d := c.Decide(Request{Port: 443, SNI: "second-example.org", HTTP: req("GET", "/", "other.org")})
	if d.Status != 421 {
		t.Errorf("Host of another listener than the SNI's: got %+v, want 421", d)
	}
	d = c.Decide(Request{Port: 443, SNI: "second-example.org", HTTP: req("GET", "/", "second-example.org")})
	if d.Backend != "b" {
		t.Errorf("same listener: got %+v", d)
	}
}

func TestCompileRefusesWhatItCannotServe(t *testing.T) {
	cases := map[string]Table{
		"port":       {Listeners: []Listener{{Name: "l", Port: 8080, Protocol: "HTTP"}}},
		"protocol":   {Listeners: []Listener{{Name: "l", Port: 80, Protocol: "UDP"}}},
		"bad cert":   {Listeners: []Listener{{Name: "l", Port: 443, Protocol: "HTTPS", Certificates: []Cert{{"x", "y"}}}}},
		"action":     {Listeners: []Listener{{Name: "l", Port: 80, Protocol: "HTTP", Routes: []Route{{Action: 3}}}}},
		"regex":      {Actions: []Action{{}}, Listeners: []Listener{{Name: "l", Port: 80, Protocol: "HTTP", Routes: []Route{{Match: Match{Path: PathMatch{"RegularExpression", "("}}}}}}},
		"path type":  {Actions: []Action{{}}, Listeners: []Listener{{Name: "l", Port: 80, Protocol: "HTTP", Routes: []Route{{Match: Match{Path: PathMatch{"Glob", "/"}}}}}}},
		"filter":     {Actions: []Action{{Filters: []Filter{{Type: "RequestMirror"}}}}},
		"status":     {Actions: []Action{{Filters: []Filter{{Type: "RequestRedirect", StatusCode: 200}}}}},
		"weight":     {Actions: []Action{{Backends: []Backend{{"a", -1, nil}}}}},
		"bk filter":  {Actions: []Action{{Backends: []Backend{{"a", 1, []Filter{{Type: "URLRewrite"}}}}}}},
		"path modif": {Actions: []Action{{Filters: []Filter{{Type: "URLRewrite", Path: &PathModifier{"Nope", "/"}}}}}},
		"protocol x": {UpstreamProtocols: map[string]string{"a": "h2"}},
	}
	for name, tb := range cases {
		if _, err := Compile(tb); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
	c := mustCompile(t, sample())
	if got := len(c.Backends()); got != 7 {
		t.Errorf("backends: %v", c.Backends())
	}
}

// upstream_protocols: h2c where said, HTTP/1.1 ("") for every other backend and for tables without it.
func TestUpstreamProtocols(t *testing.T) {
	tb := sample()
	tb.UpstreamProtocols = map[string]string{"a": "h2c", "b": "http/1.1"}
	c := mustCompile(t, tb)
	for backend, want := range map[string]string{"a": "h2c", "b": "", "zz": ""} {
		if got := c.UpstreamProtocol(backend); got != want {
			t.Errorf("%s: %q, want %q", backend, got, want)
		}
	}
	if got := mustCompile(t, sample()).UpstreamProtocol("a"); got != "" {
		t.Errorf("no upstream_protocols: %q", got)
	}
}
