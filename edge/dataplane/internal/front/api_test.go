package front

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"mysocketd/edge/dataplane/internal/auth"
	"mysocketd/edge/dataplane/internal/signin"
)

// TestTheAPIHearsOnlyTheEdgesVoice: whatever a visitor sends under the edge's
// headers never reaches the API behind the edge's own name; only a sign-in to
// that name, just redeemed (its identity in the request's context, as
// ServeHTTP puts it), carries the e-mail and an assertion for that name.
func TestTheAPIHearsOnlyTheEdgesVoice(t *testing.T) {
	var got http.Header
	var gotPath string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, gotPath = r.Header.Clone(), r.URL.RequestURI()
	}))
	defer api.Close()
	f := fuzzFront()
	f = NewHTTP(f.Shared, auth.Options{}, "api.edge.localhost", strings.TrimPrefix(api.URL, "http://"), nil)
	s, err := signin.New(signin.Config{Issuer: "http://127.0.0.1:1/", ClientID: "edge",
		PublicURL: "https://api.edge.localhost:8443", Secret: []byte("0123456789abcdef0123456789abcdef")}, f.State)
	if err != nil {
		t.Fatal(err)
	}
	issuer, jwks := s.Keys()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	forged := map[string]string{"Mysocket-Visitor-Email": "ceo@example.com", "Mysocket-Visitor-Assertion": "forged.jwt.x",
		"Mysocket-Edge": "no-tunnel"}
	cases := []struct {
		name     string
		signin   *signin.Service
		identity *signin.Identity
		email    string // what the API gets ("": nothing of the edge's)
	}{
		{"no sign-in on this edge", nil, nil, ""},
		{"sign-in, an ordinary request", s, nil, ""},
		{"sign-in, a sign-in to the edge's own name", s, &signin.Identity{Email: "alice@example.com", Host: s.Own()}, "alice@example.com"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.SetSignIn(c.signin)
			got, gotPath = nil, ""
			r := httptest.NewRequest("GET", "https://api.edge.localhost:8443/dashboard/x?y=1", nil)
			r.TLS = &tls.ConnectionState{}
			for k, v := range forged {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			if c.identity == nil {
				f.ServeHTTP(rec, r)
			} else {
				f.api.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), ctxIdentity, c.identity)))
			}
			if rec.Code != 200 || gotPath != "/dashboard/x?y=1" {
				t.Fatalf("status %d, the API got %q", rec.Code, gotPath)
			}
			if got.Get("Mysocket-Edge") != "" || got.Get("Mysocket-Visitor-Email") != c.email {
				t.Fatalf("the API got %v", got)
			}
			a := got.Get("Mysocket-Visitor-Assertion")
			if c.email == "" {
				if a != "" {
					t.Fatalf("an assertion without a sign-in: %q", a)
				}
				return
			}
			tok, err := jwt.ParseSigned(a, []jose.SignatureAlgorithm{jose.EdDSA})
			if err != nil {
				t.Fatal(err)
			}
			var cl jwt.Claims
			if err := tok.Claims(set.Keys[0].Key, &cl); err != nil || cl.Subject != c.email ||
				cl.Validate(jwt.Expected{Issuer: issuer, AnyAudience: jwt.Audience{"api.edge.localhost"}}) != nil {
				t.Fatalf("assertion %+v: %v", cl, err)
			}
		})
	}
}
