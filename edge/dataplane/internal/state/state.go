// Package state answers "what did the control plane tell us": the edge's
// configuration as the Python control plane pushes it (accounts, sockets,
// their tunnels and the node each is placed on, limits, the live nodes).
//
// Why it is shaped this way: the REST API, the database, quotas and
// registration stay in Python; this process only needs to know, at any
// instant, which accounts exist (user_name, key), which sockets exist (name,
// type, auth) and which tunnel ports belong to which socket and node. Python
// pushes the whole picture once (PUT /state, Replace) and then only what
// changed (PATCH /state, Apply), and waits for the answer before it answers
// its own client, so an ssh -R made right after a POST /connect always finds
// its tunnel. A change costs the same with 10 sockets or 10,000: the indexes
// are maps updated in place under a read-write lock (lookups take the read
// side, a few nanoseconds), never rebuilt. A version number makes a late,
// older push harmless. Records are immutable once published: a reader that
// holds a *Socket keeps a consistent one while a change replaces it.
package state

import (
	"encoding/json"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"mysocketd/edge/dataplane/internal/logx"
	"mysocketd/edge/dataplane/internal/routes"
)

// UserIn is one account as pushed: its user_name logs in with its sshkey.
type UserIn struct {
	UserID   string `json:"user_id"`
	UserName string `json:"user_name"`
	SSHKey   string `json:"sshkey"`
}

// TunnelIn is one tunnel of a socket: its port, the node it is placed on ("": this one), and the
// backend of the socket's route table it serves ("": the socket's plain tunnels).
type TunnelIn struct {
	LocalPort int    `json:"local_port"`
	Node      string `json:"node"`
	Backend   string `json:"backend,omitempty"`
}

// SocketIn is one socket as pushed, with its tunnels.
type SocketIn struct {
	SocketID          string     `json:"socket_id"`
	UserID            string     `json:"user_id"`
	DNSName           string     `json:"dnsname"`
	Type              string     `json:"socket_type"`
	TCPPort           int        `json:"tcp_port"`
	Protected         bool       `json:"protected_socket"`
	ProtectedUsername string     `json:"protected_username"`
	PasswordHash      string     `json:"protected_password_hash"`
	CloudAuth         bool       `json:"cloud_authentication_enabled"`
	AllowedAddresses  []string   `json:"allowed_addresses"` // cloud auth: these e-mail addresses...
	AllowedDomains    []string   `json:"allowed_domains"`   // ...and every address of these domains
	UpstreamProtocol  string     `json:"upstream_protocol"` // "h2c", or "" for HTTP/1.1
	LocalPorts        []int      `json:"local_ports"`
	Tunnels           []TunnelIn `json:"tunnels"`
	// Routes is the socket's route table (edge/README.md, "Route tables"); absent: every request
	// goes to the socket's tunnels as before.
	Routes json.RawMessage `json:"routes,omitempty"`
	// Address is an address of the edge's own that is this socket's alone (a Gateway's): every
	// connection to it is this socket's, whatever its Host or SNI ("": none).
	Address string `json:"address,omitempty"`
	// Hostnames are the socket's custom names outside the zone that its account proved it controls
	// (edge/hostnames.py): the control plane pushes only verified ones, so these route, pass
	// through by SNI and get certificates exactly as DNSName does.
	Hostnames []string `json:"hostnames,omitempty"`
}

// Limits are the per-account and per-visitor limits the data plane enforces (0: none).
type Limits struct {
	SessionsPerAccount    int     `json:"sessions_per_account"`
	ConnectionsPerAccount int     `json:"connections_per_account"`
	AuthFailuresPerMinute float64 `json:"auth_failures_per_minute"`
}

// StateIn is the whole picture of one PUT /state.
type StateIn struct {
	Version int64      `json:"version"`
	Users   []UserIn   `json:"users"`
	Sockets []SocketIn `json:"sockets"`
	Limits  Limits     `json:"limits"`
}

// DeltaIn is what one PATCH /state changes: records put whole, ids gone.
type DeltaIn struct {
	Version     int64      `json:"version"`
	Users       []UserIn   `json:"users"`
	UsersGone   []string   `json:"users_gone"`
	Sockets     []SocketIn `json:"sockets"`
	SocketsGone []string   `json:"sockets_gone"`
}

// User is an account that can log in (Key nil: its key did not parse, it cannot).
type User struct {
	UserID   string
	UserName string
	Key      ssh.PublicKey
}

// Socket is a socket as the fronts and the tunnels look it up.
type Socket struct {
	SocketIn
	// Routes is the compiled route table, nil when the socket has none. RoutesErr says why a
	// pushed table could not be compiled (the API checks tables first, so only a data plane
	// older than its control plane sees one): the socket then answers 500 rather than guess.
	Routes    *routes.Compiled
	RoutesErr error
	groups    map[string]*Socket
}

// Group is the view of the socket that holds only the tunnels of one backend of its route
// table (nil: the table names no such backend). The view has its own SocketID (`<id>#<backend>`),
// so the tunnels' round-robin turns are per backend, and is made once per pushed socket.
func (s *Socket) Group(backend string) *Socket {
	return s.groups[backend]
}

// NodeOf is the node the tunnel of port is placed on ("" when none is said).
func (s *Socket) NodeOf(port int) string {
	for _, t := range s.Tunnels {
		if t.LocalPort == port {
			return t.Node
		}
	}
	return ""
}

// Change is what Replace or Apply did to one tunnel port, for the tunnels to follow.
type Change struct {
	Port  int
	Owner *Socket // the socket that has the port now; nil: no tunnel has it any more
	Moved bool    // its node changed to another node than this one
	Same  bool    // the same socket, account and node as before: only its socket was pushed again
}

// Holder holds the current picture; lookups take the read lock only.
type Holder struct {
	mu        sync.RWMutex
	version   int64
	self      string
	users     map[string]*User   // by user_name
	nameOf    map[string]string  // user_id -> user_name
	sockets   map[string]*Socket // by socket_id
	byDNS     map[string]*Socket
	byTCPPort map[int]*Socket
	byAddress map[string]*Socket
	portOwner map[int]*Socket // tunnel local_port -> its socket
	limits    Limits
}

// NewHolder is an empty picture (version 0) of the node named self ("": one node).
func NewHolder(self string) *Holder {
	h := &Holder{self: self}
	h.reset()
	return h
}

func (h *Holder) reset() {
	h.users, h.nameOf = map[string]*User{}, map[string]string{}
	h.sockets, h.byDNS = map[string]*Socket{}, map[string]*Socket{}
	h.byTCPPort, h.portOwner = map[int]*Socket{}, map[int]*Socket{}
	h.byAddress = map[string]*Socket{}
}

// Self is this node's name.
func (h *Holder) Self() string { return h.self }

// Version is the version of the last push applied.
func (h *Holder) Version() int64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.version
}

// User is the account that logs in as name, or nil.
func (h *Holder) User(name string) *User {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.users[name]
}

// AccountIDs lists every account pushed.
func (h *Holder) AccountIDs() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return slices.Collect(maps.Keys(h.nameOf))
}

// HasSocket: a socket with this id exists.
func (h *Holder) HasSocket(id string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.sockets[id] != nil
}

// ByDNS is the socket named host (as HostOnly gives it), or nil.
func (h *Holder) ByDNS(host string) *Socket {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.byDNS[host]
}

// ByTCPPort is the tcp socket of a public port, or nil.
func (h *Holder) ByTCPPort(port int) *Socket {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.byTCPPort[port]
}

// ByAddress is the socket whose own address is ip (as net.SplitHostPort gives it), or nil.
func (h *Holder) ByAddress(ip string) *Socket {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.byAddress[ip]
}

// PortOwner is the socket whose tunnel has local_port port, or nil.
func (h *Holder) PortOwner(port int) *Socket {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.portOwner[port]
}

// Limits are the limits of the last full push.
func (h *Holder) Limits() Limits {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.limits
}

// Replace sets the whole picture unless a newer version is in place; the ports whose owner
// or node changed (ok false: it was older and nothing changed).
func (h *Holder) Replace(in StateIn) ([]Change, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if in.Version < h.version {
		return nil, false
	}
	old := h.portOwner
	h.version, h.limits = in.Version, in.Limits
	h.reset()
	for _, u := range in.Users {
		h.putUser(u)
	}
	for i := range in.Sockets {
		h.putSocket(newSocket(in.Sockets[i]))
	}
	var changes []Change
	for port, was := range old {
		if now := h.portOwner[port]; now != was {
			changes = append(changes, h.change(port, was, now))
		}
	}
	for port, now := range h.portOwner {
		if old[port] == nil {
			changes = append(changes, h.change(port, nil, now))
		}
	}
	return changes, true
}

// Apply changes what d says, in place; the ports whose owner or node changed.
func (h *Holder) Apply(d DeltaIn) ([]Change, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d.Version < h.version {
		return nil, false
	}
	h.version = d.Version
	for _, id := range d.UsersGone {
		delete(h.users, h.nameOf[id])
		delete(h.nameOf, id)
	}
	for _, u := range d.Users {
		h.putUser(u)
	}
	before := map[int]*Socket{} // each touched port's socket before this delta (nil: none)
	touch := func(sock *Socket) {
		for _, t := range sock.Tunnels {
			if _, seen := before[t.LocalPort]; !seen {
				before[t.LocalPort] = h.portOwner[t.LocalPort]
			}
		}
	}
	swap := func(was, now *Socket) {
		if was != nil {
			touch(was)
			for _, t := range was.Tunnels {
				if h.portOwner[t.LocalPort] == was {
					delete(h.portOwner, t.LocalPort)
				}
			}
			h.dropSocket(was)
		}
		if now != nil {
			touch(now)
			h.putSocket(now)
		}
	}
	for _, id := range d.SocketsGone {
		if was := h.sockets[id]; was != nil {
			swap(was, nil)
		}
	}
	for i := range d.Sockets {
		now := newSocket(d.Sockets[i])
		swap(h.sockets[now.SocketID], now)
	}
	changes := make([]Change, 0, len(before))
	for port, was := range before {
		changes = append(changes, h.change(port, was, h.portOwner[port]))
	}
	return changes, true
}

// change says what happened to port between was and now (its sockets before and after).
func (h *Holder) change(port int, was, now *Socket) Change {
	c := Change{Port: port, Owner: now}
	if now != nil && was != nil {
		after := now.NodeOf(port)
		c.Moved = after != was.NodeOf(port) && after != "" && after != h.self
		c.Same = now.SocketID == was.SocketID && now.UserID == was.UserID && after == was.NodeOf(port)
	}
	return c
}

func newSocket(in SocketIn) *Socket {
	sock := &Socket{SocketIn: in}
	if len(sock.Tunnels) == 0 { // a client of the older shape sends local_ports only
		for _, p := range sock.LocalPorts {
			sock.Tunnels = append(sock.Tunnels, TunnelIn{LocalPort: p})
		}
	}
	sock.LocalPorts = make([]int, len(sock.Tunnels))
	for i, t := range sock.Tunnels {
		sock.LocalPorts[i] = t.LocalPort
	}
	if len(in.Routes) > 0 && string(in.Routes) != "null" {
		sock.compileRoutes()
	}
	return sock
}

// Fallback is a view of the socket with the tunnels of these backends (nil: none named, or none
// of them in the table): where a request goes when its own backend's tunnels cannot take it.
// Its SocketID names the set, so its round-robin turn is its own. Only the backends whose app
// speaks protocol (the request's own backend's: "h2c" or "") are in it, since the request's
// transport is chosen by it.
func (s *Socket) Fallback(backends []string, protocol string) *Socket {
	if len(backends) == 0 || s.groups == nil {
		return nil
	}
	v := &Socket{SocketIn: s.SocketIn}
	v.SocketID = s.SocketID + "#fallback#" + protocol + "#" + strings.Join(backends, ",")
	v.Tunnels, v.LocalPorts = nil, nil
	v.UpstreamProtocol = protocol
	for _, b := range backends {
		if g := s.groups[b]; g != nil && g.UpstreamProtocol == protocol {
			v.Tunnels = append(v.Tunnels, g.Tunnels...)
			v.LocalPorts = append(v.LocalPorts, g.LocalPorts...)
		}
	}
	return v
}

// compileRoutes compiles the pushed table and makes one group view per backend it names.
func (s *Socket) compileRoutes() {
	var t routes.Table
	err := json.Unmarshal(s.SocketIn.Routes, &t)
	if err == nil {
		s.Routes, err = routes.Compile(t)
	}
	if err != nil {
		s.Routes, s.RoutesErr = nil, err
		logx.Printf("socket %s: route table refused: %v", s.DNSName, err)
		return
	}
	s.groups = map[string]*Socket{}
	for _, b := range s.Routes.Backends() {
		g := &Socket{SocketIn: s.SocketIn}
		g.SocketID = s.SocketID + "#" + b
		g.Tunnels, g.LocalPorts = nil, nil
		g.UpstreamProtocol = s.Routes.UpstreamProtocol(b) // the backend's app's, not the Gateway socket's
		for _, t := range s.Tunnels {
			if t.Backend == b {
				g.Tunnels = append(g.Tunnels, t)
				g.LocalPorts = append(g.LocalPorts, t.LocalPort)
			}
		}
		s.groups[b] = g
	}
}

func (h *Holder) putUser(u UserIn) {
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(u.SSHKey))
	if err != nil {
		key = nil // an account whose key cannot be parsed simply cannot log in
	}
	if old, ok := h.nameOf[u.UserID]; ok && old != u.UserName {
		delete(h.users, old)
	}
	h.users[u.UserName] = &User{UserID: u.UserID, UserName: u.UserName, Key: key}
	h.nameOf[u.UserID] = u.UserName
}

func (h *Holder) putSocket(sock *Socket) {
	h.sockets[sock.SocketID] = sock
	h.byDNS[strings.ToLower(sock.DNSName)] = sock
	for _, name := range sock.Hostnames {
		h.byDNS[strings.ToLower(name)] = sock
	}
	if sock.TCPPort != 0 {
		h.byTCPPort[sock.TCPPort] = sock
	}
	if sock.Address != "" {
		h.byAddress[sock.Address] = sock
	}
	for _, t := range sock.Tunnels {
		h.portOwner[t.LocalPort] = sock
	}
}

func (h *Holder) dropSocket(sock *Socket) {
	delete(h.sockets, sock.SocketID)
	if h.byDNS[strings.ToLower(sock.DNSName)] == sock {
		delete(h.byDNS, strings.ToLower(sock.DNSName))
	}
	for _, name := range sock.Hostnames {
		if h.byDNS[strings.ToLower(name)] == sock {
			delete(h.byDNS, strings.ToLower(name))
		}
	}
	if sock.TCPPort != 0 && h.byTCPPort[sock.TCPPort] == sock {
		delete(h.byTCPPort, sock.TCPPort)
	}
	if sock.Address != "" && h.byAddress[sock.Address] == sock {
		delete(h.byAddress, sock.Address)
	}
}

// HostOnly is the name a Host header or an SNI asks for, as ByDNS keys it:
// without port, lower case, without the trailing dot.
func HostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}
