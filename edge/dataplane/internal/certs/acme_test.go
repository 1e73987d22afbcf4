package certs

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A name whose order failed is not ordered again on every handshake: it waits RetryFirst,
// then twice as long after each further failure.
func TestFailedNamesAreNotOrderedOnEveryHandshake(t *testing.T) {
	var calls atomic.Int64
	ca := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "refused", http.StatusForbidden) // 4xx: the client does not retry by itself
	}))
	defer ca.Close()
	a, err := NewACME(t.TempDir(), ca.URL+"/dir", "", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a.RetryFirst, a.RetryMax = 200*time.Millisecond, 300*time.Millisecond
	if _, err := a.Get("broken.example.com"); err == nil {
		t.Fatal("a certificate from a CA that refuses")
	}
	first := calls.Load()
	if first == 0 {
		t.Fatal("the CA was not asked")
	}
	for range 50 { // 50 handshakes right after: none reaches the CA
		if _, err := a.Get("broken.example.com"); err == nil {
			t.Fatal("a certificate from a CA that refuses")
		}
	}
	if calls.Load() != first {
		t.Fatalf("the CA was asked %d more times", calls.Load()-first)
	}
	if _, err := a.Get("other.example.com"); err == nil || calls.Load() == first {
		t.Fatalf("another name was not tried (%v)", err)
	}
	time.Sleep(250 * time.Millisecond)
	before := calls.Load()
	a.Get("broken.example.com")
	if calls.Load() == before {
		t.Fatal("not tried again once the wait was over")
	}
	a.mu.Lock()
	wait := a.failed["broken.example.com"].wait
	a.mu.Unlock()
	if wait != 300*time.Millisecond { // doubled, capped at RetryMax
		t.Fatalf("next wait %s", wait)
	}
}
