package front

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"mysocketd/edge/dataplane/internal/metrics"
)

// countedRequests: the series of mysocket_edge_requests_total with value 1, as
// (socket_id, answered_by, reason, code_class); it fails on any other value.
func countedRequests(t *testing.T, m *metrics.Edge) [][4]string {
	t.Helper()
	families, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out [][4]string
	for _, f := range families {
		if f.GetName() != "mysocket_edge_requests_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range s.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if v := s.GetCounter().GetValue(); v != 1 {
				t.Fatalf("a request series at %v: %v", v, l)
			}
			out = append(out, [4]string{l["socket_id"], l["answered_by"], l["reason"], l["code_class"]})
		}
	}
	return out
}

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
		counted          string // the socket_id the request is counted under ("-": not counted, the API's)
	}{
		{"no Host", "", "", false, 0, 400, "bad-request", ""},
		{"unknown name", "nobody.edge.localhost", "", false, 0, 404, "unknown-host", ""},
		{"a tcp socket's name", "raw.edge.localhost", "", false, 0, 421, "misdirected", "3"},
		{"an https socket over http", "secure.edge.localhost", "", false, 0, 308, "https-redirect", "2"},
		{"cloud authentication fails closed", "cloud.edge.localhost", "", false, 0, 403, "forbidden", "5"},
		{"basic auth missing", "pass.edge.localhost", "", false, 0, 401, "unauthorized", "4"},
		{"basic auth wrong", "pass.edge.localhost", "alice:nope", false, 0, 401, "unauthorized", "4"},
		{"the API's name over http", "api.edge.localhost", "", false, 0, 308, "https-redirect", "-"},
		{"no tunnel connected", "web.edge.localhost", "", false, 0, 502, "no-tunnel", "1"},
		{"the name in any case, with a port and a dot", "WEB.Edge.Localhost.:8000", "", false, 0, 502, "no-tunnel", "1"},
		{"the visitor holds its share of the account", "web.edge.localhost", "", false, 5, 429, "rate-limited", "1"},
		{"the account holds its quota", "web.edge.localhost", "", false, 10, 503, "unavailable", "1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			front := fuzzFront() // quota 10 connections, a visitor's share 0.5
			front.Metrics = metrics.New(metrics.Sources{})
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
			// counted once, as the edge's answer with its reason (metered.go); the API's requests are not a socket's
			want := 1
			if c.counted == "-" {
				want = 0
			}
			if got := countedRequests(t, front.Metrics); len(got) != want ||
				want == 1 && got[0] != [4]string{c.counted, "edge", c.reason, metrics.CodeClass(c.status)} {
				t.Fatalf("counted %v, want %d of %v", got, want, [4]string{c.counted, "edge", c.reason})
			}
		})
	}
}
