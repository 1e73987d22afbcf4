package control

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"mysocketd/edge/dataplane/internal/signin"
	"mysocketd/edge/dataplane/internal/state"
	"mysocketd/edge/dataplane/internal/tunnels"
)

func TestPutState(t *testing.T) {
	cases := []struct {
		name        string
		bodies      []string
		wantStatus  int
		wantVersion int64 // what the last answer says
		wantForward bool  // whether the forward on 10000 survives
	}{
		{"a newer version", []string{`{"version": 2, "sockets": [{"socket_id": "s1", "user_id": "u1", "local_ports": [10000]}]}`},
			200, 2, true},
		{"the tunnel deleted", []string{`{"version": 2, "sockets": []}`}, 200, 2, false},
		{"the port now another account's", []string{`{"version": 2, "sockets": [{"socket_id": "s9", "user_id": "u9", "local_ports": [10000]}]}`},
			200, 2, false},
		{"a late older push changes nothing", []string{`{"version": 0, "sockets": []}`}, 200, 1, true},
		{"not JSON", []string{`{"version": `}, 400, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			holder := state.NewHolder("")
			holder.Replace(state.StateIn{Version: 1, Sockets: []state.SocketIn{
				{SocketID: "s1", UserID: "u1", LocalPorts: []int{10000}}}})
			reg := tunnels.NewRegistry(time.Second, time.Second, nil)
			reg.Claim(&tunnels.Forward{Port: 10000, Session: &tunnels.Session{ID: 1, UserID: "u1"}})
			h := (&API{State: holder, Tunnels: reg}).Handler()
			var rec *httptest.ResponseRecorder
			for _, body := range c.bodies {
				rec = httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("PUT", "/state", strings.NewReader(body)))
			}
			if rec.Code != c.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.wantStatus, rec.Body)
			}
			if c.wantStatus == 200 {
				var out struct{ Version int64 }
				if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Version != c.wantVersion {
					t.Fatalf("answer %s, want version %d", rec.Body, c.wantVersion)
				}
			}
			if got := reg.Get(10000) != nil; got != c.wantForward {
				t.Fatalf("forward on 10000 present: %v, want %v", got, c.wantForward)
			}
		})
	}
}

// closeConn is a client connection that only records Close (ssh.Conn's other methods unused).
type closeConn struct {
	ssh.Conn
	closed *bool
}

func (c closeConn) Close() error { *c.closed = true; return nil }

// TestForgetForward: the edge dropping a forward ends its session (no stale binding).
func TestForgetForward(t *testing.T) {
	cases := []struct {
		port  string
		want  string
		ended bool
	}{
		{"10000", `{"forgotten":1}`, true},
		{"10001", `{"forgotten":0}`, false},
	}
	for _, c := range cases {
		t.Run(c.port, func(t *testing.T) {
			ended := false
			reg := tunnels.NewRegistry(time.Second, time.Second, nil)
			reg.Claim(&tunnels.Forward{Port: 10000, Session: &tunnels.Session{ID: 1, UserID: "u1",
				Conn: closeConn{closed: &ended}}})
			rec := httptest.NewRecorder()
			(&API{Tunnels: reg}).Handler().ServeHTTP(rec,
				httptest.NewRequest("POST", "/forget-forward", strings.NewReader(`{"local_port": `+c.port+`}`)))
			if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != c.want {
				t.Fatalf("%d %s, want %s", rec.Code, rec.Body, c.want)
			}
			if present := reg.Get(10000) != nil; present != (c.want == `{"forgotten":0}`) || ended != c.ended {
				t.Fatalf("forward on 10000 present: %v, session ended %v, after %s", present, ended, rec.Body)
			}
		})
	}
}

// TestSignInKeys: the control plane gets the assertions' issuer, audience and JWKS only when a
// provider is configured.
func TestSignInKeys(t *testing.T) {
	holder := state.NewHolder("")
	with, err := signin.New(signin.Config{Issuer: "http://127.0.0.1:1/", ClientID: "edge", PublicURL: "https://API.edge.localhost:8443",
		Secret: []byte("0123456789abcdef0123456789abcdef")}, holder)
	if err != nil {
		t.Fatal(err)
	}
	without, _ := signin.New(signin.Config{}, holder)
	cases := []struct {
		name   string
		svc    *signin.Service
		status int
	}{{"a provider", with, 200}, {"no provider", without, 404}, {"no sign-in at all", nil, 404}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			(&API{State: holder, SignIn: c.svc}).Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/signin/keys", nil))
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			if c.status != 200 {
				return
			}
			var got struct {
				Issuer, Audience string
				JWKS             struct{ Keys []map[string]any }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Issuer != "https://API.edge.localhost:8443" ||
				got.Audience != "api.edge.localhost" || len(got.JWKS.Keys) != 1 || got.JWKS.Keys[0]["alg"] != "EdDSA" {
				t.Fatalf("%s (%v)", rec.Body, err)
			}
		})
	}
}
