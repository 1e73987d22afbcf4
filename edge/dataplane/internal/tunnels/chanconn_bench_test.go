package tunnels

import (
	"io"
	"testing"
)

// BenchmarkChanConnBulk: what the deadline machinery costs a bulk transfer,
// against the bare channel (b.SetBytes: MB/s in the output).
func BenchmarkChanConnBulk(b *testing.B) {
	for _, bare := range []bool{true, false} {
		name := "ChanConn"
		if bare {
			name = "bare channel"
		}
		b.Run(name, func(b *testing.B) {
			c1, c2, stop := channelPair(b)
			defer stop()
			chunk := make([]byte, 32<<10)
			b.SetBytes(int64(len(chunk)))
			go func() {
				for i := 0; i < b.N; i++ {
					c2.ch.Write(chunk)
				}
				c2.ch.CloseWrite()
			}()
			var r io.Reader = c1
			if bare {
				r = c1.ch
			}
			buf := make([]byte, 64<<10)
			for {
				if _, err := r.Read(buf); err != nil {
					break
				}
			}
		})
	}
}
