// Package nodes is the link between the edge's nodes: an authenticated,
// encrypted SSH connection to every other live node, over which a visitor
// connection that reached this node is carried to a node that holds one of
// its socket's tunnels.
//
// Why it is shaped this way:
//   - SSH (golang.org/x/crypto/ssh, already the data plane's SSH server) gives
//     encryption, mutual authentication, keepalives and, above all, channels:
//     one channel per visitor connection, opened in one round trip on a
//     connection that is already up, with flow control per channel. A remote
//     tunnel is then just another candidate that yields an ssh.Channel, the
//     same type a local forward yields, so failover within a request works
//     across nodes as within one (edge/README.md has the figures against a
//     direct request).
//   - Both ends prove they belong to the edge twice: with the edge's SSH host
//     key, which every node shares through the store (the client key must be
//     it, and so must the server's host key), and with the cluster secret
//     (a file the operator gives every node, never in the store), asked as a
//     second factor once the key was accepted. A stolen database alone
//     therefore opens no link.
//   - Every node dials every other live node (Update), and serves the links
//     the others dial to it (Serve). A node uses its own outgoing link to
//     relay; an incoming link only answers relays. A link that stops answering
//     keepalives is closed and dialled again, so a dead node costs its
//     candidates, never a hang.
//   - The relay channel ("relay@mysocketd") carries the same payload as a
//     forwarded-tcpip channel (the tunnel's port, the visitor's address); the
//     node that holds the forward opens it there (Local) and splices the two
//     channels. It never relays further: no loops.
package nodes

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// ChannelType is the channel a node opens on a link to reach a forward on the other end.
const ChannelType = "relay@mysocketd"

// HeldRequest asks the node at the other end which tunnel ports it holds a forward of (the
// answer: the ports, JSON), so the API says on every node which tunnels are connected.
const HeldRequest = "held@mysocketd"

// Local opens a channel to the forward of port held on this node (nil error: opened).
type Local interface {
	OpenLocal(port int, origin string) (ssh.Channel, error)
}

// Config is what a node needs to link with the others.
type Config struct {
	Name      string     // this node's name (the SSH user it dials as)
	HostKey   ssh.Signer // the edge's shared host key
	Secret    []byte     // the cluster secret
	Local     Local
	Held      func() []int  // the tunnel ports with a forward on this node (HeldRequest)
	Keepalive time.Duration // between keepalives on a link; 0: 1 s
	Count     int           // unanswered keepalives before a link is closed; 0: 3
	Logf      func(format string, args ...any)
}

// Peer is another live node: its name and its link address (host:port).
type Peer struct {
	Name string `json:"name"`
	Addr string `json:"link"`
}

// Link is an up, outgoing connection to a peer.
type Link struct {
	Name string
	ID   int64 // unique per connection, so a redialled link is a new one
	Conn ssh.Conn
	done chan struct{}
}

// Done is closed when the link is down.
func (l *Link) Done() <-chan struct{} { return l.done }

// Links holds this node's links to the live peers.
type Links struct {
	cfg    Config
	server *ssh.ServerConfig
	nextID atomic.Int64

	mu      sync.Mutex
	peers   map[string]*dialer // by name
	up      map[string]*Link
	onDown  []func(*Link)
	closing bool
	inbound map[ssh.Conn]struct{}
}

type dialer struct {
	peer Peer
	stop chan struct{}
}

// New makes the links of a node; Serve and Update start them.
func New(cfg Config) *Links {
	if cfg.Keepalive == 0 {
		cfg.Keepalive = time.Second
	}
	if cfg.Count == 0 {
		cfg.Count = 3
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	l := &Links{cfg: cfg, peers: map[string]*dialer{}, up: map[string]*Link{}, inbound: map[ssh.Conn]struct{}{}}
	edgeKey := cfg.HostKey.PublicKey().Marshal()
	l.server = &ssh.ServerConfig{
		ServerVersion: "SSH-2.0-mysocketd_edge_link",
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if subtle.ConstantTimeCompare(key.Marshal(), edgeKey) != 1 {
				return nil, errors.New("not the edge's key")
			}
			return nil, &ssh.PartialSuccessError{Next: ssh.ServerAuthCallbacks{
				PasswordCallback: func(meta ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
					if subtle.ConstantTimeCompare(password, cfg.Secret) != 1 {
						return nil, errors.New("wrong cluster secret")
					}
					return &ssh.Permissions{}, nil
				}}}
		},
	}
	l.server.AddHostKey(cfg.HostKey)
	return l
}

// OnDown registers f, called once for every link that goes down.
func (l *Links) OnDown(f func(*Link)) {
	l.mu.Lock()
	l.onDown = append(l.onDown, f)
	l.mu.Unlock()
}

// Get is the up link to the node name, if any.
func (l *Links) Get(name string) *Link {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up[name]
}

// Up lists the names of the peers with an up link, sorted.
func (l *Links) Up() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.up))
	for n := range l.up {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Update sets the live peers: links to new ones are dialled, links to gone ones closed.
func (l *Links) Update(peers []Peer) {
	want := map[string]Peer{}
	for _, p := range peers {
		if p.Name != l.cfg.Name && p.Addr != "" {
			want[p.Name] = p
		}
	}
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return
	}
	var stop []*dialer
	for name, d := range l.peers {
		if p, ok := want[name]; !ok || p.Addr != d.peer.Addr {
			stop = append(stop, d)
			delete(l.peers, name)
		}
	}
	for name, p := range want {
		if _, ok := l.peers[name]; !ok {
			d := &dialer{peer: p, stop: make(chan struct{})}
			l.peers[name] = d
			go l.dialLoop(d)
		}
	}
	l.mu.Unlock()
	for _, d := range stop {
		close(d.stop)
	}
}

// Close ends every link and stops dialling.
func (l *Links) Close() {
	l.mu.Lock()
	l.closing = true
	peers := l.peers
	l.peers = map[string]*dialer{}
	var conns []ssh.Conn
	for c := range l.inbound {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, d := range peers {
		close(d.stop)
	}
	for _, c := range conns {
		c.Close()
	}
}

func (l *Links) dialLoop(d *dialer) {
	delay := 100 * time.Millisecond
	for {
		select {
		case <-d.stop:
			return
		default:
		}
		err := l.dialOnce(d)
		select {
		case <-d.stop:
			return
		case <-time.After(delay):
		}
		if err != nil {
			delay = min(delay*2, 2*time.Second)
		} else {
			delay = 100 * time.Millisecond
		}
	}
}

// dialOnce connects to the peer and holds the link until it ends.
func (l *Links) dialOnce(d *dialer) error {
	cfg := &ssh.ClientConfig{
		User:            l.cfg.Name,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(l.cfg.HostKey), ssh.Password(string(l.cfg.Secret))},
		HostKeyCallback: ssh.FixedHostKey(l.cfg.HostKey.PublicKey()),
		ClientVersion:   "SSH-2.0-mysocketd_edge_link",
		Timeout:         3 * time.Second,
	}
	tcp, err := net.DialTimeout("tcp", d.peer.Addr, 3*time.Second)
	if err != nil {
		return err
	}
	if tc, ok := tcp.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	tcp.SetDeadline(time.Now().Add(5 * time.Second))
	conn, chans, reqs, err := ssh.NewClientConn(tcp, d.peer.Addr, cfg)
	if err != nil {
		tcp.Close()
		l.cfg.Logf("link to %s (%s) refused: %v", d.peer.Name, d.peer.Addr, err)
		return err
	}
	tcp.SetDeadline(time.Time{})
	go ssh.DiscardRequests(reqs)
	go rejectAll(chans)
	link := &Link{Name: d.peer.Name, ID: l.nextID.Add(1), Conn: conn, done: make(chan struct{})}
	l.mu.Lock()
	l.up[link.Name] = link
	l.mu.Unlock()
	l.cfg.Logf("link up: %s (%s)", link.Name, d.peer.Addr)
	go func() {
		<-d.stop
		conn.Close()
	}()
	stopKeep := make(chan struct{})
	go l.keepalive(conn, stopKeep)
	err = conn.Wait()
	close(stopKeep)
	l.mu.Lock()
	if l.up[link.Name] == link {
		delete(l.up, link.Name)
	}
	callbacks := append([]func(*Link){}, l.onDown...)
	l.mu.Unlock()
	close(link.done)
	l.cfg.Logf("link down: %s (%v)", link.Name, err)
	for _, f := range callbacks {
		f(link)
	}
	return nil
}

// keepalive closes conn when the peer leaves Count keepalives unanswered (a frozen node).
func (l *Links) keepalive(conn ssh.Conn, stop <-chan struct{}) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var inFlight atomic.Bool
	t := time.NewTicker(l.cfg.Keepalive)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, last.Load())) > time.Duration(l.cfg.Count)*l.cfg.Keepalive {
			conn.Close()
			return
		}
		if inFlight.Swap(true) {
			continue
		}
		go func() {
			if _, _, err := conn.SendRequest("keepalive@openssh.com", true, nil); err == nil {
				last.Store(time.Now().UnixNano())
			}
			inFlight.Store(false)
		}()
	}
}

func rejectAll(chans <-chan ssh.NewChannel) {
	for nc := range chans {
		nc.Reject(ssh.Prohibited, "this end of the link only opens relays")
	}
}

// Serve accepts links dialled by the other nodes and answers their relays.
func (l *Links) Serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go l.serveOne(c)
	}
}

func (l *Links) serveOne(c net.Conn) {
	nc := c
	if u, ok := c.(interface{ NetConn() net.Conn }); ok { // under a capped listener (limits.Listener)
		nc = u.NetConn()
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	conn, chans, reqs, err := ssh.NewServerConn(c, l.server)
	if pre, ok := c.(interface{ Release() }); ok {
		pre.Release() // logged in or not, no longer a pre-auth connection
	}
	if err != nil {
		l.cfg.Logf("link from %s refused: %v", c.RemoteAddr(), err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		conn.Close()
		return
	}
	l.inbound[conn] = struct{}{}
	l.mu.Unlock()
	go l.answer(reqs)
	stop := make(chan struct{})
	go l.keepalive(conn, stop)
	for nc := range chans {
		if nc.ChannelType() != ChannelType {
			nc.Reject(ssh.UnknownChannelType, "only relays")
			continue
		}
		go l.relay(nc)
	}
	close(stop)
	l.mu.Lock()
	delete(l.inbound, conn)
	l.mu.Unlock()
	conn.Close()
}

// answer replies to a peer's requests on its link: which ports this node holds; keepalives.
func (l *Links) answer(reqs <-chan *ssh.Request) {
	for req := range reqs {
		if req.Type == HeldRequest && l.cfg.Held != nil {
			body, _ := json.Marshal(l.cfg.Held())
			req.Reply(true, body)
			continue
		}
		if req.WantReply {
			req.Reply(req.Type == "keepalive@openssh.com", nil)
		}
	}
}

// Held asks every up link which ports its node holds a forward of (nodes that do not answer
// within wait are left out): node name -> ports.
func (l *Links) Held(wait time.Duration) map[string][]int {
	l.mu.Lock()
	links := make([]*Link, 0, len(l.up))
	for _, link := range l.up {
		links = append(links, link)
	}
	l.mu.Unlock()
	type answer struct {
		name  string
		ports []int
	}
	answers := make(chan answer, len(links))
	for _, link := range links {
		go func() {
			ok, body, err := link.Conn.SendRequest(HeldRequest, true, nil)
			var ports []int
			if err != nil || !ok || json.Unmarshal(body, &ports) != nil {
				answers <- answer{}
				return
			}
			answers <- answer{link.Name, ports}
		}()
	}
	out := map[string][]int{}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for range links {
		select {
		case a := <-answers:
			if a.name != "" {
				out[a.name] = a.ports
			}
		case <-timer.C:
			return out
		}
	}
	return out
}

// RelayPayload is what a relay channel carries: the tunnel's port and the visitor's address
// (the layout of a forwarded-tcpip channel's payload).
type RelayPayload struct {
	Addr       string
	Port       uint32
	OriginAddr string
	OriginPort uint32
}

// relay opens the local forward a peer asked for and splices the two channels.
func (l *Links) relay(nc ssh.NewChannel) {
	var p RelayPayload
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		nc.Reject(ssh.ConnectionFailed, "bad relay request")
		return
	}
	origin := net.JoinHostPort(p.OriginAddr, fmt.Sprint(p.OriginPort))
	up, err := l.cfg.Local.OpenLocal(int(p.Port), origin)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	down, reqs, err := nc.Accept()
	if err != nil {
		up.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	Splice(down, up)
}

// Splice copies both ways until both directions ended, then closes both.
func Splice(a, b ssh.Channel) {
	var wg sync.WaitGroup
	wg.Add(2)
	one := func(dst, src ssh.Channel) {
		defer wg.Done()
		io.Copy(dst, src)
		dst.CloseWrite()
	}
	go one(a, b)
	go one(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}
