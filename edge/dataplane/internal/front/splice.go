package front

// The splice: a visitor's raw connection (tcp sockets, tls passthrough)
// carried to a tunnel byte for byte.

import (
	"io"
	"net"
	"sync"

	"mysocketd/edge/dataplane/internal/logx"
	"mysocketd/edge/dataplane/internal/state"
	"mysocketd/edge/dataplane/internal/tunnels"
)

// spliceToSocket carries a visitor's connection (tcp, tls) to one of the
// socket's tunnels, within the account's connection quota, and closes it.
func (sh Shared) spliceToSocket(c net.Conn, sock *state.Socket, limits state.Limits) {
	defer c.Close()
	release, ok := sh.Conns.Acquire(sock.UserID, limits.ConnectionsPerAccount)
	if !ok {
		logx.Printf("%s: connection refused: the account holds its quota of %d connections",
			sock.DNSName, limits.ConnectionsPerAccount)
		return
	}
	defer release()
	ch, err := sh.Tunnels.Open(sh.Tunnels.Candidates(sock), c.RemoteAddr().String())
	if err != nil {
		logx.Printf("%s socket %s: %v", sock.Type, sock.DNSName, err)
		return
	}
	splice(c, ch)
}

// splice copies both ways with half-closes until both directions ended.
func splice(a net.Conn, b *tunnels.ChanConn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(b, a)
		b.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		io.Copy(a, b)
		if tc, ok := a.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		} else {
			a.Close()
		}
	}()
	wg.Wait()
	b.Close()
	a.Close()
}
