// Package sshd answers "who may log in and forward what": the SSH server
// that accepts reverse tunnels (golang.org/x/crypto/ssh).
//
// Why it is shaped this way:
//   - The user name is the account's user_name; the only credential is the
//     public key registered with it. No passwords, no keyboard-interactive.
//   - tcpip-forward is granted only for a local_port of the account's own
//     tunnels; everything else is refused and logged, so
//     `ssh -o ExitOnForwardFailure=yes` exits, as against a real sshd.
//   - The server sends its own keepalive every KeepaliveInterval and closes a
//     session that leaves KeepaliveCount of them unanswered: a client that
//     died without FIN or RST (a frozen node) loses its forwards within a few
//     seconds instead of a TCP timeout.
//   - Clients that do not pass -N get a session that accepts a PTY and a
//     shell, prints which sockets it serves and then runs nothing; exec and
//     subsystems are refused; direct-tcpip (ssh -L) is refused.
//   - Per-account session quota: one account cannot hold the server's memory.
package sshd

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"mysocketd/edge/dataplane/internal/logx"
	"mysocketd/edge/dataplane/internal/state"
	"mysocketd/edge/dataplane/internal/tunnels"
)

// Server is the SSH server; Serve accepts its connections.
type Server struct {
	HandshakeTimeout time.Duration // from the connection until logged in

	state    *state.Holder
	reg      *tunnels.Registry
	config   *ssh.ServerConfig
	interval time.Duration
	count    int
	nextID   atomic.Int64
	mu       sync.Mutex
	sessions map[*tunnels.Session]struct{}
	perUser  map[string]int
}

// NewServer: a keepalive goes out every interval; a session that leaves count
// of them unanswered is closed.
func NewServer(holder *state.Holder, reg *tunnels.Registry, hostKey ssh.Signer, interval time.Duration, count int) *Server {
	s := &Server{HandshakeTimeout: 10 * time.Second, state: holder, reg: reg, interval: interval, count: count,
		sessions: map[*tunnels.Session]struct{}{}, perUser: map[string]int{}}
	s.config = &ssh.ServerConfig{
		PublicKeyCallback: s.checkKey,
		ServerVersion:     "SSH-2.0-mysocketd_edge",
		MaxAuthTries:      6,
	}
	s.config.AddHostKey(hostKey)
	return s
}

func (s *Server) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	user := s.state.User(meta.User())
	if user != nil && user.Key != nil && bytes.Equal(user.Key.Marshal(), key.Marshal()) {
		return &ssh.Permissions{Extensions: map[string]string{"user_id": user.UserID}}, nil
	}
	logx.Printf("SSH key refused: user=%s peer=%s key=%s", meta.User(), meta.RemoteAddr(), ssh.FingerprintSHA256(key))
	return nil, fmt.Errorf("key refused")
}

// Serve accepts until l is closed. l is a limits.Listener that caps the
// connections not logged in yet, per address and in total, and waits out
// EMFILE; each connection's slot is given back once its handshake is over.
func (s *Server) Serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if !logx.IsClosed(err) {
				logx.Printf("ssh: accept: %v", err)
			}
			return
		}
		go s.handle(c)
	}
}

// CloseAll ends every session (/_admin/drop-ssh, shutdown); returns how many.
func (s *Server) CloseAll() int {
	s.mu.Lock()
	var all []*tunnels.Session
	for sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.Unlock()
	for _, sess := range all {
		sess.Conn.Close()
	}
	return len(all)
}

func (s *Server) handle(c net.Conn) {
	if tc, ok := netConn(c).(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAlive(true)
	}
	if s.HandshakeTimeout > 0 {
		c.SetDeadline(time.Now().Add(s.HandshakeTimeout)) // login must finish in time
	}
	conn, chans, reqs, err := ssh.NewServerConn(c, s.config)
	if pre, ok := c.(interface{ Release() }); ok {
		pre.Release() // logged in or not, it is no longer a pre-auth connection
	}
	if err != nil {
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	user := s.state.User(conn.User())
	limits := s.state.Limits()
	sess := &tunnels.Session{ID: s.nextID.Add(1), Conn: conn, UserID: conn.Permissions.Extensions["user_id"],
		UserName: conn.User(), Peer: c.RemoteAddr().String(), SuspectAfter: s.interval}
	done := make(chan struct{})
	defer close(done)
	if user == nil || !s.admit(sess, limits.SessionsPerAccount) {
		logx.Printf("SSH session refused: user=%s peer=%s: too many sessions for this account (quota %d)",
			sess.UserName, sess.Peer, limits.SessionsPerAccount)
		conn.Close()
		return
	}
	logx.Printf("SSH login: user=%s peer=%s", sess.UserName, sess.Peer)
	go s.keepalive(sess, done)
	go s.channels(sess, chans)
	s.requests(sess, reqs) // returns when the connection ends
	s.reg.DropSession(sess)
	s.mu.Lock()
	delete(s.sessions, sess)
	s.perUser[sess.UserID]--
	if s.perUser[sess.UserID] <= 0 {
		delete(s.perUser, sess.UserID)
	}
	s.mu.Unlock()
	conn.Close()
	logx.Printf("SSH session ended: user=%s peer=%s", sess.UserName, sess.Peer)
}

// SessionsByAccount counts the SSH sessions each account has here (its quota use, for metrics).
func (s *Server) SessionsByAccount() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.perUser)
}

func (s *Server) admit(sess *tunnels.Session, quota int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if quota > 0 && s.perUser[sess.UserID] >= quota {
		return false
	}
	s.perUser[sess.UserID]++
	s.sessions[sess] = struct{}{}
	return true
}

// keepalive closes the session when the client stops answering. A keepalive
// unanswered for one interval already makes the session suspect: new requests
// go to other tunnels first (see Registry.Candidates) while it may still recover.
func (s *Server) keepalive(sess *tunnels.Session, done <-chan struct{}) {
	var lastAnswer atomic.Int64
	lastAnswer.Store(time.Now().UnixNano())
	ticker := time.NewTicker(s.interval)
	defer ticker.Stop()
	var inFlight atomic.Bool
	for {
		select {
		case <-done:
			return
		case <-ticker.C:
		}
		if time.Since(time.Unix(0, lastAnswer.Load())) > time.Duration(s.count)*s.interval {
			logx.Printf("SSH session of %s (%s) stopped answering keepalives: closing it", sess.UserName, sess.Peer)
			sess.Conn.Close()
			return
		}
		if inFlight.Swap(true) {
			continue // the last one is still unanswered
		}
		go func() {
			sess.KeepaliveSent(time.Now())
			_, _, err := sess.Conn.SendRequest("keepalive@openssh.com", true, nil)
			inFlight.Store(false)
			if err == nil {
				sess.KeepaliveAnswered()
				lastAnswer.Store(time.Now().UnixNano())
			}
		}()
	}
}

type forwardRequest struct {
	Addr string
	Port uint32
}

func (s *Server) requests(sess *tunnels.Session, reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch req.Type {
		case "tcpip-forward":
			// The reply goes out before the forward is usable, so the client
			// never sees a forwarded-tcpip channel for a port it does not know yet.
			f := s.forward(sess, req.Payload)
			req.Reply(f != nil, nil)
			if f != nil {
				if err := s.reg.Claim(f); err != nil {
					logx.Printf("forward refused: user=%s port=%d: %v", sess.UserName, f.Port, err)
				}
			}
		case "cancel-tcpip-forward":
			var fr forwardRequest
			if ssh.Unmarshal(req.Payload, &fr) == nil {
				if f := s.reg.Get(int(fr.Port)); f != nil && f.Session == sess {
					s.reg.Remove(f, false)
				}
			}
			req.Reply(true, nil)
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

// forward checks a tcpip-forward request: the Forward to claim, or nil.
func (s *Server) forward(sess *tunnels.Session, payload []byte) *tunnels.Forward {
	var fr forwardRequest
	if err := ssh.Unmarshal(payload, &fr); err != nil {
		return nil
	}
	port := int(fr.Port)
	owner := s.state.PortOwner(port)
	if owner == nil || owner.UserID != sess.UserID {
		logx.Printf("forward refused: user=%s port=%d: not a tunnel of this account", sess.UserName, port)
		return nil
	}
	return &tunnels.Forward{Port: port, BindAddr: fr.Addr, Session: sess, DNSName: owner.DNSName,
		SocketID: owner.SocketID, Since: time.Now()}
}

func (s *Server) channels(sess *tunnels.Session, chans <-chan ssh.NewChannel) {
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.Prohibited, "this edge only accepts remote forwards (-R) and a shell that runs nothing")
			continue
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go s.shell(sess, ch, reqs)
	}
}

// shell: a banner, then silence until the client leaves; input is discarded.
func (s *Server) shell(sess *tunnels.Session, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := ch.Read(buf); err != nil {
				return
			}
		}
	}()
	newline := "\n"
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			newline = "\r\n"
			req.Reply(true, nil)
		case "shell":
			req.Reply(true, nil)
			ch.Write([]byte(strings.Join(s.banner(sess), newline) + newline))
		case "exec", "subsystem":
			logx.Printf("%s refused: user=%s (this edge runs no commands)", req.Type, sess.UserName)
			req.Reply(false, nil)
		case "env", "window-change", "signal", "break":
			if req.WantReply {
				req.Reply(true, nil)
			}
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

func (s *Server) banner(sess *tunnels.Session) []string {
	lines := []string{fmt.Sprintf("mysocketd edge: hello %s.", sess.UserName)}
	fwds := s.reg.OfSession(sess)
	sort.Slice(fwds, func(i, j int) bool { return fwds[i].Port < fwds[j].Port })
	if len(fwds) == 0 {
		lines = append(lines, "This session serves no socket (no accepted -R forward).")
	} else {
		lines = append(lines, "This session serves:")
		for _, f := range fwds {
			lines = append(lines, fmt.Sprintf("  %s  (local_port %d)", f.DNSName, f.Port))
		}
	}
	return append(lines, "Nothing runs here; input is ignored. Type ~. to disconnect.")
}

// netConn is the accepted connection under a limits.Conn (for TCP options).
func netConn(c net.Conn) net.Conn {
	if u, ok := c.(interface{ NetConn() net.Conn }); ok {
		return u.NetConn()
	}
	return c
}
