package answer

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	cases := []struct {
		status int
		reason Reason
		text   string
		header string
	}{
		{http.StatusBadGateway, NoTunnel, "web.edge.localhost: no tunnel of this socket is connected", "no-tunnel"},
		{http.StatusNotFound, UnknownHost, "no socket named x.edge.localhost", "unknown-host"},
		{http.StatusUnauthorized, Unauthorized, "this socket needs a username and password", "unauthorized"},
		{http.StatusTooManyRequests, RateLimited, "too many failed logins", "rate-limited"},
		{http.StatusServiceUnavailable, Unavailable, "too many concurrent requests for this account", "unavailable"},
		{http.StatusRequestHeaderFieldsTooLarge, TooLarge, "request head too large", "too-large"},
	}
	for _, c := range cases {
		t.Run(string(c.reason), func(t *testing.T) {
			rec := httptest.NewRecorder()
			Write(rec, c.status, c.reason, c.text)
			res := rec.Result()
			if res.StatusCode != c.status {
				t.Errorf("status %d, want %d", res.StatusCode, c.status)
			}
			want := map[string]string{"Mysocket-Edge": c.header,
				"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
			for k, v := range want {
				if got := res.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if got := rec.Body.String(); got != c.text+"\n" {
				t.Errorf("body %q, want %q", got, c.text+"\n")
			}
		})
	}
}

func TestRedirectHTTPS(t *testing.T) {
	cases := []struct{ target, host, want string }{
		{"http://web.edge.localhost:8000/", "web.edge.localhost", "https://web.edge.localhost/"},
		{"http://web.edge.localhost/a/b?x=1&y=2", "web.edge.localhost", "https://web.edge.localhost/a/b?x=1&y=2"},
		{"http://api.edge.localhost/socket/", "api.edge.localhost", "https://api.edge.localhost/socket/"},
	}
	for _, c := range cases {
		t.Run(c.target, func(t *testing.T) {
			rec := httptest.NewRecorder()
			RedirectHTTPS(rec, httptest.NewRequest("GET", c.target, nil), c.host)
			if rec.Code != http.StatusPermanentRedirect {
				t.Errorf("status %d, want 308", rec.Code)
			}
			if got := rec.Header().Get("Location"); got != c.want {
				t.Errorf("Location %q, want %q", got, c.want)
			}
			if got := rec.Header().Get("Mysocket-Edge"); got != "https-redirect" {
				t.Errorf("Mysocket-Edge %q, want https-redirect", got)
			}
		})
	}
}

// TestStrip: every header of the edge's voice goes, however the app spelled it
// (net/http canonicalises what it parses); nothing else does.
func TestStrip(t *testing.T) {
	h := http.Header{}
	h.Add("mysocket-edge", "no-tunnel")
	h.Add("MYSOCKET-EDGE", "unknown-host")
	h.Set("Content-Type", "text/plain")
	h.Set("X-Mysocket-Edge-Like", "kept")
	Strip(h)
	if _, left := h["Mysocket-Edge"]; left || len(h) != 2 {
		t.Fatalf("after Strip: %v", h)
	}
}

// TestVoiceNamesTheVisitorsIdentity: the signed-in visitor's identity is the edge's voice too,
// so neither a visitor nor an app can set it.
func TestVoiceNamesTheVisitorsIdentity(t *testing.T) {
	h := http.Header{}
	h.Set("mysocket-visitor-email", "ceo@example.com")
	h.Set("MYSOCKET-VISITOR-ASSERTION", "forged")
	h.Set("X-Kept", "1")
	Strip(h)
	if len(h) != 1 || h.Get("X-Kept") != "1" {
		t.Fatalf("after Strip: %v", h)
	}
}

func TestPage(t *testing.T) {
	rec := httptest.NewRecorder()
	Page(rec, http.StatusForbidden, NotAllowed, "Not allowed", "<script>x</script>@a may not", [2]string{"Sign out", "/.edge/signout?a=\"b\""})
	body := rec.Body.String()
	if rec.Code != 403 || rec.Header().Get(Header) != "not-allowed" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;") || !strings.Contains(body, `href="/.edge/signout?a=&#34;b&#34;"`) {
		t.Fatalf("not escaped: %s", body)
	}
}
