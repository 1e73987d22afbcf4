// Package state answers "what did the control plane tell us": the edge's
// configuration as the Python control plane pushes it (accounts, sockets,
// tunnel ports, limits), kept as one immutable Snapshot.
//
// Why it is shaped this way: the REST API, the database, quotas and
// registration stay in Python; this process only needs to know, at any
// instant, which accounts exist (user_name, key), which sockets exist (name,
// type, auth) and which tunnel ports belong to which socket. Python pushes the
// whole picture after every change (PUT /state on the control socket) and
// waits for the answer before it answers its own client, so an ssh -R made
// right after a POST /connect always finds its tunnel. A version number makes
// a late, older push harmless. Lookups read one immutable snapshot through an
// atomic pointer: no lock on the request path.
package state

import (
	"net"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
)

// UserIn is one account as pushed: its user_name logs in with its sshkey.
type UserIn struct {
	UserID   string `json:"user_id"`
	UserName string `json:"user_name"`
	SSHKey   string `json:"sshkey"`
}

// SocketIn is one socket as pushed, with the local_ports of its tunnels.
type SocketIn struct {
	SocketID          string `json:"socket_id"`
	UserID            string `json:"user_id"`
	DNSName           string `json:"dnsname"`
	Type              string `json:"socket_type"`
	TCPPort           int    `json:"tcp_port"`
	Protected         bool   `json:"protected_socket"`
	ProtectedUsername string `json:"protected_username"`
	PasswordHash      string `json:"protected_password_hash"`
	CloudAuth         bool   `json:"cloud_authentication_enabled"`
	LocalPorts        []int  `json:"local_ports"`
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

// User is an account that can log in (Key nil: its key did not parse, it cannot).
type User struct {
	UserID   string
	UserName string
	Key      ssh.PublicKey
}

// Socket is a socket as the fronts and the tunnels look it up.
type Socket struct {
	SocketIn
}

// Snapshot is immutable once published.
type Snapshot struct {
	Version     int64
	UsersByName map[string]*User
	ByDNS       map[string]*Socket
	ByTCPPort   map[int]*Socket
	PortOwner   map[int]*Socket // tunnel local_port -> its socket
	Limits      Limits
}

// NewSnapshot builds the lookups of one pushed state.
func NewSnapshot(in StateIn) *Snapshot {
	s := &Snapshot{Version: in.Version, UsersByName: map[string]*User{},
		ByDNS: map[string]*Socket{}, ByTCPPort: map[int]*Socket{},
		PortOwner: map[int]*Socket{}, Limits: in.Limits}
	for _, u := range in.Users {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(u.SSHKey))
		if err != nil {
			key = nil // an account whose key cannot be parsed simply cannot log in
		}
		s.UsersByName[u.UserName] = &User{UserID: u.UserID, UserName: u.UserName, Key: key}
	}
	for i := range in.Sockets {
		sock := &Socket{in.Sockets[i]}
		s.ByDNS[strings.ToLower(sock.DNSName)] = sock
		if sock.TCPPort != 0 {
			s.ByTCPPort[sock.TCPPort] = sock
		}
		for _, p := range sock.LocalPorts {
			s.PortOwner[p] = sock
		}
	}
	return s
}

// Holder holds the current Snapshot; readers never lock.
type Holder struct{ p atomic.Pointer[Snapshot] }

// Get returns the current snapshot (nil before the first Set).
func (h *Holder) Get() *Snapshot { return h.p.Load() }

// Set publishes s unless a newer version is already in place; reports whether it did.
func (h *Holder) Set(s *Snapshot) bool {
	for {
		old := h.p.Load()
		if old != nil && old.Version > s.Version {
			return false
		}
		if h.p.CompareAndSwap(old, s) {
			return true
		}
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
