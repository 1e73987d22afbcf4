package dns

import (
	"fmt"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func query(name string, t uint16) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), t)
	return m
}

func TestAnswer(t *testing.T) {
	s := New(Config{Zone: "Edge.Example.com", NS: []string{"a.ns.example.net", "b.ns.example.net."}})
	s.SetNodes([]Node{{Addresses: []string{"192.0.2.1", "192.0.2.2", "2001:db8::1", "192.0.2.1", "junk"},
		Challenge: []string{"token-1"}}, {Challenge: []string{"token-2"}}})
	cases := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
		aa      bool
		soa     bool // the SOA in the authority section (negative answer)
	}{
		{"edge.example.com", mdns.TypeA, mdns.RcodeSuccess, 2, true, false},
		{"edge.example.com", mdns.TypeAAAA, mdns.RcodeSuccess, 1, true, false},
		{"blue-snowflake-1578.edge.example.com", mdns.TypeA, mdns.RcodeSuccess, 2, true, false},
		{"API.EDGE.example.com", mdns.TypeA, mdns.RcodeSuccess, 2, true, false},
		{"edge.example.com", mdns.TypeSOA, mdns.RcodeSuccess, 1, true, false},
		{"edge.example.com", mdns.TypeNS, mdns.RcodeSuccess, 2, true, false},
		{"edge.example.com", mdns.TypeMX, mdns.RcodeSuccess, 0, true, true},
		{"x.edge.example.com", mdns.TypeTXT, mdns.RcodeSuccess, 0, true, true},
		{"_acme-challenge.edge.example.com", mdns.TypeTXT, mdns.RcodeSuccess, 2, true, false},
		{"_acme-challenge.edge.example.com", mdns.TypeA, mdns.RcodeSuccess, 0, true, true},
		{"a.b.edge.example.com", mdns.TypeA, mdns.RcodeNameError, 0, true, true},
		{"edge.example.com", mdns.TypeANY, mdns.RcodeSuccess, 1, true, false},
		{"x.edge.example.com", mdns.TypeANY, mdns.RcodeSuccess, 1, true, false},
		{"example.com", mdns.TypeA, mdns.RcodeRefused, 0, false, false},
		{"google.com", mdns.TypeA, mdns.RcodeRefused, 0, false, false},
		{"notedge.example.com", mdns.TypeA, mdns.RcodeRefused, 0, false, false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%s", c.name, mdns.TypeToString[c.qtype]), func(t *testing.T) {
			m := s.Answer(query(c.name, c.qtype))
			if m.Rcode != c.rcode || len(m.Answer) != c.answers || m.Authoritative != c.aa {
				t.Fatalf("rcode %s answers %d aa %v, want %s %d %v: %v", mdns.RcodeToString[m.Rcode],
					len(m.Answer), m.Authoritative, mdns.RcodeToString[c.rcode], c.answers, c.aa, m)
			}
			hasSOA := len(m.Ns) == 1 && m.Ns[0].Header().Rrtype == mdns.TypeSOA
			if hasSOA != c.soa {
				t.Fatalf("authority %v, want SOA: %v", m.Ns, c.soa)
			}
			for _, rr := range m.Answer {
				if rr.Header().Ttl != 30 {
					t.Fatalf("ttl %d", rr.Header().Ttl)
				}
			}
		})
	}
	soa := s.Answer(query("edge.example.com", mdns.TypeSOA)).Answer[0].(*mdns.SOA)
	if soa.Ns != "a.ns.example.net." || soa.Mbox != "hostmaster.edge.example.com." || soa.Minttl != 30 {
		t.Fatalf("soa %v", soa)
	}
}

func TestAddressesFollowTheNodes(t *testing.T) {
	s := New(Config{Zone: "edge.test"})
	if m := s.Answer(query("x.edge.test", mdns.TypeA)); m.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("no node known yet: %v", m)
	}
	s.SetAddresses([]string{"127.0.1.1", "127.0.1.2", "127.0.1.3"})
	serial := s.Answer(query("edge.test", mdns.TypeSOA)).Answer[0].(*mdns.SOA).Serial
	s.SetAddresses([]string{"127.0.1.1", "127.0.1.3"})
	m := s.Answer(query("x.edge.test", mdns.TypeA))
	if len(m.Answer) != 2 || m.Answer[1].(*mdns.A).A.String() != "127.0.1.3" {
		t.Fatalf("after a node left: %v", m.Answer)
	}
	// A live node's own host name under the zone is that node alone; a dead one's is any live one.
	s.SetNodes([]Node{{Host: "node1.edge.test", Addresses: []string{"127.0.1.1"}}, {Host: "Node2.Edge.Test.", Addresses: []string{"127.0.1.2"}},
		{Host: "node3.elsewhere.test", Addresses: []string{"127.0.1.3"}}})
	for name, want := range map[string]int{"node1.edge.test": 1, "node2.edge.test": 1, "node4.edge.test": 3} {
		if m := s.Answer(query(name, mdns.TypeA)); len(m.Answer) != want {
			t.Fatalf("%s: %v, want %d addresses", name, m.Answer, want)
		}
	}
	if s.Answer(query("edge.test", mdns.TypeSOA)).Answer[0].(*mdns.SOA).Serial == serial {
		t.Fatal("the serial did not change with the addresses")
	}
	if ns := s.Answer(query("edge.test", mdns.TypeNS)); ns.Answer[0].(*mdns.NS).Ns != "ns1.edge.test." {
		t.Fatalf("default NS %v", ns.Answer)
	}
	s.SetAddresses([]string{"127.0.1.1"})
	if m := s.Answer(query("_acme-challenge.edge.test", mdns.TypeTXT)); len(m.Answer) != 0 {
		t.Fatalf("cleared challenge still answered: %v", m.Answer)
	}
}

// Over real sockets: UDP answers no larger than the client takes, TCP whole, the rate limit.
func TestServeTruncationAndRate(t *testing.T) {
	s := New(Config{Zone: "edge.test", AnswersPerMinute: 10})
	var many []string
	for i := range 100 {
		many = append(many, fmt.Sprintf("10.0.%d.%d", i/250, i%250+1))
	}
	s.SetAddresses(many)
	srv, err := Listen("127.0.0.1:0", s)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	udp := &mdns.Client{Net: "udp"}
	q := query("x.edge.test", mdns.TypeA)
	m, _, err := udp.Exchange(q, srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	m.Compress = true
	packed, _ := m.Pack()
	if !m.Truncated || len(packed) > 512 {
		t.Fatalf("UDP without EDNS0: truncated %v, %d bytes", m.Truncated, len(packed))
	}
	tcp := &mdns.Client{Net: "tcp"}
	m, _, err = tcp.Exchange(q, srv.Addr)
	if err != nil || m.Truncated || len(m.Answer) != 100 {
		t.Fatalf("TCP: %v %v", err, m)
	}
	// 10 answers per minute for this source: the rest get nothing or an empty truncated answer.
	udp.Timeout = time.Second
	started := time.Now()
	answered, dropped, empty := 1, 0, 0
	for range 20 {
		m, _, err := udp.Exchange(query("y.edge.test", mdns.TypeSOA), srv.Addr)
		switch {
		case err != nil:
			dropped++
		case len(m.Answer) == 0 && m.Truncated:
			empty++
		default:
			answered++
		}
	}
	refilled := int(time.Since(started).Minutes()*10) + 1 // what the budget refilled meanwhile
	if answered < 10 || answered > 10+refilled || dropped == 0 || empty == 0 {
		t.Fatalf("answered %d (want 10, +%d refilled), dropped %d, empty truncated %d", answered, refilled,
			dropped, empty)
	}
}

func TestSourceKey(t *testing.T) {
	cases := map[string]string{"192.0.2.7:53": "192.0.2.7", "[2001:db8:1:2:3::9]:53": "2001:db8:1:2::"}
	for in, want := range cases {
		a, _ := net.ResolveUDPAddr("udp", in)
		if got := sourceKey(a); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
