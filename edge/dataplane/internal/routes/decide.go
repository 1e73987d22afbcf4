package routes

import (
	"crypto/tls"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Decision is what one request gets: an answer of the edge's own (Status != 0), or a backend
// group (Backend) with the edits to make on the way there and back.
type Decision struct {
	Status   int    // 404 no route, 421 misdirected, 500 no valid backend, 3xx a redirect
	Reason   string // the Mysocket-Edge reason of an edge answer
	Location string // of a redirect
	Backend  string
	// Fallbacks are the rule's other valid backends (weight > 0), in the rule's order: where the
	// request may go when no tunnel of Backend takes it (a cluster of a pool lost, a Service with
	// no ready endpoint, whose forwards mysocketd stops).
	Fallbacks []string
	Listener  string // the listener that took the request (for logs)
	request   []Filter
	response  []Filter
	prefix    string // the matched PathPrefix, for ReplacePrefixMatch
}

// Request is what Decide looks at besides the *http.Request: which front, and the TLS server name.
type Request struct {
	Port int    // 80 (the HTTP front) or 443 (the HTTPS front)
	SNI  string // of a TLS connection ("" for plain HTTP)
	HTTP *http.Request
}

// Decide routes one request. Weighted backends are picked with math/rand/v2 (pick stubs it in tests).
func (c *Compiled) Decide(in Request) Decision {
	return c.decide(in, rand.IntN)
}

func (c *Compiled) decide(in Request, pick func(int) int) Decision {
	host := normalize(in.HTTP.Host)
	l := c.listenerFor(in.Port, httpProtocol(in.Port), host)
	if l == nil {
		return Decision{Status: http.StatusNotFound, Reason: "no-route", Listener: ""}
	}
	if in.SNI != "" {
		if byName := c.listenerFor(in.Port, "HTTPS", normalize(in.SNI)); byName != nil && byName != l {
			return Decision{Status: http.StatusMisdirectedRequest, Reason: "misdirected", Listener: l.Name}
		}
	}
	for i := range l.routes {
		r := &l.routes[i]
		if !hostMatches(r.hostname, host) || !r.match.matches(in.HTTP) {
			continue
		}
		d := Decision{Listener: l.Name, prefix: r.match.prefix()}
		for _, f := range r.action.Filters {
			if f.Type == "RequestRedirect" {
				d.Status, d.Reason = f.StatusCode, "redirect"
				if d.Status == 0 {
					d.Status = http.StatusFound
				}
				d.Location = redirectLocation(f, in, l.Port, d.prefix)
				return d
			}
		}
		d.request, d.response = split(r.action.Filters)
		b := chooseBackend(r.action.Backends, pick)
		if b == nil || b.Backend == "" {
			d.Status, d.Reason = http.StatusInternalServerError, "no-backend"
			return d
		}
		req, resp := split(b.Filters)
		d.request, d.response = append(d.request, req...), append(d.response, resp...)
		d.Backend = b.Backend
		for _, other := range r.action.Backends {
			if other.Backend != "" && other.Weight > 0 && other.Backend != b.Backend {
				d.Fallbacks = append(d.Fallbacks, other.Backend)
			}
		}
		return d
	}
	return Decision{Status: http.StatusNotFound, Reason: "no-route", Listener: l.Name}
}

func httpProtocol(port int) string {
	if port == 443 {
		return "HTTPS"
	}
	return "HTTP"
}

// listenerFor is the listener on port, of protocol, whose hostname fits host most specifically.
func (c *Compiled) listenerFor(port int, protocol, host string) *listener {
	var best *listener
	for _, l := range c.listeners {
		if l.Port != port || l.Protocol != protocol || !hostMatches(l.Hostname, host) {
			continue
		}
		if best == nil || specificity(l.Hostname) > specificity(best.Hostname) {
			best = l
		}
	}
	return best
}

// Certificate is the certificate of the HTTPS listener that fits the server name, or nil: none fits, or
// the listener has none of its own (the edge's certificate for the socket's name then serves).
func (c *Compiled) Certificate(sni string) *tls.Certificate {
	l := c.listenerFor(443, "HTTPS", normalize(sni))
	if l == nil || len(l.certs) == 0 {
		return nil
	}
	return &l.certs[0]
}

// Passthrough is the backend group of the TLS (passthrough) listener route that fits the server name.
func (c *Compiled) Passthrough(sni string) (string, bool) {
	name := normalize(sni)
	l := c.listenerFor(443, "TLS", name)
	if l == nil {
		return "", false
	}
	for i := range l.routes {
		if hostMatches(l.routes[i].hostname, name) {
			if b := chooseBackend(l.routes[i].action.Backends, rand.IntN); b != nil && b.Backend != "" {
				return b.Backend, true
			}
			return "", false
		}
	}
	return "", false
}

// Terminates says whether a connection with this server name is this table's to terminate (an HTTPS
// listener fits it) rather than to pass through (a TLS listener) or to refuse (neither).
func (c *Compiled) Terminates(sni string) bool {
	return c.listenerFor(443, "HTTPS", normalize(sni)) != nil
}

func chooseBackend(bs []Backend, pick func(int) int) *Backend {
	total := 0
	for _, b := range bs {
		total += b.Weight
	}
	if total == 0 {
		return nil
	}
	n := pick(total)
	for i := range bs {
		if n < bs[i].Weight {
			return &bs[i]
		}
		n -= bs[i].Weight
	}
	return nil
}

func split(fs []Filter) (req, resp []Filter) {
	for _, f := range fs {
		switch f.Type {
		case "RequestHeaderModifier", "URLRewrite":
			req = append(req, f)
		case "ResponseHeaderModifier":
			resp = append(resp, f)
		}
	}
	return req, resp
}

func (m *matcher) prefix() string {
	if m.pathType == "PathPrefix" {
		return m.path
	}
	return ""
}

func (m *matcher) matches(r *http.Request) bool {
	path := r.URL.Path
	if path == "" {
		path = "/"
	}
	switch m.pathType {
	case "Exact":
		if path != m.path {
			return false
		}
	case "PathPrefix":
		if !prefixMatches(m.path, path) {
			return false
		}
	case "RegularExpression":
		if !m.pathRe.MatchString(path) {
			return false
		}
	}
	if m.method != "" && r.Method != m.method {
		return false
	}
	for _, h := range m.headers {
		values, ok := r.Header[h.name]
		if !ok || !h.fits(strings.Join(values, ",")) {
			return false
		}
	}
	if len(m.query) > 0 {
		q := r.URL.Query()
		for _, v := range m.query {
			values, ok := q[v.name]
			if !ok || !v.fits(values[0]) {
				return false
			}
		}
	}
	return true
}

func (v *valueMatcher) fits(s string) bool {
	if v.re != nil {
		return v.re.MatchString(s)
	}
	return s == v.value
}

// prefixMatches is the spec's element-wise prefix: /abc matches /abc, /abc/ and /abc/def, not /abcd.
func prefixMatches(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// replacePrefix swaps the matched prefix for repl, without doubling or losing the slash between them.
func replacePrefix(path, prefix, repl string) string {
	rest := strings.TrimPrefix(path, prefix)
	if prefix == "/" {
		rest = strings.TrimPrefix(path, "/")
		if rest != "" {
			rest = "/" + rest
		}
	}
	out := strings.TrimSuffix(repl, "/") + rest
	if out == "" {
		return "/"
	}
	if !strings.HasPrefix(out, "/") {
		out = "/" + out
	}
	return out
}

func redirectLocation(f Filter, in Request, listenerPort int, prefix string) string {
	r := in.HTTP
	scheme := "http"
	if r.TLS != nil || in.SNI != "" {
		scheme = "https"
	}
	port := listenerPort
	if f.Scheme != "" {
		scheme = f.Scheme
		port = map[string]int{"http": 80, "https": 443}[scheme]
		if port == 0 {
			port = listenerPort
		}
	}
	if f.Port != 0 {
		port = f.Port
	}
	host := f.Hostname
	if host == "" {
		host = normalize(r.Host)
	}
	if (scheme == "http" && port == 80) || (scheme == "https" && port == 443) {
		port = 0
	}
	if port != 0 {
		host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	path := r.URL.Path
	if f.Path != nil {
		if f.Path.Type == "ReplaceFullPath" {
			path = f.Path.Value
		} else if prefix != "" {
			path = replacePrefix(path, prefix, f.Path.Value)
		}
	}
	u := url.URL{Scheme: scheme, Host: host, Path: path, RawQuery: r.URL.RawQuery}
	return u.String()
}

// Rewrite makes the request edits on the outgoing request (after the front has set its Host).
func (d *Decision) Rewrite(out *http.Request) {
	for _, f := range d.request {
		switch f.Type {
		case "RequestHeaderModifier":
			editHeaders(out.Header, f)
		case "URLRewrite":
			if f.Hostname != "" {
				out.Host = f.Hostname
			}
			if f.Path != nil {
				path := f.Path.Value
				if f.Path.Type == "ReplacePrefixMatch" {
					if d.prefix == "" {
						continue
					}
					path = replacePrefix(out.URL.Path, d.prefix, f.Path.Value)
				}
				out.URL.Path, out.URL.RawPath = path, ""
			}
		}
	}
}

// ModifyResponse makes the response edits on the backend's answer headers.
func (d *Decision) ModifyResponse(h http.Header) {
	for _, f := range d.response {
		editHeaders(h, f)
	}
}

// HasResponseEdits says whether ModifyResponse has anything to do.
func (d *Decision) HasResponseEdits() bool { return len(d.response) > 0 }

func editHeaders(h http.Header, f Filter) {
	for _, s := range f.Set {
		h.Set(s.Name, s.Value)
	}
	for _, a := range f.Add {
		h.Add(a.Name, a.Value)
	}
	for _, name := range f.Remove {
		h.Del(name)
	}
}
