// Package dns answers "what is this name under the edge's zone": the edge's
// own authoritative DNS (github.com/miekg/dns parses and writes every
// message; no wire format here).
//
// Why it is shaped this way:
//   - The operator delegates the zone to the edge with two NS records and
//     never touches DNS again: the zone apex, every single label under it
//     (the sockets' names, api.<zone>, the NS names themselves) answer A/AAAA
//     with the addresses of the live nodes, which the control plane pushes
//     whenever membership changes, so a dead node leaves the answers within
//     its heartbeat timeout plus the TTL (30 s by default, short on purpose).
//     A node's own host name under the zone (its --tunnel-server, where the
//     clients of the tunnels placed on it connect) answers with that node
//     alone while it is live, and like any other name once it is not (any
//     node accepts any tunnel of the account).
//   - Deeper names (a.b.<zone>) do not exist (NXDOMAIN): the edge serves one
//     label under the zone and its wildcard certificate covers one label.
//     Types a name does not have get NODATA with the SOA (negative caching).
//   - `_acme-challenge.<zone>` holds the TXT values the live nodes publish
//     (with their addresses, in the store) while one of them orders the
//     zone's wildcard certificate (DNS-01): every node answers them, so the
//     CA may ask any of the NS.
//   - Not an open resolver: a name outside the zone is REFUSED. Not an
//     amplifier: ANY gets one small synthesized HINFO (RFC 8482), UDP answers
//     are truncated to what the client said it can take (512 bytes without
//     EDNS0), and each source address (IPv6: its /64) gets a bounded number
//     of UDP answers per minute (internal/limits); past that, every second
//     query gets an empty truncated answer (no larger than the query, so the
//     client may retry over TCP) and the others none.
package dns

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"

	"mysocketd/edge/dataplane/internal/limits"
)

// ChallengeLabel is the name, under the zone, of the DNS-01 TXT records.
const ChallengeLabel = "_acme-challenge"

// Config is what the zone is and how it is answered.
type Config struct {
	Zone             string   // the edge's --domain, e.g. "edge.example.com"
	NS               []string // its name servers (default ns1.<zone>, ns2.<zone>)
	TTL              uint32   // of every answer and of negative answers (default 30)
	AnswersPerMinute float64  // UDP answers per source per minute (0: no limit)
}

// Server answers for one zone; SetAddresses and SetChallenge change what it says.
type Server struct {
	zone    string // fqdn, lower case, e.g. "edge.example.com."
	ns      []string
	ttl     uint32
	rate    float64
	limiter *limits.Limiter
	slip    atomic.Uint64

	mu     sync.RWMutex
	all    ips
	hosts  map[string]ips // a live node's own host name (fqdn) -> its addresses
	txt    []string
	serial uint32
}

// ips are the addresses of one name, by family.
type ips struct{ v4, v6 []net.IP }

// Node is one live node as the DNS gives it out: its host name, public addresses, and the
// DNS-01 TXT values it publishes while it orders the zone's certificate.
type Node struct {
	Host      string
	Addresses []string
	Challenge []string
}

// New makes the zone's server; it answers nothing but SERVFAIL for addresses until SetAddresses.
func New(cfg Config) *Server {
	zone := mdns.CanonicalName(cfg.Zone)
	s := &Server{zone: zone, ttl: cfg.TTL, rate: cfg.AnswersPerMinute, limiter: limits.NewLimiter(),
		serial: uint32(time.Now().Unix())}
	if s.ttl == 0 {
		s.ttl = 30
	}
	for _, n := range cfg.NS {
		if n = strings.TrimSpace(n); n != "" {
			s.ns = append(s.ns, mdns.CanonicalName(n))
		}
	}
	if len(s.ns) == 0 {
		s.ns = []string{"ns1." + zone, "ns2." + zone}
	}
	return s
}

// SetNodes makes the live nodes' addresses the answer of every name (and each node's own
// host name under the zone answer with that node's).
func (s *Server) SetNodes(nodes []Node) {
	var all, txt []string
	hosts := map[string]ips{}
	for _, n := range nodes {
		all, txt = append(all, n.Addresses...), append(txt, n.Challenge...)
		if host := mdns.CanonicalName(n.Host); n.Host != "" && mdns.IsSubDomain(s.zone, host) {
			if a := parseIPs(n.Addresses); len(a.v4)+len(a.v6) > 0 {
				hosts[host] = a
			}
		}
	}
	a := parseIPs(all)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !sameIPs(a.v4, s.all.v4) || !sameIPs(a.v6, s.all.v6) || strings.Join(txt, " ") != strings.Join(s.txt, " ") {
		s.serial++
	}
	s.all, s.hosts, s.txt = a, hosts, txt
}

// SetAddresses makes addrs the answer of every name (one node, or nodes without host names).
func (s *Server) SetAddresses(addrs []string) { s.SetNodes([]Node{{Addresses: addrs}}) }

func parseIPs(addrs []string) ips {
	var out ips
	seen := map[string]bool{}
	for _, a := range addrs {
		ip := net.ParseIP(strings.TrimSpace(a))
		if ip == nil || seen[ip.String()] {
			continue
		}
		seen[ip.String()] = true
		if ip4 := ip.To4(); ip4 != nil {
			out.v4 = append(out.v4, ip4)
		} else {
			out.v6 = append(out.v6, ip)
		}
	}
	return out
}

func sameIPs(a, b []net.IP) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// ServeDNS answers one query (miekg/dns's Handler).
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	udp := w.RemoteAddr().Network() == "udp"
	if udp && s.rate > 0 {
		key := sourceKey(w.RemoteAddr())
		if !s.limiter.Allowed(key, s.rate) {
			if s.slip.Add(1)%2 == 0 { // an empty truncated answer: no larger than the query
				m := new(mdns.Msg)
				m.SetReply(r)
				m.Truncated = true
				m.Ns, m.Answer, m.Extra = nil, nil, nil
				w.WriteMsg(m)
			}
			return
		}
		s.limiter.Spend(key, s.rate)
	}
	m := s.Answer(r)
	size := 65535
	if udp {
		size = mdns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), mdns.MinMsgSize)
		}
	}
	m.Truncate(size)
	w.WriteMsg(m)
}

// sourceKey is who a rate limit counts: the address, or an IPv6 address's /64.
func sourceKey(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	ip := net.ParseIP(host)
	if ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String()
	}
	return host
}

// Answer is the reply to r, before any truncation.
func (s *Server) Answer(r *mdns.Msg) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Compress = true
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(max(opt.UDPSize(), mdns.MinMsgSize), false)
	}
	if r.Opcode != mdns.OpcodeQuery || len(r.Question) != 1 {
		m.Rcode = mdns.RcodeNotImplemented
		return m
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if !mdns.IsSubDomain(s.zone, name) || (q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY) {
		m.Rcode = mdns.RcodeRefused // not an open resolver
		return m
	}
	m.Authoritative = true
	labels := mdns.CountLabel(name) - mdns.CountLabel(s.zone)
	if labels > 1 {
		m.Rcode = mdns.RcodeNameError
		m.Ns = []mdns.RR{s.soa()}
		return m
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	apex, challenge := labels == 0, name == ChallengeLabel+"."+s.zone
	switch {
	case q.Qtype == mdns.TypeANY: // RFC 8482: one small record, whatever the name has
		m.Answer = []mdns.RR{&mdns.HINFO{Hdr: s.hdr(q.Name, mdns.TypeHINFO), Cpu: "RFC8482"}}
	case challenge && q.Qtype == mdns.TypeTXT:
		for _, v := range s.txt {
			m.Answer = append(m.Answer, &mdns.TXT{Hdr: s.hdr(q.Name, mdns.TypeTXT), Txt: []string{v}})
		}
	case !challenge && (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeAAAA):
		a, own := s.hosts[name]
		if !own {
			a = s.all
		}
		if len(a.v4)+len(a.v6) == 0 { // no live node known yet: let the resolver try another NS
			m.Rcode = mdns.RcodeServerFailure
			m.Authoritative = false
			return m
		}
		if q.Qtype == mdns.TypeA {
			for _, ip := range a.v4 {
				m.Answer = append(m.Answer, &mdns.A{Hdr: s.hdr(q.Name, mdns.TypeA), A: ip})
			}
		} else {
			for _, ip := range a.v6 {
				m.Answer = append(m.Answer, &mdns.AAAA{Hdr: s.hdr(q.Name, mdns.TypeAAAA), AAAA: ip})
			}
		}
	case apex && q.Qtype == mdns.TypeSOA:
		m.Answer = []mdns.RR{s.soa()}
	case apex && q.Qtype == mdns.TypeNS:
		for _, n := range s.ns {
			m.Answer = append(m.Answer, &mdns.NS{Hdr: s.hdr(s.zone, mdns.TypeNS), Ns: n})
		}
	}
	if len(m.Answer) == 0 { // NODATA: the name exists, not with this type
		m.Ns = []mdns.RR{s.soaLocked()}
	}
	return m
}

func (s *Server) hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: s.ttl}
}

func (s *Server) soa() mdns.RR {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.soaLocked()
}

func (s *Server) soaLocked() mdns.RR {
	return &mdns.SOA{Hdr: s.hdr(s.zone, mdns.TypeSOA), Ns: s.ns[0], Mbox: "hostmaster." + s.zone,
		Serial: s.serial, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: s.ttl}
}

// Servers are the zone's UDP and TCP servers on one address.
type Servers struct {
	udp, tcp *mdns.Server
	Addr     string // host:port both listen on
}

// Listen serves h on addr over UDP and TCP (port 0: one free port for both).
func Listen(addr string, h mdns.Handler) (*Servers, error) {
	var lastErr error
	for range 20 { // port 0: the TCP port chosen may be taken for UDP; try another
		tl, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		pc, err := net.ListenPacket("udp", tl.Addr().String())
		if err != nil {
			tl.Close()
			lastErr = err
			if _, port, _ := net.SplitHostPort(addr); port == "0" {
				continue
			}
			return nil, err
		}
		s := &Servers{Addr: tl.Addr().String(),
			udp: &mdns.Server{PacketConn: pc, Handler: h},
			tcp: &mdns.Server{Listener: tl, Handler: h, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
				IdleTimeout: func() time.Duration { return 5 * time.Second }}}
		go s.udp.ActivateAndServe()
		go s.tcp.ActivateAndServe()
		return s, nil
	}
	return nil, lastErr
}

// Close stops both servers.
func (s *Servers) Close() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}
