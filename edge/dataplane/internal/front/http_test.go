package front

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRouting: each request is routed by its own Host, and what the edge
// answers by itself says so (no tunnel is connected here: every answer is
// the edge's own).
func TestRouting(t *testing.T) {
	cases := []struct {
		name, host, auth string
		tls              bool
		held             int // connections the visitor holds already on the account
		status           int
		reason           string
	}{
		{"no Host", "", "", false, 0, 400, "bad-request"},
		{"unknown name", "nobody.edge.localhost", "", false, 0, 404, "unknown-host"},
		{"a tcp socket's name", "raw.edge.localhost", "", false, 0, 421, "misdirected"},
		{"an https socket over http", "secure.edge.localhost", "", false, 0, 308, "https-redirect"},
		{"cloud authentication fails closed", "cloud.edge.localhost", "", false, 0, 403, "forbidden"},
		{"basic auth missing", "pass.edge.localhost", "", false, 0, 401, "unauthorized"},
		{"basic auth wrong", "pass.edge.localhost", "alice:nope", false, 0, 401, "unauthorized"},
		{"the API's name over http", "api.edge.localhost", "", false, 0, 308, "https-redirect"},
		{"no tunnel connected", "web.edge.localhost", "", false, 0, 502, "no-tunnel"},
		{"the name in any case, with a port and a dot", "WEB.Edge.Localhost.:8000", "", false, 0, 502, "no-tunnel"},
		{"the visitor holds its share of the account", "web.edge.localhost", "", false, 5, 429, "rate-limited"},
		{"the account holds its quota", "web.edge.localhost", "", false, 10, 503, "unavailable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			front := fuzzFront() // quota 10 connections, a visitor's share 0.5
			for i := range c.held {
				visitor := "192.0.2.1"
				if i >= 5 {
					visitor = "192.0.2.2"
				}
				front.Holdings.Acquire("u", visitor, 10, 0.5)
			}
			r := httptest.NewRequest("GET", "http://x/", nil)
			r.Host = c.host
			r.RemoteAddr = "192.0.2.1:5000"
			if c.auth != "" {
				user, pass, _ := strings.Cut(c.auth, ":")
				r.SetBasicAuth(user, pass)
			}
			rec := httptest.NewRecorder()
			front.ServeHTTP(rec, r)
			if rec.Code != c.status || rec.Header().Get("Mysocket-Edge") != c.reason {
				t.Fatalf("%d %q, want %d %q", rec.Code, rec.Header().Get("Mysocket-Edge"), c.status, c.reason)
			}
			if c.status == http.StatusTooManyRequests && rec.Header().Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		})
	}
}
