package sshd

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"mysocketd/edge/dataplane/internal/state"
	"mysocketd/edge/dataplane/internal/tunnels"
)

func signer(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type edge struct {
	addr  string
	reg   *tunnels.Registry
	alice ssh.Signer
}

// start runs a real Server on loopback: alice owns ports 10000-10001 of
// web.edge.localhost, bob owns 10002.
func start(t *testing.T) *edge {
	t.Helper()
	alice, bob := signer(t), signer(t)
	holder := state.NewHolder("")
	holder.Replace(state.StateIn{Version: 1,
		Users: []state.UserIn{
			{UserID: "u1", UserName: "alice", SSHKey: string(ssh.MarshalAuthorizedKey(alice.PublicKey()))},
			{UserID: "u2", UserName: "bob", SSHKey: string(ssh.MarshalAuthorizedKey(bob.PublicKey()))},
		},
		Sockets: []state.SocketIn{
			{SocketID: "s1", UserID: "u1", DNSName: "web.edge.localhost", Type: "http", LocalPorts: []int{10000, 10001}},
			{SocketID: "s2", UserID: "u2", DNSName: "bob.edge.localhost", Type: "http", LocalPorts: []int{10002}},
		}})
	reg := tunnels.NewRegistry(time.Second, time.Second, nil)
	srv := NewServer(holder, reg, signer(t), time.Second, 3)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { l.Close(); srv.CloseAll() })
	return &edge{addr: l.Addr().String(), reg: reg, alice: alice}
}

func (e *edge) dial(t *testing.T, user string, key ssh.Signer) (*ssh.Client, error) {
	t.Helper()
	return ssh.Dial("tcp", e.addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
}

func TestLogin(t *testing.T) {
	e := start(t)
	cases := []struct {
		name string
		user string
		key  ssh.Signer
		ok   bool
	}{
		{"the account's key", "alice", e.alice, true},
		{"another key", "alice", signer(t), false},
		{"another account's user name", "bob", e.alice, false},
		{"no such account", "carol", e.alice, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			client, err := e.dial(t, c.user, c.key)
			if (err == nil) != c.ok {
				t.Fatalf("login: %v, want ok %v", err, c.ok)
			}
			if client != nil {
				client.Close()
			}
		})
	}
}

func TestTCPIPForward(t *testing.T) {
	cases := []struct {
		name string
		port uint32
		ok   bool
	}{
		{"a tunnel of the account", 10000, true},
		{"another tunnel of the account", 10001, true},
		{"another account's tunnel", 10002, false},
		{"not a tunnel", 10003, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := start(t)
			client, err := e.dial(t, "alice", e.alice)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			ok, _, err := client.SendRequest("tcpip-forward", true, ssh.Marshal(forwardRequest{"127.0.0.1", c.port}))
			if err != nil || ok != c.ok {
				t.Fatalf("tcpip-forward %d: ok %v err %v, want ok %v", c.port, ok, err, c.ok)
			}
			// Requests are handled in order: once this one is answered, the forward is claimed.
			client.SendRequest("nothing@example.com", true, nil)
			f := e.reg.Get(int(c.port))
			if (f != nil) != c.ok {
				t.Fatalf("forward registered: %v, want %v", f != nil, c.ok)
			}
			if f != nil && (f.Session.UserName != "alice" || f.DNSName != "web.edge.localhost" || f.BindAddr != "127.0.0.1") {
				t.Fatalf("forward %+v", f)
			}
		})
	}
}

func TestShellBanner(t *testing.T) {
	cases := []struct {
		name  string
		ports []uint32
		want  []string
	}{
		{"serves nothing", nil, []string{
			"mysocketd edge: hello alice.",
			"This session serves no socket (no accepted -R forward).",
			"Nothing runs here; input is ignored. Type ~. to disconnect."}},
		{"serves two ports", []uint32{10001, 10000}, []string{
			"mysocketd edge: hello alice.",
			"This session serves:",
			"  web.edge.localhost  (local_port 10000)",
			"  web.edge.localhost  (local_port 10001)",
			"Nothing runs here; input is ignored. Type ~. to disconnect."}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := start(t)
			client, err := e.dial(t, "alice", e.alice)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			for _, p := range c.ports {
				client.SendRequest("tcpip-forward", true, ssh.Marshal(forwardRequest{"127.0.0.1", p}))
			}
			client.SendRequest("nothing@example.com", true, nil)
			sess, err := client.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			out, _ := sess.StdoutPipe()
			if err := sess.Shell(); err != nil {
				t.Fatal(err)
			}
			lines := bufio.NewScanner(out)
			for _, want := range c.want {
				if !lines.Scan() {
					t.Fatalf("banner ended before %q: %v", want, lines.Err())
				}
				if got := strings.TrimRight(lines.Text(), "\r"); got != want {
					t.Fatalf("banner line %q, want %q", got, want)
				}
			}
			other, err := client.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if err := other.Run("true"); err == nil {
				t.Fatal("exec was accepted: this edge runs no commands")
			}
		})
	}
}
