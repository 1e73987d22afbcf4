package front

// Public ports of `tcp` sockets: one listener per socket, spliced to its tunnels.
//
// The Python control plane decides which port a socket gets; binding here IS
// the allocation (POST /tcp/open answers only once the port is bound, so a
// port another process holds is never promised), and the listener lives
// until POST /tcp/close. A connection's socket is looked up by the port it
// arrived on at accept time, so one racing a deletion is simply closed.

import (
	"fmt"
	"net"
	"sync"

	"mysocketd/edge/dataplane/internal/limits"
	"mysocketd/edge/dataplane/internal/logx"
)

// TCP holds the public ports of tcp sockets.
type TCP struct {
	Shared
	listen   string
	visitors *limits.Counts // open connections per visitor, with the other fronts
	perVisit int
	mu       sync.Mutex
	open     map[int]net.Listener
}

// NewTCP: the ports listen on the address listen; a visitor holds at most
// perVisitor connections open across the fronts that share visitors.
func NewTCP(sh Shared, listen string, visitors *limits.Counts, perVisitor int) *TCP {
	return &TCP{Shared: sh, listen: listen, visitors: visitors, perVisit: perVisitor, open: map[int]net.Listener{}}
}

// Open listens on port (0: any) for a tcp socket; returns the port bound.
func (t *TCP) Open(port int) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(t.listen, fmt.Sprint(port)))
	if err != nil {
		return 0, err
	}
	port = l.Addr().(*net.TCPAddr).Port
	l = limits.NewListener(l, fmt.Sprintf("tcp port %d", port), t.visitors, t.perVisit, 0)
	t.mu.Lock()
	if old := t.open[port]; old != nil {
		old.Close()
	}
	t.open[port] = l
	t.mu.Unlock()
	go t.serve(l, port)
	return port, nil
}

// Close stops listening on port.
func (t *TCP) Close(port int) {
	t.mu.Lock()
	l := t.open[port]
	delete(t.open, port)
	t.mu.Unlock()
	if l != nil {
		l.Close()
		logx.Printf("tcp port %d closed", port)
	}
}

// CloseAll stops listening on every port (shutdown).
func (t *TCP) CloseAll() {
	t.mu.Lock()
	ports := make([]int, 0, len(t.open))
	for p := range t.open {
		ports = append(ports, p)
	}
	t.mu.Unlock()
	for _, p := range ports {
		t.Close(p)
	}
}

// serve accepts until l is closed (l waits out EMFILE itself: no spinning).
func (t *TCP) serve(l net.Listener, port int) {
	for {
		c, err := l.Accept()
		if err != nil {
			if !logx.IsClosed(err) {
				logx.Printf("tcp port %d: accept: %v", port, err)
			}
			return
		}
		go t.handle(c, port)
	}
}

func (t *TCP) handle(c net.Conn, port int) {
	sock := t.State.ByTCPPort(port)
	if sock == nil {
		c.Close()
		return
	}
	t.spliceToSocket(c, sock, "tcp")
}
