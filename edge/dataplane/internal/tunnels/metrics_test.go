package tunnels

import (
	"testing"
	"time"

	"mysocketd/edge/dataplane/internal/metrics"
)

func sockForward(port int, s *Session) *Forward {
	f := forward(port, s)
	f.SocketID = "sock"
	return f
}

// counted is the value of the socket's series of a counter (0: none).
func counted(t *testing.T, m *metrics.Edge, name string) float64 {
	t.Helper()
	families, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			for _, s := range f.GetMetric() {
				if s.GetLabel()[0].GetValue() == "sock" {
					return s.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestForwardsAreCounted: each way a forward comes up or goes down moves the socket's connects and
// drops, and its live count (BySocket, what the tunnels gauge reads) is connects - drops.
func TestForwardsAreCounted(t *testing.T) {
	for _, c := range []struct {
		name                  string
		steps                 func(r *Registry, s1, s2 *Session)
		connects, drops, live int
	}{
		{"up", func(r *Registry, s1, _ *Session) { r.Claim(sockForward(10000, s1)) }, 1, 0, 1},
		{"two tunnels", func(r *Registry, s1, _ *Session) {
			r.Claim(sockForward(10000, s1))
			r.Claim(sockForward(10001, s1))
		}, 2, 0, 2},
		{"replaced by a newer session", func(r *Registry, s1, s2 *Session) {
			r.Claim(sockForward(10000, s1))
			r.Claim(sockForward(10000, s2))
		}, 2, 1, 1},
		{"removed once", func(r *Registry, s1, _ *Session) {
			f := sockForward(10000, s1)
			r.Claim(f)
			r.Remove(f, false)
			r.Remove(f, false) // gone already: not counted twice
		}, 1, 1, 0},
		{"session ended", func(r *Registry, s1, _ *Session) {
			r.Claim(sockForward(10000, s1))
			r.Claim(sockForward(10001, s1))
			r.DropSession(s1)
		}, 2, 2, 0},
		{"another account's port refused", func(r *Registry, s1, _ *Session) {
			r.Claim(sockForward(10000, s1))
			r.Claim(sockForward(10000, session(3, "u2")))
		}, 1, 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewRegistry(time.Second, time.Second, nil)
			m := metrics.New(metrics.Sources{Tunnels: r.BySocket})
			r.Metrics = m
			c.steps(r, session(1, "u1"), session(2, "u1"))
			connects, drops := counted(t, m, "mysocket_edge_tunnel_connects_total"), counted(t, m, "mysocket_edge_tunnel_drops_total")
			if connects != float64(c.connects) || drops != float64(c.drops) || r.BySocket()["sock"] != c.live {
				t.Fatalf("connects %v drops %v live %d, want %d %d %d", connects, drops, r.BySocket()["sock"],
					c.connects, c.drops, c.live)
			}
		})
	}
}
