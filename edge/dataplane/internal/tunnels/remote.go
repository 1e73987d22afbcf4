package tunnels

// Tunnels held by other nodes, as candidates like any other.
//
// Why it is shaped this way: a socket's tunnel placed on another node (the
// state says which) is reached over the link to that node
// (internal/nodes): the candidate is a Forward whose "session" is the link,
// and opening it opens a relay channel instead of a forwarded-tcpip one. So
// round-robin, set-aside, the per-candidate open timeout and failover within
// a request need nothing new, and a relay that the far node refuses at once
// ("no forward of this port here") costs one round trip before the next
// candidate. Local and remote candidates share one round-robin turn, so the
// visitors of a name spread over all its tunnels whichever node they reach
// (a pool of clusters shares the load as it does on one node). The far node
// only ever opens its own forwards (OpenLocal): a request crosses one link at
// most. When a link goes down its candidates go with it and their channels
// are closed.

import (
	"fmt"
	"sort"
	"sync"

	"golang.org/x/crypto/ssh"

	"mysocketd/edge/dataplane/internal/nodes"
	"mysocketd/edge/dataplane/internal/state"
)

type remoteKey struct {
	link int64
	port int
}

type remotes struct {
	mu       sync.Mutex
	links    *nodes.Links
	self     string
	forwards map[remoteKey]*Forward
	sessions map[int64]*Session
}

func (m *remotes) init() {
	m.forwards = map[remoteKey]*Forward{}
	m.sessions = map[int64]*Session{}
}

// SetLinks lets the registry reach tunnels on the other nodes (self: this node's name).
func (r *Registry) SetLinks(links *nodes.Links, self string) {
	r.remote.mu.Lock()
	r.remote.links, r.remote.self = links, self
	r.remote.mu.Unlock()
	links.OnDown(r.DropLink)
}

// candidates: a Forward per tunnel of sock placed on another node with an up link and not
// held here, stable per (link, port) so its failures count across requests.
func (m *remotes) candidates(sock *state.Socket, held map[int]bool) []*Forward {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.links == nil {
		return nil
	}
	var out []*Forward
	for _, t := range sock.Tunnels {
		if held[t.LocalPort] || t.Node == "" || t.Node == m.self {
			continue
		}
		link := m.links.Get(t.Node)
		if link == nil {
			continue
		}
		key := remoteKey{link.ID, t.LocalPort}
		f := m.forwards[key]
		if f == nil {
			sess := m.sessions[link.ID]
			if sess == nil {
				sess = &Session{ID: -link.ID, Conn: link.Conn,
					UserName: "node " + link.Name, Peer: link.Name}
				m.sessions[link.ID] = sess
			}
			f = &Forward{Port: t.LocalPort, Session: sess, DNSName: sock.DNSName, remote: true,
				channels: map[*ChanConn]struct{}{}}
			m.forwards[key] = f
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out
}

// forget drops the remote candidates of port (its owner or node changed).
func (m *remotes) forget(port int) {
	m.mu.Lock()
	var gone []*Forward
	for k, f := range m.forwards {
		if k.port == port {
			gone = append(gone, f)
			delete(m.forwards, k)
		}
	}
	m.mu.Unlock()
	for _, f := range gone {
		f.retireChannels()
	}
}

// DropLink forgets the candidates reached over link and closes their channels (it is down).
func (r *Registry) DropLink(link *nodes.Link) {
	m := &r.remote
	m.mu.Lock()
	var gone []*Forward
	for k, f := range m.forwards {
		if k.link == link.ID {
			gone = append(gone, f)
			delete(m.forwards, k)
		}
	}
	delete(m.sessions, link.ID)
	m.mu.Unlock()
	for _, f := range gone {
		f.retireChannels()
	}
}

// retireChannels marks f gone and closes its channels.
func (f *Forward) retireChannels() {
	f.mu.Lock()
	f.removed = true
	chans := f.channels
	f.channels = map[*ChanConn]struct{}{}
	f.mu.Unlock()
	for c := range chans {
		c.Close()
	}
}

// OpenLocal opens a channel to this node's own forward of port, for a relay from another
// node (nodes.Local): never to another node's.
func (r *Registry) OpenLocal(port int, origin string) (ssh.Channel, error) {
	f := r.Get(port)
	if f == nil {
		return nil, fmt.Errorf("no forward of local_port %d on this node", port)
	}
	c, err, timedOut := f.open(origin, r.openLast)
	f.result(err, timedOut)
	if err != nil {
		return nil, err
	}
	return c, nil
}
