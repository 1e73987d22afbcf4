package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCodeClass(t *testing.T) {
	for _, tc := range []struct {
		code int
		want string
	}{{100, "1xx"}, {101, "1xx"}, {200, "2xx"}, {308, "3xx"}, {404, "4xx"}, {499, "4xx"}, {502, "5xx"},
		{599, "5xx"}, {0, "other"}, {99, "other"}, {600, "other"}} {
		if got := CodeClass(tc.code); got != tc.want {
			t.Errorf("CodeClass(%d) = %q, want %q", tc.code, got, tc.want)
		}
	}
}

// TestRequest: who answered follows the reason; a route backend's view counts as its socket;
// a request for no socket is counted but not timed.
func TestRequest(t *testing.T) {
	for _, tc := range []struct {
		name, socket, reason string
		code                 int
		wantSocket, wantBy   string
		timed                bool
	}{
		{"app answered", "s1", "", 200, "s1", ByApp, true},
		{"app's own 502 is the app's", "s1", "", 502, "s1", ByApp, true},
		{"edge no-tunnel", "s1", "no-tunnel", 502, "s1", ByEdge, true},
		{"route backend view", "s1#web", "", 204, "s1", ByApp, true},
		{"unknown host", "", "unknown-host", 404, "", ByEdge, false},
		{"visitor left", "s2", VisitorLeft, 499, "s2", ByEdge, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New(Sources{})
			m.Request(tc.socket, tc.reason, tc.code, 30*time.Millisecond)
			c := m.requests.WithLabelValues(tc.wantSocket, tc.wantBy, tc.reason, CodeClass(tc.code))
			if got := testutil.ToFloat64(c); got != 1 {
				t.Fatalf("requests_total = %v, want 1", got)
			}
			if got := testutil.CollectAndCount(m.requests); got != 1 {
				t.Fatalf("%d request series, want 1", got)
			}
			want := 0
			if tc.timed {
				want = 1
			}
			if got := testutil.CollectAndCount(m.duration); got != want {
				t.Fatalf("%d duration series, want %d", got, want)
			}
		})
	}
}

// TestForgetAndPrune: a deleted socket's series go (every vector), others stay; a hold released
// after its socket was forgotten does not bring a series back; Prune forgets what the state lost.
func TestForgetAndPrune(t *testing.T) {
	live := map[string]bool{"a": true, "b": true}
	m := New(Sources{Live: func(id string) bool { return live[id] }})
	for _, id := range []string{"a", "b"} {
		m.Request(id, "", 200, time.Millisecond)
		m.Connection(id, "tcp")
		in, out := m.Traffic(id)
		in.Add(10)
		out.Add(20)
		m.TunnelUp(id)
		m.TunnelDown(id)
	}
	release := m.Hold("a")
	m.Hold("b")
	m.Forget("a")
	release()
	release() // idempotent
	for _, tc := range []struct {
		name string
		n    int
	}{{"requests", testutil.CollectAndCount(m.requests)}, {"connections", testutil.CollectAndCount(m.connections)},
		{"bytes", testutil.CollectAndCount(m.bytes)}, {"active", testutil.CollectAndCount(m.active)},
		{"duration", testutil.CollectAndCount(m.duration)}, {"connects", testutil.CollectAndCount(m.connects)},
		{"drops", testutil.CollectAndCount(m.drops)}} {
		want := 1
		if tc.name == "bytes" {
			want = 2 // in and out of b
		}
		if tc.n != want {
			t.Errorf("%s: %d series after Forget(a), want %d", tc.name, tc.n, want)
		}
	}
	if got := testutil.ToFloat64(m.active.WithLabelValues("b")); got != 1 {
		t.Errorf("active b = %v, want 1", got)
	}
	delete(live, "b")
	m.Request("b", "", 200, time.Millisecond) // a request that finished after its socket was deleted
	m.Prune()
	if n := testutil.CollectAndCount(m.requests) + testutil.CollectAndCount(m.active); n != 0 {
		t.Errorf("%d series left after Prune, want 0", n)
	}
}

// TestLevels: what is read at scrape time, as the text format says it.
func TestLevels(t *testing.T) {
	notAfter := time.Unix(1900000000, 0)
	m := New(Sources{
		Tunnels:      func() map[string]int { return map[string]int{"s1": 2} },
		Accounts:     func() []string { return []string{"acct", "idle"} },
		Connections:  func() map[string]int { return map[string]int{"acct": 3} },
		Sessions:     func() map[string]int { return map[string]int{"acct": 1} },
		Limits:       func() (int, int) { return 5, 100 },
		Certificates: func() map[string]time.Time { return map[string]time.Time{"internal-ca": notAfter} },
	})
	want := `
# HELP mysocket_edge_tunnels Live forwards of the socket's tunnels on this node.
# TYPE mysocket_edge_tunnels gauge
mysocket_edge_tunnels{socket_id="s1"} 2
# HELP mysocket_edge_account_connections What the account holds of its connection quota now, on this node (requests in flight, upgraded and spliced connections).
# TYPE mysocket_edge_account_connections gauge
mysocket_edge_account_connections{account_id="acct"} 3
mysocket_edge_account_connections{account_id="idle"} 0
# HELP mysocket_edge_account_sessions SSH sessions the account has on this node.
# TYPE mysocket_edge_account_sessions gauge
mysocket_edge_account_sessions{account_id="acct"} 1
mysocket_edge_account_sessions{account_id="idle"} 0
# HELP mysocket_edge_account_sessions_limit The SSH session quota of every account (0: none).
# TYPE mysocket_edge_account_sessions_limit gauge
mysocket_edge_account_sessions_limit 5
# HELP mysocket_edge_account_connections_limit The connection quota of every account (0: none).
# TYPE mysocket_edge_account_connections_limit gauge
mysocket_edge_account_connections_limit 100
# HELP mysocket_edge_certificate_expiry_timestamp_seconds notAfter (unix seconds) of each certificate the edge holds: a given one, the zone's wildcard, per-name ACME, the internal CA.
# TYPE mysocket_edge_certificate_expiry_timestamp_seconds gauge
mysocket_edge_certificate_expiry_timestamp_seconds{name="internal-ca"} 1.9e+09
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "mysocket_edge_tunnels",
		"mysocket_edge_account_connections", "mysocket_edge_account_sessions", "mysocket_edge_account_sessions_limit",
		"mysocket_edge_account_connections_limit", "mysocket_edge_certificate_expiry_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
}

// TestHandler: the text format, with the data plane's process metrics under their own prefix.
func TestHandler(t *testing.T) {
	m := New(Sources{Live: func(string) bool { return true }})
	m.Request("s1", "no-tunnel", 502, 2*time.Second)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`mysocket_edge_requests_total{answered_by="edge",code_class="5xx",reason="no-tunnel",socket_id="s1"} 1`,
		`mysocket_edge_request_duration_seconds_bucket{socket_id="s1",le="2.5"} 1`,
		`mysocket_edge_request_duration_seconds_bucket{socket_id="s1",le="1"} 0`,
		"mysocket_edge_dataplane_process_resident_memory_bytes ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

// TestNil: every method is a no-op on a nil *Edge.
func TestNil(t *testing.T) {
	var m *Edge
	m.Request("s", "", 200, 0)
	m.Connection("s", "tcp")
	in, out := m.Traffic("s")
	in.Add(1)
	out.Add(1)
	m.Hold("s")()
	m.TunnelUp("s")
	m.TunnelDown("s")
	m.Forget("s")
	m.Prune()
}
