package front

// The splice: a visitor's raw connection (tcp sockets, tls passthrough)
// carried to a tunnel byte for byte, within the account's connection quota
// and the visitor's share of it, and ended after SpliceIdleTimeout with no
// byte either way (see bounds.go).

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"mysocketd/edge/dataplane/internal/logx"
	"mysocketd/edge/dataplane/internal/state"
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
	splice(c, ch, sh.Bounds.SpliceIdleTimeout)
}

// splice copies both ways with half-closes until both directions ended, or
// until idle passes with no byte either way (idle <= 0: never).
func splice(a, b net.Conn, idle time.Duration) {
	touch := func() {}
	if idle > 0 {
		watch := watchIdle(idle, func() { a.Close(); b.Close() })
		defer watch.stop()
		touch = watch.touch
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		copyTouching(b, a, touch)
		closeWrite(b)
	}()
	go func() {
		defer wg.Done()
		copyTouching(a, b, touch)
		closeWrite(a)
	}()
	wg.Wait()
	b.Close()
	a.Close()
}

// copyTouching copies src to dst until EOF or an error, touching as bytes move.
func copyTouching(dst, src net.Conn, touch func()) {
	buf := spliceBuffers.Get().(*[]byte)
	defer spliceBuffers.Put(buf)
	for {
		n, err := src.Read(*buf)
		touch()
		if n > 0 {
			if _, werr := dst.Write((*buf)[:n]); werr != nil {
				return
			}
			touch()
		}
		if err != nil {
			return
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		c.Close()
	}
}

var spliceBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
