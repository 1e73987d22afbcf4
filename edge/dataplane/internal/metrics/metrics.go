// Package metrics answers "what is the edge doing": its traffic, tunnels,
// certificates and quota use as Prometheus metrics, served on the control
// socket (GET /metrics; the Python control plane exposes them to operators on
// its opt-in --metrics-listen, never on a public front). edge/README.md lists
// every metric.
//
// Why it is shaped this way:
//   - Every label set is bounded by what the control plane pushed: a socket,
//     an account, a certificate's name, and small fixed sets (who answered, the
//     edge's reasons, status classes, fronts, directions). Nothing is labelled
//     by visitor or address, so a flood of visitors costs no memory here.
//   - A deleted socket's series are deleted (Forget, called when a push drops
//     it), and every scrape first drops the series of any socket the state no
//     longer has (Prune), which catches a request that finished after its
//     socket was deleted: memory is bounded by the live sockets.
//   - What is a level rather than an event (live tunnels, what each account
//     holds, certificate expiry, quotas) is read from its owner at scrape time
//     (Sources), so it can never drift from the truth.
//   - Every method is safe on a nil *Edge, so packages and tests without
//     metrics need no special case.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Who answered a request (the answered_by label).
const (
	ByApp  = "app"
	ByEdge = "edge"
)

// VisitorLeft is the reason counted when the visitor went away before any answer (status 499):
// nobody reads that answer, so it carries no Mysocket-Edge header, but it is the edge's doing.
const VisitorLeft = "visitor-left"

// DurationBuckets (seconds) span a cached answer (a few ms) to the 100 s
// response-header timeout; longer requests (streams, WebSockets) land in +Inf.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

// Sources are read at scrape time; any of them may be nil.
type Sources struct {
	Live         func(socketID string) bool   // the socket exists in the pushed state
	Accounts     func() []string              // every account pushed: its quota use is reported, 0 too
	Tunnels      func() map[string]int        // live forwards on this node by socket id
	Connections  func() map[string]int        // what each account holds of its connection quota now
	Sessions     func() map[string]int        // SSH sessions each account has on this node
	Limits       func() (sessions, conns int) // the per-account quotas (0: none)
	Certificates func() map[string]time.Time  // notAfter of every certificate held, by name
}

// Edge holds the data plane's metrics.
type Edge struct {
	reg         *prometheus.Registry
	src         Sources
	requests    *prometheus.CounterVec
	connections *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	active      *prometheus.GaugeVec
	duration    *prometheus.HistogramVec
	connects    *prometheus.CounterVec
	drops       *prometheus.CounterVec
	perSocket   []interface{ DeletePartialMatch(prometheus.Labels) int }
	seen        sync.Map // socket id -> struct{}: the sockets that have series
}

// New registers the edge's metrics (and the data plane's process metrics,
// prefixed so they never collide with the control plane's own).
func New(src Sources) *Edge {
	m := &Edge{reg: prometheus.NewRegistry(), src: src}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mysocket_edge_requests_total",
		Help: "HTTP requests (HTTP/1.1, HTTP/2, gRPC) by socket, who answered, the edge's reason and status class."},
		[]string{"socket_id", "answered_by", "reason", "code_class"})
	m.connections = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mysocket_edge_connections_total",
		Help: "Visitor connections by socket and front (http, https: counted at their first request for the socket; tls passthrough, tcp)."},
		[]string{"socket_id", "front"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mysocket_edge_bytes_total",
		Help: "Bytes carried for a socket: in from visitors, out to visitors (HTTP bodies, upgraded and spliced streams)."},
		[]string{"socket_id", "direction"})
	m.active = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mysocket_edge_active_connections",
		Help: "What a socket holds of its account's connection quota now: requests in flight, upgraded and spliced connections."},
		[]string{"socket_id"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mysocket_edge_request_duration_seconds",
		Help:    "HTTP requests from their head to the end of the answer, by socket.",
		Buckets: DurationBuckets}, []string{"socket_id"})
	m.connects = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mysocket_edge_tunnel_connects_total",
		Help: "Forwards of the socket's tunnels that came up on this node."}, []string{"socket_id"})
	m.drops = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mysocket_edge_tunnel_drops_total",
		Help: "Forwards of the socket's tunnels that went down on this node (session ended, replaced, removed)."},
		[]string{"socket_id"})
	m.perSocket = []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.requests, m.connections, m.bytes, m.active, m.duration, m.connects, m.drops}
	m.reg.MustRegister(m.requests, m.connections, m.bytes, m.active, m.duration, m.connects, m.drops, levels{m})
	prometheus.WrapRegistererWithPrefix("mysocket_edge_dataplane_", m.reg).MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// CodeClass is the code_class of an HTTP status ("1xx".."5xx"; anything else "other").
func CodeClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}

// socket is the id series are kept under: a route table's backend view of a
// socket (state.Socket.Group, id "<id>#<backend>") counts as its socket.
func socket(id string) string {
	if i := strings.IndexByte(id, '#'); i >= 0 {
		return id[:i]
	}
	return id
}

func (m *Edge) note(id string) {
	if id == "" {
		return
	}
	if _, ok := m.seen.Load(id); !ok {
		m.seen.Store(id, struct{}{})
	}
}

// Request counts one HTTP request; reason is the edge's Mysocket-Edge reason ("": the app
// answered). socketID "" is a request for no socket (unknown-host, bad-request): counted, not timed.
func (m *Edge) Request(socketID, reason string, code int, took time.Duration) {
	if m == nil {
		return
	}
	id := socket(socketID)
	by := ByApp
	if reason != "" {
		by = ByEdge
	}
	m.note(id)
	m.requests.WithLabelValues(id, by, reason, CodeClass(code)).Inc()
	if id != "" {
		m.duration.WithLabelValues(id).Observe(took.Seconds())
	}
}

// Connection counts one visitor connection of a socket on a front (http, https, tls, tcp).
func (m *Edge) Connection(socketID, front string) {
	if m == nil {
		return
	}
	id := socket(socketID)
	m.note(id)
	m.connections.WithLabelValues(id, front).Inc()
}

// Counter is a counter that may be nil (no metrics): Add does nothing then.
type Counter struct{ c prometheus.Counter }

func (c Counter) Add(n int) {
	if c.c != nil && n > 0 {
		c.c.Add(float64(n))
	}
}

// Traffic is a socket's byte counters, looked up once per request or connection.
func (m *Edge) Traffic(socketID string) (in, out Counter) {
	if m == nil {
		return Counter{}, Counter{}
	}
	id := socket(socketID)
	m.note(id)
	return Counter{m.bytes.WithLabelValues(id, "in")}, Counter{m.bytes.WithLabelValues(id, "out")}
}

// Hold counts one unit of the socket's active connections until the returned func is called.
func (m *Edge) Hold(socketID string) (release func()) {
	if m == nil {
		return func() {}
	}
	id := socket(socketID)
	m.note(id)
	g := m.active.WithLabelValues(id)
	g.Inc()
	var once sync.Once
	return func() { once.Do(g.Dec) }
}

// TunnelUp counts a forward of the socket that came up here.
func (m *Edge) TunnelUp(socketID string) {
	if m == nil || socketID == "" {
		return
	}
	m.note(socketID)
	m.connects.WithLabelValues(socketID).Inc()
}

// TunnelDown counts a forward of the socket that went down here.
func (m *Edge) TunnelDown(socketID string) {
	if m == nil || socketID == "" {
		return
	}
	m.note(socketID)
	m.drops.WithLabelValues(socketID).Inc()
}

// Forget deletes every series of the sockets (they were deleted).
func (m *Edge) Forget(socketIDs ...string) {
	if m == nil {
		return
	}
	for _, id := range socketIDs {
		m.seen.Delete(id)
		for _, v := range m.perSocket {
			v.DeletePartialMatch(prometheus.Labels{"socket_id": id})
		}
	}
}

// Prune forgets every socket with series that the state no longer has.
func (m *Edge) Prune() {
	if m == nil || m.src.Live == nil {
		return
	}
	var gone []string
	m.seen.Range(func(k, _ any) bool {
		if id := k.(string); !m.src.Live(id) {
			gone = append(gone, id)
		}
		return true
	})
	m.Forget(gone...)
}

// Handler serves the Prometheus text format (GET /metrics on the control socket).
func (m *Edge) Handler() http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.Prune()
		h.ServeHTTP(w, r)
	})
}

// Gatherer is the registry (tests read it with prometheus/testutil).
func (m *Edge) Gatherer() prometheus.Gatherer { return m.reg }

var (
	tunnelsDesc = prometheus.NewDesc("mysocket_edge_tunnels",
		"Live forwards of the socket's tunnels on this node.", []string{"socket_id"}, nil)
	accountConnsDesc = prometheus.NewDesc("mysocket_edge_account_connections",
		"What the account holds of its connection quota now, on this node (requests in flight, upgraded and spliced connections).",
		[]string{"account_id"}, nil)
	accountSessionsDesc = prometheus.NewDesc("mysocket_edge_account_sessions",
		"SSH sessions the account has on this node.", []string{"account_id"}, nil)
	connsLimitDesc = prometheus.NewDesc("mysocket_edge_account_connections_limit",
		"The connection quota of every account (0: none).", nil, nil)
	sessionsLimitDesc = prometheus.NewDesc("mysocket_edge_account_sessions_limit",
		"The SSH session quota of every account (0: none).", nil, nil)
	certDesc = prometheus.NewDesc("mysocket_edge_certificate_expiry_timestamp_seconds",
		"notAfter (unix seconds) of each certificate the edge holds: a given one, the zone's wildcard, per-name ACME, the internal CA.",
		[]string{"name"}, nil)
)

// levels collects what is read from its owner at scrape time.
type levels struct{ m *Edge }

func (l levels) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{tunnelsDesc, accountConnsDesc, accountSessionsDesc, connsLimitDesc,
		sessionsLimitDesc, certDesc} {
		ch <- d
	}
}

func (l levels) Collect(ch chan<- prometheus.Metric) {
	s := l.m.src
	byKey := func(d *prometheus.Desc, f func() map[string]int) {
		if f == nil {
			return
		}
		for k, n := range f() {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(n), k)
		}
	}
	byKey(tunnelsDesc, s.Tunnels)
	var accounts []string
	if s.Accounts != nil {
		accounts = s.Accounts()
	}
	perAccount := func(d *prometheus.Desc, f func() map[string]int) {
		if f == nil {
			return
		}
		held := f()
		if held == nil {
			held = map[string]int{}
		}
		for _, id := range accounts { // 0 rather than absent: a graph of use against the quota has a line
			if _, ok := held[id]; !ok {
				held[id] = 0
			}
		}
		for id, n := range held {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(n), id)
		}
	}
	perAccount(accountConnsDesc, s.Connections)
	perAccount(accountSessionsDesc, s.Sessions)
	if s.Limits != nil {
		sessions, conns := s.Limits()
		ch <- prometheus.MustNewConstMetric(sessionsLimitDesc, prometheus.GaugeValue, float64(sessions))
		ch <- prometheus.MustNewConstMetric(connsLimitDesc, prometheus.GaugeValue, float64(conns))
	}
	if s.Certificates != nil {
		for name, notAfter := range s.Certificates() {
			ch <- prometheus.MustNewConstMetric(certDesc, prometheus.GaugeValue, float64(notAfter.Unix()), name)
		}
	}
}
