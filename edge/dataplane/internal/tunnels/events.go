package tunnels

// Forwards coming up and going down, for the control plane (GET /events).
//
// Why it is shaped this way: a client may connect its tunnel to another node
// than the one it was placed on; the control plane learns it from these
// events and records where the tunnel is (edge/forwards.py), so the other
// nodes carry its requests here. A bounded ring of numbered events and a
// long poll: the control plane asks for what came after the last number it
// saw and waits for the next one, so nothing polls. "boot" changes when the
// process restarts, so a reader knows its numbers start again.

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

const keepEvents = 4096

// Event is one forward that came up or went down here.
type Event struct {
	Seq  int64  `json:"seq"`
	Kind string `json:"kind"` // "up" or "down"
	Port int    `json:"local_port"`
}

type events struct {
	mu   sync.Mutex
	boot string
	next int64
	ring []Event
	wake chan struct{}
}

func (e *events) init() {
	b := make([]byte, 8)
	rand.Read(b)
	e.boot = hex.EncodeToString(b)
	e.next = 1
	e.wake = make(chan struct{})
}

func (e *events) add(kind string, port int) {
	e.mu.Lock()
	e.ring = append(e.ring, Event{Seq: e.next, Kind: kind, Port: port})
	e.next++
	if len(e.ring) > keepEvents {
		e.ring = e.ring[len(e.ring)-keepEvents:]
	}
	close(e.wake)
	e.wake = make(chan struct{})
	e.mu.Unlock()
}

// Events returns the events after seq after (waiting up to wait for one), the number to ask
// after next time, and this process's boot id. Events older than the ring are lost: a reader
// that far behind gets what is kept.
func (r *Registry) Events(after int64, wait time.Duration) (boot string, next int64, out []Event) {
	e := &r.events
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		for _, ev := range e.ring {
			if ev.Seq > after {
				out = append(out, ev)
			}
		}
		boot, next, wake := e.boot, e.next-1, e.wake
		e.mu.Unlock()
		if len(out) > 0 {
			return boot, next, out
		}
		select {
		case <-wake:
		case <-deadline.C:
			return boot, max(next, after), nil
		}
	}
}
