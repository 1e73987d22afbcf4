package auth

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/crypto/scrypt"

	"mysocketd/edge/dataplane/internal/state"
)

// hash stores password as the Python side does (cheap parameters: a test).
func hash(t *testing.T, password string) string {
	t.Helper()
	salt := []byte("0123456789abcdef")
	key, err := scrypt.Key([]byte(password), salt, 16, 1, 1, 32)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("scrypt$16$1$1$%s$%s", base64.StdEncoding.EncodeToString(salt),
		base64.StdEncoding.EncodeToString(key))
}

func TestVerifyScrypt(t *testing.T) {
	good := hash(t, "s3cret")
	cases := []struct {
		name, password, stored string
		want                   bool
	}{
		{"right password", "s3cret", good, true},
		{"wrong password", "s3creT", good, false},
		{"empty password", "", good, false},
		{"not scrypt", "s3cret", "bcrypt" + good[len("scrypt"):], false},
		{"too few fields", "s3cret", "scrypt$16$1$1$AAAA", false},
		{"bad number", "s3cret", "scrypt$x$1$1$AAAA$AAAA", false},
		{"bad base64", "s3cret", "scrypt$16$1$1$!!!!$AAAA", false},
		{"empty hash", "s3cret", "scrypt$16$1$1$AAAA$", false},
		{"N not a power of two", "s3cret", "scrypt$15$1$1$AAAA$AAAA", false},
		{"nothing stored", "s3cret", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := verifyScrypt(c.password, c.stored); got != c.want {
				t.Fatalf("verifyScrypt = %v, want %v", got, c.want)
			}
		})
	}
}

type attempt struct {
	user, pass string // user "": no Authorization header
	peer       string
	want       int // 200: passes
}

func TestCheckerPass(t *testing.T) {
	ok := func(peer string) attempt { return attempt{"alice", "s3cret", peer, 200} }
	wrong := func(peer string) attempt { return attempt{"alice", "nope", peer, 401} }
	cases := []struct {
		name     string
		perMin   float64
		attempts []attempt
	}{
		{"right credentials, twice (the second from the cache)", 3, []attempt{ok("192.0.2.1"), ok("192.0.2.1")}},
		{"no credentials", 3, []attempt{{"", "", "192.0.2.1", 401}}},
		{"wrong user name", 3, []attempt{{"mallory", "s3cret", "192.0.2.1", 401}}},
		{"wrong password", 3, []attempt{wrong("192.0.2.1")}},
		{"failures run out, then even the right password waits", 3, []attempt{
			wrong("192.0.2.1"), wrong("192.0.2.1"), wrong("192.0.2.1"),
			{"alice", "s3cret", "192.0.2.1", 429}, ok("192.0.2.2")}},
		{"missing credentials spend nothing", 1, []attempt{
			{"", "", "192.0.2.1", 401}, {"", "", "192.0.2.1", 401}, ok("192.0.2.1")}},
		{"successes spend nothing", 1, []attempt{ok("192.0.2.1"), ok("192.0.2.1"), wrong("192.0.2.1"), {"alice", "s3cret", "192.0.2.1", 429}}},
		{"no limit", 0, []attempt{wrong("192.0.2.1"), wrong("192.0.2.1"), wrong("192.0.2.1"), ok("192.0.2.1")}},
	}
	sock := &state.Socket{SocketIn: state.SocketIn{SocketID: "s1", DNSName: "web.edge.localhost",
		Protected: true, ProtectedUsername: "alice", PasswordHash: hash(t, "s3cret")}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			holder := state.NewHolder("")
			holder.Replace(state.StateIn{Limits: state.Limits{AuthFailuresPerMinute: c.perMin}})
			checker := NewChecker(holder)
			for i, a := range c.attempts {
				r := httptest.NewRequest("GET", "http://web.edge.localhost/", nil)
				if a.user != "" {
					r.SetBasicAuth(a.user, a.pass)
				}
				rec := httptest.NewRecorder()
				passed := checker.Pass(rec, r, sock, a.peer)
				got := rec.Code
				if passed {
					got = http.StatusOK
					if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
						t.Fatalf("attempt %d passed but answered: %v %q", i, rec.Header(), rec.Body)
					}
				}
				if got != a.want {
					t.Fatalf("attempt %d (%s/%s from %s): %d, want %d", i, a.user, a.pass, a.peer, got, a.want)
				}
				switch got {
				case 401:
					if h := rec.Header()["WWW-Authenticate"]; len(h) != 1 || h[0] != `Basic realm="web.edge.localhost", charset="UTF-8"` {
						t.Fatalf("WWW-Authenticate %q", h)
					}
					if rec.Header().Get("Mysocket-Edge") != "unauthorized" {
						t.Fatalf("Mysocket-Edge %q", rec.Header().Get("Mysocket-Edge"))
					}
				case 429:
					if rec.Header().Get("Retry-After") != "60" || rec.Header().Get("Mysocket-Edge") != "rate-limited" {
						t.Fatalf("429 headers %v", rec.Header())
					}
				}
			}
		})
	}
}
