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
	"mysocketd/edge/dataplane/internal/metrics"
	"mysocketd/edge/dataplane/internal/state"
)

// refusals keeps a flood of refused connections to one log line a second.
var refusals = rate.NewLimiter(1, 1)

// spliceToSocket carries a visitor's connection (front: tcp, tls) to one of the
// socket's tunnels, and closes it.
func (sh Shared) spliceToSocket(c net.Conn, sock *state.Socket, front string) {
	defer c.Close()
	sh.Metrics.Connection(sock.SocketID, front)
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
	in, out := sh.Metrics.Traffic(sock.SocketID)
	spliceCounted(c, ch, sh.Bounds.SpliceIdleTimeout, in, out)
}

// splice copies both ways with half-closes until both directions ended, or
// until idle passes with no byte either way (idle <= 0: never).
func splice(a, b net.Conn, idle time.Duration) {
	spliceCounted(a, b, idle, metrics.Counter{}, metrics.Counter{})
}

// spliceCounted is splice counting the bytes from a to b in ab, from b to a in ba.
func spliceCounted(a, b net.Conn, idle time.Duration, ab, ba metrics.Counter) {
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
		copyTouching(b, a, touch, ab)
		closeWrite(b)
	}()
	go func() {
		defer wg.Done()
		copyTouching(a, b, touch, ba)
		closeWrite(a)
	}()
	wg.Wait()
	b.Close()
	a.Close()
}

// copyTouching copies src to dst until EOF or an error, touching as bytes move.
func copyTouching(dst, src net.Conn, touch func(), counted metrics.Counter) {
	buf := spliceBuffers.Get().(*[]byte)
	defer spliceBuffers.Put(buf)
	for {
		n, err := src.Read(*buf)
		touch()
		if n > 0 {
			w, werr := dst.Write((*buf)[:n])
			counted.Add(w)
			if werr != nil {
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
