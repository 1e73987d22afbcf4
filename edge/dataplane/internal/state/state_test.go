package state

import (
	"crypto/ed25519"
	"crypto/rand"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

func authorizedKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(ssh.MarshalAuthorizedKey(key))
}

func TestReplace(t *testing.T) {
	in := StateIn{
		Version: 7,
		Users: []UserIn{
			{UserID: "u1", UserName: "alice", SSHKey: authorizedKey(t)},
			{UserID: "u2", UserName: "bob", SSHKey: "not a key"},
		},
		Sockets: []SocketIn{
			{SocketID: "s1", UserID: "u1", DNSName: "Blue-Snow.edge.localhost", Type: "http", LocalPorts: []int{10000, 10001}},
			{SocketID: "s2", UserID: "u2", DNSName: "db.edge.localhost", Type: "tcp", TCPPort: 40000,
				Tunnels: []TunnelIn{{LocalPort: 10002, Node: "b"}}},
		},
		Limits: Limits{SessionsPerAccount: 3, ConnectionsPerAccount: 5, AuthFailuresPerMinute: 20},
	}
	h := NewHolder("a")
	changes, ok := h.Replace(in)
	if !ok || h.Version() != 7 || h.Limits() != in.Limits || len(changes) != 3 {
		t.Fatalf("ok %v version %d limits %+v changes %v", ok, h.Version(), h.Limits(), changes)
	}
	users := []struct {
		name    string
		userID  string
		withKey bool
	}{
		{"alice", "u1", true},
		{"bob", "u2", false}, // a key that does not parse: the account exists but cannot log in
	}
	for _, u := range users {
		got := h.User(u.name)
		if got == nil || got.UserID != u.userID || (got.Key != nil) != u.withKey {
			t.Errorf("user %s: %+v, want id %s, key %v", u.name, got, u.userID, u.withKey)
		}
	}
	lookups := []struct {
		name   string
		got    *Socket
		wantID string // "" : no socket
	}{
		{"by dns, lower-cased", h.ByDNS("blue-snow.edge.localhost"), "s1"},
		{"by dns, as pushed", h.ByDNS("Blue-Snow.edge.localhost"), ""},
		{"by tcp port", h.ByTCPPort(40000), "s2"},
		{"http socket has no tcp port", h.ByTCPPort(0), ""},
		{"port owner 10000", h.PortOwner(10000), "s1"},
		{"port owner 10001", h.PortOwner(10001), "s1"},
		{"port owner 10002", h.PortOwner(10002), "s2"},
		{"port not a tunnel", h.PortOwner(10003), ""},
	}
	for _, c := range lookups {
		t.Run(c.name, func(t *testing.T) {
			switch {
			case c.wantID == "" && c.got != nil:
				t.Fatalf("found %s, want none", c.got.SocketID)
			case c.wantID != "" && (c.got == nil || c.got.SocketID != c.wantID):
				t.Fatalf("found %+v, want %s", c.got, c.wantID)
			}
		})
	}
	if s1 := h.ByDNS("blue-snow.edge.localhost"); s1.NodeOf(10000) != "" || len(s1.Tunnels) != 2 {
		t.Fatalf("local_ports only: tunnels %+v", s1.Tunnels) // an older client's shape
	}
	if s2 := h.PortOwner(10002); s2.NodeOf(10002) != "b" || len(s2.LocalPorts) != 1 {
		t.Fatalf("tunnels only: %+v", s2.SocketIn)
	}
}

// TestApply: a delta changes only what it names, and says which ports it touched and how.
func TestApply(t *testing.T) {
	base := StateIn{Version: 1, Users: []UserIn{{UserID: "u1", UserName: "alice"}, {UserID: "u2", UserName: "bob"}},
		Sockets: []SocketIn{
			{SocketID: "s1", UserID: "u1", DNSName: "one.edge", Tunnels: []TunnelIn{{LocalPort: 10000, Node: "a"}, {LocalPort: 10001, Node: "b"}}},
			{SocketID: "s2", UserID: "u2", DNSName: "two.edge", TCPPort: 40000, Tunnels: []TunnelIn{{LocalPort: 10002, Node: "a"}}},
		}}
	type want struct {
		port  int
		owner string // "" none
		moved bool
	}
	cases := []struct {
		name    string
		delta   DeltaIn
		changes []want
		check   func(h *Holder) bool
	}{
		{"a new socket", DeltaIn{Version: 2, Sockets: []SocketIn{
			{SocketID: "s3", UserID: "u1", DNSName: "three.edge", Tunnels: []TunnelIn{{LocalPort: 10003, Node: "a"}}}}},
			[]want{{10003, "s3", false}},
			func(h *Holder) bool { return h.ByDNS("three.edge") != nil && h.ByDNS("one.edge") != nil }},
		{"a socket gone", DeltaIn{Version: 2, SocketsGone: []string{"s2"}},
			[]want{{10002, "", false}},
			func(h *Holder) bool { return h.ByDNS("two.edge") == nil && h.ByTCPPort(40000) == nil }},
		{"a tunnel deleted", DeltaIn{Version: 2, Sockets: []SocketIn{
			{SocketID: "s1", UserID: "u1", DNSName: "one.edge", Tunnels: []TunnelIn{{LocalPort: 10000, Node: "a"}}}}},
			[]want{{10000, "s1", false}, {10001, "", false}},
			func(h *Holder) bool { return h.PortOwner(10001) == nil }},
		{"a tunnel moved away from this node", DeltaIn{Version: 2, Sockets: []SocketIn{
			{SocketID: "s1", UserID: "u1", DNSName: "one.edge", Tunnels: []TunnelIn{{LocalPort: 10000, Node: "c"}, {LocalPort: 10001, Node: "b"}}}}},
			[]want{{10000, "s1", true}, {10001, "s1", false}}, nil},
		{"a tunnel moved to this node", DeltaIn{Version: 2, Sockets: []SocketIn{
			{SocketID: "s1", UserID: "u1", DNSName: "one.edge", Tunnels: []TunnelIn{{LocalPort: 10000, Node: "a"}, {LocalPort: 10001, Node: "a"}}}}},
			[]want{{10000, "s1", false}, {10001, "s1", false}}, nil},
		{"a renamed account and a gone one", DeltaIn{Version: 2, Users: []UserIn{{UserID: "u1", UserName: "alice2"}},
			UsersGone: []string{"u2"}}, nil,
			func(h *Holder) bool { return h.User("alice") == nil && h.User("alice2") != nil && h.User("bob") == nil }},
		{"an older delta changes nothing", DeltaIn{Version: 0, SocketsGone: []string{"s1"}}, nil,
			func(h *Holder) bool { return h.ByDNS("one.edge") != nil && h.Version() == 1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := NewHolder("a")
			h.Replace(base)
			changes, _ := h.Apply(c.delta)
			got := map[int]want{}
			for _, ch := range changes {
				w := want{port: ch.Port, moved: ch.Moved}
				if ch.Owner != nil {
					w.owner = ch.Owner.SocketID
				}
				got[ch.Port] = w
			}
			if len(got) != len(c.changes) {
				t.Fatalf("changes %v, want %v", got, c.changes)
			}
			for _, w := range c.changes {
				if got[w.port] != w {
					t.Fatalf("change of %d: %+v, want %+v", w.port, got[w.port], w)
				}
			}
			if c.check != nil && !c.check(h) {
				t.Fatal("lookups after the delta are wrong")
			}
		})
	}
}

func TestVersionsOnlyGoForward(t *testing.T) {
	cases := []struct {
		name      string
		versions  []int64
		published []bool
		want      int64
	}{
		{"first push", []int64{1}, []bool{true}, 1},
		{"newer replaces", []int64{1, 2}, []bool{true, true}, 2},
		{"older is ignored", []int64{5, 3}, []bool{true, false}, 5},
		{"same version is published again", []int64{4, 4}, []bool{true, true}, 4},
		{"late old push between new ones", []int64{1, 3, 2, 4}, []bool{true, true, false, true}, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := NewHolder("")
			for i, v := range c.versions {
				if _, got := h.Replace(StateIn{Version: v}); got != c.published[i] {
					t.Fatalf("Replace(version %d) = %v, want %v", v, got, c.published[i])
				}
			}
			if got := h.Version(); got != c.want {
				t.Fatalf("version %d, want %d", got, c.want)
			}
		})
	}
}

func TestConcurrentPushesAndLookupsEndOnTheNewest(t *testing.T) {
	h := NewHolder("")
	var wg sync.WaitGroup
	for v := int64(1); v <= 50; v++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			h.Apply(DeltaIn{Version: v, Sockets: []SocketIn{{SocketID: "s", DNSName: "x.edge", LocalPorts: []int{int(v)}}}})
		}()
		go func() {
			defer wg.Done()
			h.ByDNS("x.edge")
		}()
	}
	wg.Wait()
	if got := h.Version(); got != 50 {
		t.Fatalf("version %d after concurrent pushes, want 50", got)
	}
}

func TestHostOnly(t *testing.T) {
	cases := []struct{ in, want string }{
		{"Blue-Snow.Edge.Localhost", "blue-snow.edge.localhost"},
		{"blue-snow.edge.localhost:8443", "blue-snow.edge.localhost"},
		{"blue-snow.edge.localhost.", "blue-snow.edge.localhost"},
		{"BLUE.edge.localhost.:80", "blue.edge.localhost"},
		{"[::1]:80", "::1"},
		{"", ""},
	}
	for _, c := range cases {
		if got := HostOnly(c.in); got != c.want {
			t.Errorf("HostOnly(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// A socket with a route table: compiled once, one group view per backend with only its tunnels;
// a table the data plane cannot serve leaves the socket without routes and with the reason.
func TestRoutesAndGroups(t *testing.T) {
	table := `{"listeners":[{"name":"l","port":80,"protocol":"HTTP","routes":[{"match":{"path":{"type":"PathPrefix","value":"/"}},"action":0}]}],
		"actions":[{"backends":[{"backend":"ns/a:80","weight":1},{"backend":"ns/b:80","weight":1}]}]}`
	h := NewHolder("")
	h.Replace(StateIn{Version: 1, Sockets: []SocketIn{
		{SocketID: "s1", DNSName: "gw.edge.localhost", Type: "http", Routes: []byte(table), Tunnels: []TunnelIn{
			{LocalPort: 10000, Backend: "ns/a:80"}, {LocalPort: 10001, Backend: "ns/b:80"},
			{LocalPort: 10002, Backend: "ns/a:80"}, {LocalPort: 10003}}},
		{SocketID: "s2", DNSName: "bad.edge.localhost", Type: "http", Routes: []byte(`{"listeners":[{"routes":[{"action":5}]}],"actions":[]}`)},
		{SocketID: "s3", DNSName: "plain.edge.localhost", Type: "http", LocalPorts: []int{10004}},
	}})
	sock := h.ByDNS("gw.edge.localhost")
	if sock.Routes == nil || sock.RoutesErr != nil {
		t.Fatalf("table not compiled: %v", sock.RoutesErr)
	}
	for backend, want := range map[string][]int{"ns/a:80": {10000, 10002}, "ns/b:80": {10001}} {
		g := sock.Group(backend)
		if g == nil || g.SocketID != "s1#"+backend || len(g.LocalPorts) != len(want) {
			t.Fatalf("group %s: %+v", backend, g)
		}
		for i, p := range want {
			if g.LocalPorts[i] != p || g.Tunnels[i].LocalPort != p {
				t.Errorf("group %s: ports %v, want %v", backend, g.LocalPorts, want)
			}
		}
	}
	if sock.Group("ns/c:80") != nil {
		t.Error("a backend the table does not name has a group")
	}
	if len(sock.LocalPorts) != 4 || h.PortOwner(10001) != sock {
		t.Error("the socket itself keeps all its tunnels")
	}
	if bad := h.ByDNS("bad.edge.localhost"); bad.Routes != nil || bad.RoutesErr == nil {
		t.Errorf("a bad table: routes %v err %v", bad.Routes, bad.RoutesErr)
	}
	if plain := h.ByDNS("plain.edge.localhost"); plain.Routes != nil || plain.RoutesErr != nil {
		t.Error("a socket without a table got one")
	}
}

// A table's upstream_protocols give each backend's group its app's protocol (not the Gateway
// socket's), and a fallback view holds only the backends that speak the request's protocol.
func TestGroupsCarryTheirBackendsProtocol(t *testing.T) {
	table := `{"listeners":[{"name":"l","port":80,"protocol":"HTTP","routes":[{"action":0}]}],
		"actions":[{"backends":[{"backend":"ns/rpc:80","weight":1},{"backend":"ns/rpc2:80","weight":1},{"backend":"ns/web:80","weight":1}]}],
		"upstream_protocols":{"ns/rpc:80":"h2c","ns/rpc2:80":"h2c","ns/web:80":"http/1.1"}}`
	h := NewHolder("")
	h.Replace(StateIn{Version: 1, Sockets: []SocketIn{
		{SocketID: "s1", DNSName: "gw.edge.localhost", Type: "http", UpstreamProtocol: "h2c", Routes: []byte(table),
			Tunnels: []TunnelIn{{LocalPort: 10000, Backend: "ns/rpc:80"}, {LocalPort: 10001, Backend: "ns/web:80"},
				{LocalPort: 10002, Backend: "ns/rpc2:80"}}},
	}})
	sock := h.ByDNS("gw.edge.localhost")
	if sock.RoutesErr != nil {
		t.Fatal(sock.RoutesErr)
	}
	for backend, want := range map[string]string{"ns/rpc:80": "h2c", "ns/rpc2:80": "h2c", "ns/web:80": ""} {
		if got := sock.Group(backend).UpstreamProtocol; got != want {
			t.Errorf("group %s speaks %q, want %q", backend, got, want)
		}
	}
	all := []string{"ns/rpc:80", "ns/rpc2:80", "ns/web:80"}
	if f := sock.Fallback(all, "h2c"); f.UpstreamProtocol != "h2c" || len(f.LocalPorts) != 2 || f.LocalPorts[1] != 10002 {
		t.Errorf("h2c fallback: %+v", f)
	}
	if f := sock.Fallback(all, ""); f.UpstreamProtocol != "" || len(f.LocalPorts) != 1 || f.LocalPorts[0] != 10001 {
		t.Errorf("HTTP/1.1 fallback: %+v", f)
	}
}

// A socket's own address finds it; deleting the socket frees the address.
func TestByAddress(t *testing.T) {
	h := NewHolder("")
	h.Replace(StateIn{Version: 1, Sockets: []SocketIn{
		{SocketID: "s1", DNSName: "gw.edge.localhost", Type: "http", Address: "127.100.0.1"},
		{SocketID: "s2", DNSName: "plain.edge.localhost", Type: "http"}}})
	if s := h.ByAddress("127.100.0.1"); s == nil || s.SocketID != "s1" {
		t.Fatalf("by address: %+v", s)
	}
	if h.ByAddress("") != nil || h.ByAddress("127.100.0.2") != nil {
		t.Error("an address no socket has found one")
	}
	h.Apply(DeltaIn{Version: 2, SocketsGone: []string{"s1"}})
	if h.ByAddress("127.100.0.1") != nil {
		t.Error("a deleted socket's address still finds it")
	}
}

// A socket's verified custom names find it like its dnsname does, and leave with it (or with the
// name, when a push no longer carries it).
func TestCustomHostnames(t *testing.T) {
	h := NewHolder("")
	h.Replace(StateIn{Version: 1, Sockets: []SocketIn{
		{SocketID: "s1", DNSName: "a.edge.localhost", Type: "http", Hostnames: []string{"App.Example.org"}}}})
	steps := []struct {
		name  string
		delta DeltaIn
		want  map[string]string // name -> socket id ("": none)
	}{
		{"pushed", DeltaIn{Version: 1}, map[string]string{"app.example.org": "s1", "a.edge.localhost": "s1"}},
		{"name dropped", DeltaIn{Version: 2, Sockets: []SocketIn{{SocketID: "s1", DNSName: "a.edge.localhost",
			Type: "http"}}}, map[string]string{"app.example.org": "", "a.edge.localhost": "s1"}},
		{"moved to another socket", DeltaIn{Version: 3, Sockets: []SocketIn{{SocketID: "s2",
			DNSName: "b.edge.localhost", Type: "tls", Hostnames: []string{"app.example.org"}}}},
			map[string]string{"app.example.org": "s2"}},
		{"socket gone", DeltaIn{Version: 4, SocketsGone: []string{"s2"}},
			map[string]string{"app.example.org": "", "b.edge.localhost": ""}},
	}
	for _, step := range steps {
		h.Apply(step.delta)
		for name, id := range step.want {
			got := h.ByDNS(name)
			if (got == nil && id != "") || (got != nil && got.SocketID != id) {
				t.Errorf("%s: ByDNS(%s) = %v, want %q", step.name, name, got, id)
			}
		}
	}
}
