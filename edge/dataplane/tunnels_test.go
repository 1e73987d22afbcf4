package main

import (
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func session(id int64, userID string) *Session {
	return &Session{ID: id, UserID: userID, UserName: "user-" + userID, Peer: "127.0.0.1:1", suspectAfter: time.Second}
}

func forward(port int, s *Session) *Forward {
	return &Forward{Port: port, Session: s, DNSName: "web.edge.localhost", Since: time.Now()}
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
		owners []SocketIn
		want   []int // ports still forwarded
		idle   bool  // the session was closed as idle
		ended  bool  // the session was ended (its tunnel moved)
	}{
		{"every port still a tunnel of its account", "a", []SocketIn{
			{SocketID: "s1", UserID: "u1", LocalPorts: []int{10000, 10001}}}, []int{10000, 10001}, false, false},
		{"a tunnel deleted", "a", []SocketIn{
			{SocketID: "s1", UserID: "u1", LocalPorts: []int{10001}}}, []int{10001}, false, false},
		{"a port now another account's", "a", []SocketIn{
			{SocketID: "s1", UserID: "u1", LocalPorts: []int{10001}},
			{SocketID: "s2", UserID: "u2", LocalPorts: []int{10000}}}, []int{10001}, false, false},
		{"nothing left", "a", nil, nil, true, false},
		{"a tunnel moved to another node", "a", []SocketIn{
			{SocketID: "s1", UserID: "u1", Tunnels: []TunnelIn{{LocalPort: 10000, Node: "b"}, {LocalPort: 10001, Node: "a"}}}},
			[]int{10001}, false, true},
		{"a tunnel placed elsewhere whose client came here stays", "c", []SocketIn{
			{SocketID: "s1", UserID: "u1", Tunnels: []TunnelIn{{LocalPort: 10000, Node: "c"}, {LocalPort: 10001, Node: "a"}}}},
			[]int{10000, 10001}, false, false},
		{"a tunnel recorded here stays", "c", []SocketIn{
			{SocketID: "s1", UserID: "u1", Tunnels: []TunnelIn{{LocalPort: 10000, Node: "a"}, {LocalPort: 10001, Node: "a"}}}},
			[]int{10000, 10001}, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			idle, ended := false, false
			r := NewRegistry(time.Second, time.Second, func(s *Session) { idle = true })
			h := NewStateHolder("a")
			h.Replace(StateIn{Version: 1, Sockets: []SocketIn{
				{SocketID: "s1", UserID: "u1", Tunnels: []TunnelIn{{LocalPort: 10000, Node: c.from}, {LocalPort: 10001, Node: "a"}}}}})
			s := session(1, "u1")
			s.Conn = closeConn{closed: &ended}
			r.Claim(forward(10000, s))
			r.Claim(forward(10001, s))
			changes, _ := h.Apply(DeltaIn{Version: 2, SocketsGone: []string{"s1"}, Sockets: c.owners})
			changes = append(changes, Change{Port: 10002}) // a port nobody forwards: nothing
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
