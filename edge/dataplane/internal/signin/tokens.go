package signin

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Every token the sign-in hands to a browser (the flow cookie, the one-time
// code, the session cookie) is sealed: encrypted and authenticated with
// XChaCha20-Poly1305 under a key every node derives from the same secret, so
// any node accepts what another issued, nobody can forge or alter one, and an
// e-mail address in a URL or a cookie is not readable. The purpose is the
// AEAD's additional data, so a token of one kind is never accepted as another.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	return &sealer{aead}, nil
}

var errBadToken = errors.New("not a valid token")

// claims is what a token carries; each purpose uses the fields it needs.
type claims struct {
	Exp      int64  `json:"exp"`                // unix seconds
	Email    string `json:"email,omitempty"`    // code, session
	Host     string `json:"host,omitempty"`     // code, session: the socket's host
	Target   string `json:"rd,omitempty"`       // flow: the URL to return to; code: the path on Host
	ID       string `json:"id,omitempty"`       // code: used once
	Bind     string `json:"bind,omitempty"`     // flow, code: the hash of the browser's binding cookie on Host
	State    string `json:"state,omitempty"`    // flow
	Nonce    string `json:"nonce,omitempty"`    // flow
	Verifier string `json:"verifier,omitempty"` // flow: the PKCE verifier
}

func (s *sealer) seal(purpose string, c claims) string {
	plain, _ := json.Marshal(c)
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(purpose)))
}

// open returns the claims of a token of this purpose that has not expired at now.
func (s *sealer) open(purpose, token string, now time.Time) (claims, error) {
	var c claims
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return c, errBadToken
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(purpose))
	if err != nil || json.Unmarshal(plain, &c) != nil {
		return c, errBadToken
	}
	if now.Unix() >= c.Exp {
		return c, errors.New("expired")
	}
	return c, nil
}

// random is n random bytes, base64url: states, nonces, code ids.
func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
