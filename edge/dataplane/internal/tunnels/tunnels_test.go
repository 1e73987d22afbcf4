package tunnels

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"mysocketd/edge/dataplane/internal/state"
)

func session(id int64, userID string) *Session {
	return &Session{ID: id, UserID: userID, UserName: "user-" + userID, Peer: "127.0.0.1:1", SuspectAfter: time.Second}
}

func forward(port int, s *Session) *Forward {
	return &Forward{Port: port, Session: s, DNSName: "web.edge.localhost", Since: time.Now()}
}

// TestClaim: newest session of the same account wins a port; another account never gets it.
func TestClaim(t *testing.T) {
	cases := []struct {
		name       string
		newUser    string
		oldServes  []int // other ports the old session also holds
		wantErr    bool
		wantHolder int64 // session id holding port 10000 afterwards
		wantIdle   []int64
	}{
		{"same account replaces, old session idle", "u1", nil, false, 2, []int64{1}},
		{"same account replaces, old session still serves", "u1", []int{10001}, false, 2, nil},
		{"another account is refused", "u2", nil, true, 1, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var idle []int64
			r := NewRegistry(time.Second, time.Second, func(s *Session) { idle = append(idle, s.ID) })
			old := session(1, "u1")
			if err := r.Claim(forward(10000, old)); err != nil {
				t.Fatal(err)
			}
			for _, p := range c.oldServes {
				if err := r.Claim(forward(p, old)); err != nil {
					t.Fatal(err)
				}
			}
			err := r.Claim(forward(10000, session(2, c.newUser)))
			if (err != nil) != c.wantErr {
				t.Fatalf("Claim: %v, want error %v", err, c.wantErr)
			}
			if got := r.Get(10000).Session.ID; got != c.wantHolder {
				t.Fatalf("port held by session %d, want %d", got, c.wantHolder)
			}
			if !slices.Equal(idle, c.wantIdle) {
				t.Fatalf("sessions found idle %v, want %v", idle, c.wantIdle)
			}
		})
	}
}

// closeConn is a client connection that only records Close (ssh.Conn's other methods unused).
type closeConn struct {
	ssh.Conn
	closed *bool
}

func (c closeConn) Close() error { *c.closed = true; return nil }

// TestFollow: a change of the state removes exactly the forwards it takes away, and ends the
// session of a forward whose tunnel moved to another node (no stale binding).
func TestFollow(t *testing.T) {
	cases := []struct {
		name   string
		from   string // the node 10000 was placed on before
		owners []state.SocketIn
		want   []int // ports still forwarded
		idle   bool  // the session was closed as idle
		ended  bool  // the session was ended (its tunnel moved)
	}{
		{"every port still a tunnel of its account", "a", []state.SocketIn{
			{SocketID: "s1", UserID: "u1", LocalPorts: []int{10000, 10001}}}, []int{10000, 10001}, false, false},
		{"a tunnel deleted", "a", []state.SocketIn{
			{SocketID: "s1", UserID: "u1", LocalPorts: []int{10001}}}, []int{10001}, false, false},
		{"a port now another account's", "a", []state.SocketIn{
			{SocketID: "s1", UserID: "u1", LocalPorts: []int{10001}},
			{SocketID: "s2", UserID: "u2", LocalPorts: []int{10000}}}, []int{10001}, false, false},
		{"nothing left", "a", nil, nil, true, false},
		{"a tunnel moved to another node", "a", []state.SocketIn{
			{SocketID: "s1", UserID: "u1", Tunnels: []state.TunnelIn{{LocalPort: 10000, Node: "b"}, {LocalPort: 10001, Node: "a"}}}},
			[]int{10001}, false, true},
		{"a tunnel placed elsewhere whose client came here stays", "c", []state.SocketIn{
			{SocketID: "s1", UserID: "u1", Tunnels: []state.TunnelIn{{LocalPort: 10000, Node: "c"}, {LocalPort: 10001, Node: "a"}}}},
			[]int{10000, 10001}, false, false},
		{"a tunnel recorded here stays", "c", []state.SocketIn{
			{SocketID: "s1", UserID: "u1", Tunnels: []state.TunnelIn{{LocalPort: 10000, Node: "a"}, {LocalPort: 10001, Node: "a"}}}},
			[]int{10000, 10001}, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			idle, ended := false, false
			r := NewRegistry(time.Second, time.Second, func(s *Session) { idle = true })
			h := state.NewHolder("a")
			h.Replace(state.StateIn{Version: 1, Sockets: []state.SocketIn{
				{SocketID: "s1", UserID: "u1", Tunnels: []state.TunnelIn{{LocalPort: 10000, Node: c.from}, {LocalPort: 10001, Node: "a"}}}}})
			s := session(1, "u1")
			s.Conn = closeConn{closed: &ended}
			r.Claim(forward(10000, s))
			r.Claim(forward(10001, s))
			changes, _ := h.Apply(state.DeltaIn{Version: 2, SocketsGone: []string{"s1"}, Sockets: c.owners})
			changes = append(changes, state.Change{Port: 10002}) // a port nobody forwards: nothing
			r.Follow(changes)
			var got []int
			for _, f := range r.All() {
				got = append(got, f.Port)
			}
			if !slices.Equal(got, c.want) || idle != c.idle || ended != c.ended {
				t.Fatalf("forwards %v idle %v ended %v, want %v %v %v", got, idle, ended, c.want, c.idle, c.ended)
			}
		})
	}
}

// TestEventsSayWhichForwardsCameUpAndWentDown: numbered, waited for, never repeated.
func TestEventsSayWhichForwardsCameUpAndWentDown(t *testing.T) {
	r := NewRegistry(time.Second, time.Second, nil)
	boot, next, evs := r.Events(0, 10*time.Millisecond)
	if next != 0 || len(evs) != 0 || boot == "" {
		t.Fatalf("empty: %s %d %v", boot, next, evs)
	}
	s := session(1, "u1")
	go func() {
		time.Sleep(20 * time.Millisecond)
		r.Claim(forward(10000, s))
	}()
	_, next, evs = r.Events(0, 5*time.Second) // waits for the claim
	if len(evs) != 1 || evs[0].Kind != "up" || evs[0].Port != 10000 || next != 1 {
		t.Fatalf("after claim: %d %v", next, evs)
	}
	r.DropSession(s)
	_, next, evs = r.Events(next, time.Second)
	if len(evs) != 1 || evs[0].Kind != "down" || next != 2 {
		t.Fatalf("after drop: %d %v", next, evs)
	}
}

func ports(fs []*Forward) []int {
	var out []int
	for _, f := range fs {
		out = append(out, f.Port)
	}
	return out
}

func TestCandidates(t *testing.T) {
	sock := &state.Socket{SocketIn: state.SocketIn{SocketID: "s1", UserID: "u1", LocalPorts: []int{10000, 10001, 10002, 10003}}}
	cases := []struct {
		name      string
		connected []int
		suspect   int // a port whose session stopped answering keepalives (0: none)
		failed    int // a port whose channel opens failed three times (0: none)
		want      [][]int
	}{
		{"none connected", nil, 0, 0, [][]int{nil, nil}},
		{"one", []int{10001}, 0, 0, [][]int{{10001}, {10001}}},
		{"round robin", []int{10000, 10001, 10002}, 0, 0,
			[][]int{{10001, 10002, 10000}, {10002, 10000, 10001}, {10000, 10001, 10002}}},
		{"suspect session last", []int{10000, 10001, 10002}, 10001, 0,
			[][]int{{10002, 10000, 10001}, {10002, 10000, 10001}, {10000, 10002, 10001}}},
		{"set aside after failures last", []int{10000, 10001}, 0, 10000,
			[][]int{{10001, 10000}, {10001, 10000}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewRegistry(time.Second, time.Second, nil)
			for _, p := range c.connected {
				s := session(int64(p), "u1")
				if p == c.suspect {
					s.KeepaliveSent(time.Now().Add(-2 * s.SuspectAfter))
				}
				f := forward(p, s)
				r.Claim(f)
				if p == c.failed {
					for range failuresBeforeAside {
						f.result(errors.New("connect refused"), false)
					}
				}
			}
			for i, want := range c.want {
				if got := ports(r.Candidates(sock)); !slices.Equal(got, want) {
					t.Fatalf("turn %d: candidates %v, want %v", i, got, want)
				}
			}
		})
	}
}

func TestSessionSuspect(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name     string
		sentAgo  time.Duration // -1: no keepalive pending
		answered bool
		want     bool
	}{
		{"nothing pending", -1, false, false},
		{"pending, within the interval", 500 * time.Millisecond, false, false},
		{"pending past the interval", 1500 * time.Millisecond, false, true},
		{"answered", 1500 * time.Millisecond, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := session(1, "u1")
			if c.sentAgo >= 0 {
				s.KeepaliveSent(now.Add(-c.sentAgo))
			}
			if c.answered {
				s.KeepaliveAnswered()
			}
			if got := s.Suspect(now); got != c.want {
				t.Fatalf("Suspect = %v, want %v", got, c.want)
			}
		})
	}
}

func TestOpenWithoutCandidatesIsNoTunnel(t *testing.T) {
	r := NewRegistry(time.Second, time.Second, nil)
	_, err := r.Open(nil, "192.0.2.1:4000")
	var nt *NoTunnel
	if !errors.As(err, &nt) || nt.Reason != "no tunnel of this socket is connected" {
		t.Fatalf("Open(no candidates): %v", err)
	}
}

// TestTurnsStayBounded: the round-robin turns never hold more sockets than
// their bound, however many sockets come and go, and a socket in use keeps its
// turn (its visitors keep going round).
func TestTurnsStayBounded(t *testing.T) {
	r := NewRegistry(time.Second, time.Second, nil)
	r.turns = newTurns(10)
	busy := &state.Socket{SocketIn: state.SocketIn{SocketID: "busy", UserID: "u1"}}
	r.Candidates(busy)
	turn, _ := r.turns.Get("busy")
	for i := range 1000 {
		r.Candidates(&state.Socket{SocketIn: state.SocketIn{SocketID: fmt.Sprint("s", i), UserID: "u1"}})
		r.Candidates(busy)
	}
	if n := r.turns.Len(); n > 10 {
		t.Fatalf("%d turns kept, bound 10", n)
	}
	if now, _ := r.turns.Get("busy"); now != turn {
		t.Fatal("the socket in use lost its turn")
	}
}

// TestFollowKeepsWhatARepushDidNotChange: a socket pushed again (here: one of its tunnels moved
// off a dead node) retires the candidates of the port that moved, never those of its other
// tunnels: a request being relayed to another node through one of them goes on.
func TestFollowKeepsWhatARepushDidNotChange(t *testing.T) {
	h := state.NewHolder("a")
	h.Replace(state.StateIn{Version: 1, Sockets: []state.SocketIn{{SocketID: "s1", UserID: "u1",
		Tunnels: []state.TunnelIn{{LocalPort: 10000, Node: "dead"}, {LocalPort: 10001, Node: "c"}}}}})
	r := NewRegistry(time.Second, time.Second, nil)
	far := &Forward{Port: 10001, remote: true, channels: map[*ChanConn]struct{}{}}
	moved := &Forward{Port: 10000, remote: true, channels: map[*ChanConn]struct{}{}}
	r.remote.forwards[remoteKey{link: 7, port: 10001}] = far
	r.remote.forwards[remoteKey{link: 8, port: 10000}] = moved
	changes, _ := h.Apply(state.DeltaIn{Version: 2, Sockets: []state.SocketIn{{SocketID: "s1", UserID: "u1",
		Tunnels: []state.TunnelIn{{LocalPort: 10000, Node: "b"}, {LocalPort: 10001, Node: "c"}}}}})
	r.Follow(changes)
	if far.removed || r.remote.forwards[remoteKey{link: 7, port: 10001}] != far {
		t.Fatal("the candidate of a tunnel that did not change was retired")
	}
	if !moved.removed || r.remote.forwards[remoteKey{link: 8, port: 10000}] != nil {
		t.Fatal("the candidate of the tunnel that moved was kept")
	}
}
