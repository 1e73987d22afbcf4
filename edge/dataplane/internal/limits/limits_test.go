package limits

import (
	"sync"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	cases := []struct {
		name      string
		perMinute float64
		spends    int
		want      bool
	}{
		{"fresh key", 5, 0, true},
		{"one failure left", 5, 4, true},
		{"all spent", 5, 5, false},
		{"overspent", 5, 9, false},
		{"one per minute, spent", 1, 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := NewLimiter()
			for range c.spends {
				l.Spend("auth:192.0.2.1", c.perMinute)
			}
			if got := l.Allowed("auth:192.0.2.1", c.perMinute); got != c.want {
				t.Fatalf("Allowed after %d spends of %v/min = %v, want %v", c.spends, c.perMinute, got, c.want)
			}
			if !l.Allowed("auth:192.0.2.2", c.perMinute) {
				t.Fatal("another key was limited too")
			}
		})
	}
}

func TestLimiterRefillsOverAMinute(t *testing.T) {
	cases := []struct {
		name    string
		elapsed time.Duration
		want    bool
	}{
		{"nothing elapsed", 0, false},
		{"a tenth of the refill", 6 * time.Second, false},
		{"a fifth: one token back", 13 * time.Second, true},
		{"a minute: full", time.Minute, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := NewLimiter()
			for range 5 {
				l.Spend("k", 5)
			}
			l.buckets["k"].at = l.buckets["k"].at.Add(-c.elapsed) // as if that long ago: no sleeping
			if got := l.Allowed("k", 5); got != c.want {
				t.Fatalf("Allowed = %v, want %v (tokens %v)", got, c.want, l.buckets["k"].tokens)
			}
		})
	}
}

func TestLimiterNeverHoldsMoreThanCapacity(t *testing.T) {
	l := NewLimiter()
	l.Allowed("k", 3)
	l.buckets["k"].at = l.buckets["k"].at.Add(-time.Hour) // an hour idle refills to 3, not 180
	for range 3 {
		l.Spend("k", 3)
	}
	if l.Allowed("k", 3) {
		t.Fatal("an idle hour saved up more than the capacity")
	}
}

func TestCounter(t *testing.T) {
	cases := []struct {
		name     string
		quota    int
		acquires int
		wantOK   int // how many of the acquires succeed
	}{
		{"under quota", 3, 2, 2},
		{"at quota", 3, 3, 3},
		{"over quota", 3, 5, 3},
		{"no limit", 0, 50, 50},
		{"negative: no limit", -1, 5, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cnt := NewCounter()
			var releases []func()
			ok := 0
			for range c.acquires {
				if release, got := cnt.Acquire("u1", c.quota); got {
					ok++
					releases = append(releases, release)
				}
			}
			if ok != c.wantOK {
				t.Fatalf("%d acquires succeeded, want %d", ok, c.wantOK)
			}
			if _, got := cnt.Acquire("u2", c.quota); !got {
				t.Fatal("another key was refused")
			}
			for _, release := range releases {
				release()
				release() // a second call releases nothing more
			}
			if n := cnt.n["u1"]; n != 0 {
				t.Fatalf("%d units held after every release", n)
			}
			if _, present := cnt.n["u1"]; present {
				t.Fatal("a key that holds nothing stays in the map")
			}
			if _, got := cnt.Acquire("u1", c.quota); !got {
				t.Fatal("refused after every unit was released")
			}
		})
	}
}

func TestCounterConcurrentNeverExceedsQuota(t *testing.T) {
	cnt := NewCounter()
	var wg sync.WaitGroup
	var mu sync.Mutex
	held, most := 0, 0
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, ok := cnt.Acquire("u", 4)
			if !ok {
				return
			}
			mu.Lock()
			held++
			most = max(most, held)
			mu.Unlock()
			mu.Lock()
			held--
			mu.Unlock()
			release()
		}()
	}
	wg.Wait()
	if most > 4 {
		t.Fatalf("%d units held at once with quota 4", most)
	}
	if len(cnt.n) != 0 {
		t.Fatalf("units left after all released: %v", cnt.n)
	}
}
