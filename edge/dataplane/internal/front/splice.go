package front

// The splice: a visitor's raw connection (tcp sockets, tls passthrough)
// carried to a tunnel byte for byte, within the account's connection quota
// and the visitor's share of it.

import (
	"io"
	"net"
	"sync"

	"golang.org/x/time/rate"

	"mysocketd/edge/dataplane/internal/logx"
	"mysocketd/edge/dataplane/internal/state"
	"mysocketd/edge/dataplane/internal/tunnels"
)

// refusals keeps a flood of refused connections to one log line a second.
var refusals = rate.NewLimiter(1, 1)

// spliceToSocket carries a visitor's connection (tcp, tls) to one of the
// socket's tunnels, and closes it.
func (sh Shared) spliceToSocket(c net.Conn, sock *state.Socket) {
	defer c.Close()
	release, refused := sh.hold(sock, c.RemoteAddr().String())
	if refused != nil {
		if refusals.Allow() {
			logx.Printf("%s: connection from %s refused: %s", sock.DNSName, c.RemoteAddr(), refused.text)
		}
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
