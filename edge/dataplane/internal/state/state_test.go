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

func TestNewSnapshot(t *testing.T) {
	in := StateIn{
		Version: 7,
		Users: []UserIn{
			{UserID: "u1", UserName: "alice", SSHKey: authorizedKey(t)},
			{UserID: "u2", UserName: "bob", SSHKey: "not a key"},
		},
		Sockets: []SocketIn{
			{SocketID: "s1", UserID: "u1", DNSName: "Blue-Snow.edge.localhost", Type: "http", LocalPorts: []int{10000, 10001}},
			{SocketID: "s2", UserID: "u2", DNSName: "db.edge.localhost", Type: "tcp", TCPPort: 40000, LocalPorts: []int{10002}},
		},
		Limits: Limits{SessionsPerAccount: 3, ConnectionsPerAccount: 5, AuthFailuresPerMinute: 20},
	}
	snap := NewSnapshot(in)
	if snap.Version != 7 || snap.Limits != in.Limits {
		t.Fatalf("version %d limits %+v", snap.Version, snap.Limits)
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
		got := snap.UsersByName[u.name]
		if got == nil || got.UserID != u.userID || (got.Key != nil) != u.withKey {
			t.Errorf("user %s: %+v, want id %s, key %v", u.name, got, u.userID, u.withKey)
		}
	}
	lookups := []struct {
		name   string
		got    *Socket
		wantID string // "" : no socket
	}{
		{"by dns, lower-cased", snap.ByDNS["blue-snow.edge.localhost"], "s1"},
		{"by dns, as pushed", snap.ByDNS["Blue-Snow.edge.localhost"], ""},
		{"by tcp port", snap.ByTCPPort[40000], "s2"},
		{"http socket has no tcp port", snap.ByTCPPort[0], ""},
		{"port owner 10000", snap.PortOwner[10000], "s1"},
		{"port owner 10001", snap.PortOwner[10001], "s1"},
		{"port owner 10002", snap.PortOwner[10002], "s2"},
		{"port not a tunnel", snap.PortOwner[10003], ""},
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
}

func TestHolderSetKeepsTheNewestVersion(t *testing.T) {
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
			var h Holder
			if h.Get() != nil {
				t.Fatal("a new Holder has a snapshot")
			}
			for i, v := range c.versions {
				if got := h.Set(NewSnapshot(StateIn{Version: v})); got != c.published[i] {
					t.Fatalf("Set(version %d) = %v, want %v", v, got, c.published[i])
				}
			}
			if got := h.Get().Version; got != c.want {
				t.Fatalf("version %d, want %d", got, c.want)
			}
		})
	}
}

func TestHolderSetConcurrentPushesEndOnTheNewest(t *testing.T) {
	var h Holder
	var wg sync.WaitGroup
	for v := int64(1); v <= 50; v++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.Set(NewSnapshot(StateIn{Version: v}))
		}()
	}
	wg.Wait()
	if got := h.Get().Version; got != 50 {
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
