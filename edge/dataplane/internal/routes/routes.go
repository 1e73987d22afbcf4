// Package routes is a socket's route table: what mysocketd translated from
// Gateways, HTTPRoutes and Ingresses, and the per-request answer to "which
// backend gets this, changed how".
//
// Why it is shaped this way:
//   - The controller does the spec's hard parts once per change: hostnames
//     are already intersected and every listener's routes are already in the
//     spec's precedence order (edge/README.md, "Route tables"). Here a
//     request picks its listener (the port, then the most specific listener
//     hostname), then takes the first route whose hostname and match fit.
//     No match: 404. A rule without a valid backend: 500.
//   - A table is compiled once when it arrives (regular expressions,
//     certificates, indexes checked), so a table the edge cannot apply is
//     refused whole with a reason, and the request path does no parsing.
//   - Backends are names of tunnel groups: the front opens a channel on one
//     of the group's tunnels; this package never sees a tunnel.
//   - Everything here is pure over *http.Request and http.Header, so the
//     table tests drive it without sockets.
package routes

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// Table is the JSON the control plane sends (PUT /socket/{id}/routes, then in the pushed state).
type Table struct {
	Listeners []Listener `json:"listeners"`
	Actions   []Action   `json:"actions"`
	// UpstreamProtocols says what a backend's app speaks: "h2c" (HTTP/2 without TLS, a gRPC
	// server) or "http/1.1"; a backend it does not name speaks HTTP/1.1 (older clients send none).
	UpstreamProtocols map[string]string `json:"upstream_protocols,omitempty"`
}

type Listener struct {
	Name         string  `json:"name"`
	Port         int     `json:"port"`         // 80: the HTTP front; 443: the HTTPS/TLS front
	Protocol     string  `json:"protocol"`     // HTTP | HTTPS | TLS
	Hostname     string  `json:"hostname"`     // "" = every name
	Certificates []Cert  `json:"certificates"` // none on HTTPS: the edge's own certificate for the socket's name
	Routes       []Route `json:"routes"`
}

type Cert struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

type Route struct {
	Hostname string `json:"hostname"`
	Match    Match  `json:"match"`
	Action   int    `json:"action"`
}

type Match struct {
	Path    PathMatch    `json:"path"`
	Method  string       `json:"method"`
	Headers []ValueMatch `json:"headers"`
	Query   []ValueMatch `json:"query"`
}

type PathMatch struct {
	Type  string `json:"type"` // Exact | PathPrefix | RegularExpression
	Value string `json:"value"`
}

type ValueMatch struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Type  string `json:"type"` // Exact | RegularExpression
}

type Action struct {
	Filters  []Filter  `json:"filters"`
	Backends []Backend `json:"backends"`
}

type Backend struct {
	Backend string   `json:"backend"` // a tunnel group; "" = not a valid backend: its share gets 500
	Weight  int      `json:"weight"`
	Filters []Filter `json:"filters"`
}

type Filter struct {
	Type       string        `json:"type"`
	Set        []Header      `json:"set,omitempty"`
	Add        []Header      `json:"add,omitempty"`
	Remove     []string      `json:"remove,omitempty"`
	Scheme     string        `json:"scheme,omitempty"`
	Hostname   string        `json:"hostname,omitempty"`
	Port       int           `json:"port,omitempty"`
	Path       *PathModifier `json:"path,omitempty"`
	StatusCode int           `json:"statusCode,omitempty"`
}

type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type PathModifier struct {
	Type  string `json:"type"` // ReplaceFullPath | ReplacePrefixMatch
	Value string `json:"value"`
}

// Compiled is a table ready for requests; immutable once made.
type Compiled struct {
	listeners []*listener
	backends  map[string]bool
	protocols map[string]string // backend -> "h2c"; absent: HTTP/1.1
}

type listener struct {
	Listener
	certs  []tls.Certificate
	routes []route
}

type route struct {
	hostname string
	match    matcher
	action   *Action
}

type matcher struct {
	pathType string
	path     string
	pathRe   *regexp.Regexp
	method   string
	headers  []valueMatcher
	query    []valueMatcher
}

type valueMatcher struct {
	name  string
	value string
	re    *regexp.Regexp
}

// Compile checks a table and prepares it; the error names what is wrong, for the control plane's client.
func Compile(t Table) (*Compiled, error) {
	c := &Compiled{backends: map[string]bool{}, protocols: map[string]string{}}
	for backend, p := range t.UpstreamProtocols {
		switch p {
		case "h2c":
			c.protocols[backend] = p
		case "", "http/1.1":
		default:
			return nil, fmt.Errorf("backend %q: upstream protocol %q (h2c or http/1.1)", backend, p)
		}
	}
	for i := range t.Actions {
		if err := checkAction(&t.Actions[i]); err != nil {
			return nil, fmt.Errorf("action %d: %w", i, err)
		}
		for _, b := range t.Actions[i].Backends {
			if b.Backend != "" {
				c.backends[b.Backend] = true
			}
		}
	}
	for _, in := range t.Listeners {
		l := &listener{Listener: in}
		l.Hostname = normalize(in.Hostname)
		switch {
		case in.Protocol == "HTTP" && in.Port == 80:
		case (in.Protocol == "HTTPS" || in.Protocol == "TLS") && in.Port == 443:
		default:
			return nil, fmt.Errorf("listener %s: %s on port %d: this edge serves HTTP on 80 and HTTPS/TLS on 443",
				in.Name, in.Protocol, in.Port)
		}
		for _, pair := range in.Certificates {
			cert, err := tls.X509KeyPair([]byte(pair.Cert), []byte(pair.Key))
			if err != nil {
				return nil, fmt.Errorf("listener %s: certificate: %w", in.Name, err)
			}
			l.certs = append(l.certs, cert)
		}
		for j, r := range in.Routes {
			if r.Action < 0 || r.Action >= len(t.Actions) {
				return nil, fmt.Errorf("listener %s route %d: no action %d", in.Name, j, r.Action)
			}
			m, err := compileMatch(r.Match)
			if err != nil {
				return nil, fmt.Errorf("listener %s route %d: %w", in.Name, j, err)
			}
			l.routes = append(l.routes, route{hostname: normalize(r.Hostname), match: m, action: &t.Actions[r.Action]})
		}
		c.listeners = append(c.listeners, l)
	}
	return c, nil
}

// Backends lists the tunnel groups the table sends traffic to.
func (c *Compiled) Backends() []string {
	out := make([]string, 0, len(c.backends))
	for b := range c.backends {
		out = append(out, b)
	}
	return out
}

// UpstreamProtocol is what backend's app speaks: "h2c", or "" for HTTP/1.1.
func (c *Compiled) UpstreamProtocol(backend string) string {
	return c.protocols[backend]
}

func checkAction(a *Action) error {
	for _, b := range a.Backends {
		if b.Weight < 0 {
			return fmt.Errorf("backend %q: weight %d", b.Backend, b.Weight)
		}
		for _, f := range b.Filters {
			if f.Type != "RequestHeaderModifier" && f.Type != "ResponseHeaderModifier" {
				return fmt.Errorf("backend %q: filter %s is not a backend filter", b.Backend, f.Type)
			}
		}
	}
	for _, f := range a.Filters {
		switch f.Type {
		case "RequestHeaderModifier", "ResponseHeaderModifier":
		case "RequestRedirect":
			switch f.StatusCode {
			case 0, 301, 302, 303, 307, 308:
			default:
				return fmt.Errorf("redirect status %d", f.StatusCode)
			}
			if err := checkPath(f.Path); err != nil {
				return err
			}
		case "URLRewrite":
			if err := checkPath(f.Path); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown filter %q", f.Type)
		}
	}
	return nil
}

func checkPath(p *PathModifier) error {
	if p != nil && p.Type != "ReplaceFullPath" && p.Type != "ReplacePrefixMatch" {
		return fmt.Errorf("unknown path modifier %q", p.Type)
	}
	return nil
}

func compileMatch(m Match) (matcher, error) {
	out := matcher{pathType: m.Path.Type, path: m.Path.Value, method: m.Method}
	if out.pathType == "" {
		out.pathType = "PathPrefix"
	}
	if out.path == "" {
		out.path = "/"
	}
	switch out.pathType {
	case "Exact":
	case "PathPrefix":
		if out.path != "/" {
			out.path = strings.TrimSuffix(out.path, "/") // "a trailing / is ignored"
		}
	case "RegularExpression":
		re, err := regexp.Compile("^(?:" + out.path + ")$")
		if err != nil {
			return out, fmt.Errorf("path regular expression: %w", err)
		}
		out.pathRe = re
	default:
		return out, fmt.Errorf("unknown path match type %q", out.pathType)
	}
	var err error
	if out.headers, err = compileValues(m.Headers, true); err != nil {
		return out, fmt.Errorf("header match: %w", err)
	}
	if out.query, err = compileValues(m.Query, false); err != nil {
		return out, fmt.Errorf("query match: %w", err)
	}
	return out, nil
}

func compileValues(in []ValueMatch, header bool) ([]valueMatcher, error) {
	var out []valueMatcher
	seen := map[string]bool{}
	for _, v := range in {
		name := v.Name
		if header {
			name = http.CanonicalHeaderKey(name)
		}
		if seen[name] { // "only the first entry with an equivalent name MUST be considered"
			continue
		}
		seen[name] = true
		vm := valueMatcher{name: name, value: v.Value}
		switch v.Type {
		case "", "Exact":
		case "RegularExpression":
			re, err := regexp.Compile("^(?:" + v.Value + ")$")
			if err != nil {
				return nil, err
			}
			vm.re = re
		default:
			return nil, fmt.Errorf("unknown match type %q", v.Type)
		}
		out = append(out, vm)
	}
	return out, nil
}

// normalize is a hostname as matched: lower case, no port, no trailing dot.
func normalize(host string) string {
	host = strings.ToLower(strings.TrimSpace(host))
	if strings.HasPrefix(host, "[") {
		if i := strings.Index(host, "]"); i > 0 {
			return host[:i+1]
		}
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.Count(host, ":") == 1 {
		host = host[:i]
	}
	return strings.TrimSuffix(host, ".")
}

// hostMatches: "" matches everything; *.example.com needs at least one more label.
func hostMatches(pattern, name string) bool {
	switch {
	case pattern == "":
		return true
	case strings.HasPrefix(pattern, "*."):
		return len(name) > len(pattern)-1 && strings.HasSuffix(name, pattern[1:])
	default:
		return pattern == name
	}
}

// specificity orders listener hostnames: exact > longer wildcard > shorter wildcard > any.
func specificity(pattern string) int {
	switch {
	case pattern == "":
		return 0
	case strings.HasPrefix(pattern, "*."):
		return 1 + len(pattern)
	default:
		return 1 << 20
	}
}
