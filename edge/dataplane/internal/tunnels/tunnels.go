// Package tunnels answers "which live tunnel takes this connection": the
// reverse forwards that SSH sessions hold, and how a request picks one.
//
// Why it is shaped this way:
//   - A tunnel's local_port is only a number: nothing binds it. An accepted
//     tcpip-forward is recorded here and public connections go back over the
//     SSH connection as forwarded-tcpip channels, as sshd would do for a
//     connection to a bound port, but without a port on the host.
//   - Newest session wins: a forward for a port that another session of the
//     SAME account holds replaces it at once (a client that reconnects after
//     a silent death never waits for a keepalive window); the old session is
//     closed when it serves nothing any more. Another account never gets the
//     port (ownership is checked before claim is called).
//   - Requests spread round-robin over a socket's forwards. A channel that
//     cannot be opened (the client is gone or frozen, or its target refuses)
//     costs nothing but time: the next forward is tried, because nothing was
//     sent upstream yet. While another forward is left to try, a forward gets
//     OpenTimeout (about a second) to answer, so a frozen session never holds
//     a request longer. A forward that keeps failing is set aside for a while.
//   - Every channel is remembered with its forward, so removing a forward
//     (newest wins, tunnel deleted, /_admin/forget-forward) also ends its
//     pooled and open channels: nothing keeps using a forward that is gone.
//   - No stale binding: a forward whose tunnel was moved to another node ends
//     its whole SSH session (OpenSSH learns of nothing less), so the client
//     reconnects at once to where the tunnel is now (remote.go).
//   - Each session knows its own forwards and a change of the state names the
//     ports it touched (Follow), so removing forwards costs what is removed,
//     never a scan of every forward.
package tunnels

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/crypto/ssh"

	"mysocketd/edge/dataplane/internal/logx"
	"mysocketd/edge/dataplane/internal/metrics"
	"mysocketd/edge/dataplane/internal/nodes"
	"mysocketd/edge/dataplane/internal/state"
)

const (
	failuresBeforeAside = 3
	asideFor            = 10 * time.Second
	// A tunnel on another node that refused is set aside for less: its refusal costs one round
	// trip, and its client may be connecting there right now (a tunnel just moved).
	remoteAsideFor = time.Second
)

func (f *Forward) asidePeriod() time.Duration {
	if f.remote {
		return remoteAsideFor
	}
	return asideFor
}

// Session is one logged-in SSH connection (the sshd package makes them).
type Session struct {
	ID           int64
	Conn         ssh.Conn // the client's connection, or the link to another node (remote.go)
	UserID       string
	UserName     string
	Peer         string
	SuspectAfter time.Duration // a keepalive unanswered this long makes the session suspect

	pendingSince atomic.Int64          // when the unanswered keepalive was sent; 0: none
	forwards     map[*Forward]struct{} // guarded by the Registry's mu
}

// KeepaliveSent records that a keepalive went out at now and is unanswered.
func (s *Session) KeepaliveSent(now time.Time) { s.pendingSince.Store(now.UnixNano()) }

// KeepaliveAnswered records that the client answered the keepalive.
func (s *Session) KeepaliveAnswered() { s.pendingSince.Store(0) }

// Suspect: a keepalive has been unanswered for longer than SuspectAfter.
func (s *Session) Suspect(now time.Time) bool {
	p := s.pendingSince.Load()
	return p != 0 && now.Sub(time.Unix(0, p)) > s.SuspectAfter
}

// Forward is one accepted tcpip-forward: a tunnel port served by a session.
type Forward struct {
	Port     int
	BindAddr string // as the client sent it; echoed when opening channels
	Session  *Session
	DNSName  string
	SocketID string // the socket whose tunnel this is (its metrics' socket_id)
	Since    time.Time

	mu         sync.Mutex
	channels   map[*ChanConn]struct{}
	failures   int
	asideUntil time.Time
	removed    bool
	remote     bool // a forward held by another node, reached over the link (remote.go)
}

// NoTunnel: no forward of the socket could take the connection.
type NoTunnel struct{ Reason string }

func (e *NoTunnel) Error() string { return e.Reason }

// Registry holds every live forward, by port.
type Registry struct {
	mu            sync.Mutex
	byPort        map[int]*Forward
	remote        remotes
	events        events
	turns         *lru.Cache[string, *atomic.Uint64] // round-robin turn per socket id: bounded (turnsKept)
	openFirst     time.Duration                      // channel-open wait while other forwards remain
	openLast      time.Duration                      // channel-open wait for the last candidate
	onSessionIdle func(*Session)
	Metrics       *metrics.Edge // forwards up and down are counted here (nil: not counted)
}

// turnsKept bounds the round-robin turns: the sockets used least recently lose
// theirs when more are in use (their next visitor starts a new round, which
// costs nothing), so sockets that come and go never pile up, and no delta
// needs to say which socket went.
const turnsKept = 1 << 16

func newTurns(n int) *lru.Cache[string, *atomic.Uint64] {
	c, err := lru.New[string, *atomic.Uint64](n)
	if err != nil {
		panic(err) // only for n <= 0
	}
	return c
}

// NewRegistry: onIdle is called with a session that serves no forward any more.
func NewRegistry(openFirst, openLast time.Duration, onIdle func(*Session)) *Registry {
	r := &Registry{byPort: map[int]*Forward{}, turns: newTurns(turnsKept),
		openFirst: openFirst, openLast: openLast, onSessionIdle: onIdle}
	r.remote.init()
	r.events.init()
	return r
}

// Claim registers f, replacing a forward of the same account on the same port.
func (r *Registry) Claim(f *Forward) error {
	f.channels = map[*ChanConn]struct{}{}
	r.mu.Lock()
	old := r.byPort[f.Port]
	if old != nil && old.Session.UserID != f.Session.UserID {
		r.mu.Unlock()
		return errors.New("port held by another account")
	}
	r.byPort[f.Port] = f
	r.own(f)
	if old != nil {
		r.disown(old)
	}
	r.mu.Unlock()
	r.events.add("up", f.Port)
	r.Metrics.TunnelUp(f.SocketID)
	if old != nil {
		r.Metrics.TunnelDown(old.SocketID)
		logx.Printf("forward replaced (newest session wins): local_port=%d user=%s old_peer=%s new_peer=%s",
			f.Port, f.Session.UserName, old.Session.Peer, f.Session.Peer)
		r.retire(old, true)
	}
	logx.Printf("forward up: local_port=%d user=%s socket=%s", f.Port, f.Session.UserName, f.DNSName)
	return nil
}

// own and disown keep a session's own set of forwards (r.mu held).
func (r *Registry) own(f *Forward) {
	if f.Session.forwards == nil {
		f.Session.forwards = map[*Forward]struct{}{}
	}
	f.Session.forwards[f] = struct{}{}
}

func (r *Registry) disown(f *Forward) {
	delete(f.Session.forwards, f)
}

// Remove forgets f if it is still the port's forward; true when it was.
// closeIdle: also close f's session if it serves nothing any more.
func (r *Registry) Remove(f *Forward, closeIdle bool) bool {
	r.mu.Lock()
	cur := r.byPort[f.Port]
	if cur != f {
		r.mu.Unlock()
		return false
	}
	delete(r.byPort, f.Port)
	r.disown(f)
	r.mu.Unlock()
	r.events.add("down", f.Port)
	r.Metrics.TunnelDown(f.SocketID)
	logx.Printf("forward down: local_port=%d user=%s socket=%s", f.Port, f.Session.UserName, f.DNSName)
	r.retire(f, closeIdle)
	return true
}

// retire ends f's channels and closes its session if that serves nothing now.
func (r *Registry) retire(f *Forward, closeIdle bool) {
	f.mu.Lock()
	f.removed = true
	chans := f.channels
	f.channels = map[*ChanConn]struct{}{}
	f.mu.Unlock()
	for c := range chans {
		c.Close()
	}
	if closeIdle && len(r.OfSession(f.Session)) == 0 && r.onSessionIdle != nil {
		r.onSessionIdle(f.Session)
	}
}

// Get returns the port's forward, or nil.
func (r *Registry) Get(port int) *Forward {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byPort[port]
}

// All returns every forward, by port.
func (r *Registry) All() []*Forward {
	r.mu.Lock()
	out := make([]*Forward, 0, len(r.byPort))
	for _, f := range r.byPort {
		out = append(out, f)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out
}

// BySocket counts the live forwards here by socket id (the tunnels gauge, read at scrape time).
func (r *Registry) BySocket() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, f := range r.byPort {
		out[f.SocketID]++
	}
	return out
}

// HeldPorts lists the ports with a forward here (what the other nodes ask over the link).
func (r *Registry) HeldPorts() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int, 0, len(r.byPort))
	for p := range r.byPort {
		out = append(out, p)
	}
	return out
}

// OfSession returns the forwards s serves, by port.
func (r *Registry) OfSession(s *Session) []*Forward {
	r.mu.Lock()
	out := make([]*Forward, 0, len(s.forwards))
	for f := range s.forwards {
		out = append(out, f)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out
}

// DropSession removes every forward of s without closing it (it is ending).
func (r *Registry) DropSession(s *Session) {
	r.mu.Lock()
	var gone []*Forward
	for f := range s.forwards {
		if r.byPort[f.Port] == f {
			delete(r.byPort, f.Port)
		}
		gone = append(gone, f)
	}
	s.forwards = nil
	r.mu.Unlock()
	for _, f := range gone {
		r.events.add("down", f.Port)
		r.Metrics.TunnelDown(f.SocketID)
		logx.Printf("forward down: local_port=%d user=%s socket=%s", f.Port, f.Session.UserName, f.DNSName)
		f.mu.Lock()
		f.removed = true
		chans := f.channels
		f.channels = nil
		f.mu.Unlock()
		for c := range chans {
			c.Close()
		}
	}
}

// Follow applies what a change of the state did to tunnel ports (state.Change): a forward
// whose tunnel is gone or now another account's is removed (its session closed if it serves
// nothing else); one whose tunnel was moved to another node ends its whole session, so the
// client reconnects to where the tunnel is now. A port whose socket was only pushed again
// (a tunnel added beside it, a new route table) keeps its forwards and the channels open on
// them, here and on the other nodes. Costs the changed ports, not the total.
func (r *Registry) Follow(changes []state.Change) {
	for _, c := range changes {
		if c.Same {
			continue
		}
		r.remote.forget(c.Port)
		f := r.Get(c.Port)
		if f == nil {
			continue
		}
		switch {
		case c.Owner == nil || c.Owner.UserID != f.Session.UserID:
			r.Remove(f, true)
		case c.Moved:
			if r.Remove(f, false) {
				logx.Printf("ending the SSH session of %s (%s): local_port=%d was moved to node %s",
					f.Session.UserName, f.Session.Peer, f.Port, c.Owner.NodeOf(f.Port))
				f.Session.Conn.Close()
			}
		}
	}
}

// Candidates: the socket's live forwards here and its tunnels held by other nodes (remote.go),
// in one round-robin order (visitors spread over every tunnel of the name, as with one node),
// set-aside ones last.
func (r *Registry) Candidates(sock *state.Socket) []*Forward {
	r.mu.Lock()
	var live []*Forward
	held := map[int]bool{}
	for _, p := range sock.LocalPorts {
		if f := r.byPort[p]; f != nil {
			live = append(live, f)
			held[p] = true
		}
	}
	turn, ok := r.turns.Get(sock.SocketID)
	if !ok {
		turn = &atomic.Uint64{}
		r.turns.Add(sock.SocketID, turn)
	}
	r.mu.Unlock()
	far := r.remote.candidates(sock, held)
	if len(live) == 0 && len(far) == 0 {
		return nil
	}
	all := append(live, far...) // one turn over every tunnel of the name, wherever it is held
	start := int(turn.Add(1) % uint64(len(all)))
	now := time.Now()
	ordered := make([]*Forward, 0, len(all))
	var aside []*Forward
	for _, group := range [][]*Forward{all} {
		for i := range group {
			f := group[(start+i)%len(group)]
			if f.IsAside(now) {
				aside = append(aside, f)
			} else {
				ordered = append(ordered, f)
			}
		}
	}
	return append(ordered, aside...)
}

// IsAside: failed repeatedly, or its session stopped answering keepalives.
func (f *Forward) IsAside(now time.Time) bool {
	if f.Session.Suspect(now) {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return now.Before(f.asideUntil)
}

func (f *Forward) result(err error, timedOut bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		f.failures = 0
		f.asideUntil = time.Time{}
		return
	}
	f.failures++
	if timedOut || f.failures >= failuresBeforeAside {
		if !time.Now().Before(f.asideUntil) {
			logx.Printf("tunnel local_port=%d set aside for %s after %d failed channel opens",
				f.Port, f.asidePeriod(), f.failures)
		}
		f.asideUntil = time.Now().Add(f.asidePeriod())
	}
}

type forwardedTCPIP struct {
	Addr       string
	Port       uint32
	OriginAddr string
	OriginPort uint32
}

// Open a channel on one of cands, trying the next while nothing was sent.
func (r *Registry) Open(cands []*Forward, origin string) (*ChanConn, error) {
	if len(cands) == 0 {
		return nil, &NoTunnel{"no tunnel of this socket is connected"}
	}
	var reasons []string
	for i, f := range cands {
		wait := r.openFirst
		if i == len(cands)-1 {
			wait = r.openLast
		}
		c, err, timedOut := f.open(origin, wait)
		f.result(err, timedOut)
		if err == nil {
			return c, nil
		}
		logx.Printf("tunnel local_port=%d could not open a channel: %v", f.Port, err)
		reasons = append(reasons, err.Error())
	}
	return nil, &NoTunnel{"tunnel could not reach its target: " + strings.Join(reasons, "; ")}
}

func (f *Forward) open(origin string, wait time.Duration) (*ChanConn, error, bool) {
	host, portText, _ := net.SplitHostPort(origin)
	var oport int
	fmt.Sscanf(portText, "%d", &oport)
	payload := ssh.Marshal(forwardedTCPIP{f.BindAddr, uint32(f.Port), host, uint32(oport)})
	type opened struct {
		ch   ssh.Channel
		reqs <-chan *ssh.Request
		err  error
	}
	done := make(chan opened, 1)
	go func() {
		kind := "forwarded-tcpip"
		if f.remote {
			kind = nodes.ChannelType // the node at the other end opens its forward of the port
		}
		ch, reqs, err := f.Session.Conn.OpenChannel(kind, payload)
		done <- opened{ch, reqs, err}
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case o := <-done:
		if o.err != nil {
			var oce *ssh.OpenChannelError
			if errors.As(o.err, &oce) {
				return nil, fmt.Errorf("%s", strings.TrimSpace(oce.Message+" ("+oce.Reason.String()+")")), false
			}
			return nil, o.err, false
		}
		go ssh.DiscardRequests(o.reqs)
		c := newChanConn(o.ch, f)
		f.mu.Lock()
		if f.removed {
			f.mu.Unlock()
			o.ch.Close()
			return nil, errors.New("the forward went away"), false
		}
		f.channels[c] = struct{}{}
		f.mu.Unlock()
		return c, nil, false
	case <-timer.C:
		go func() { // the late answer, if it ever comes, is closed
			if o := <-done; o.err == nil {
				o.ch.Close()
			}
		}()
		return nil, fmt.Errorf("no answer within %s", wait), true
	}
}
