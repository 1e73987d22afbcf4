package signin

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// asserter signs the assertion the app gets with every request that passed:
// a JWT (EdDSA) naming the visitor, for this socket's host, valid for a few
// minutes. Its key comes from the same shared secret on every node, so the
// JWKS any node publishes verifies what every node signs.
type asserter struct {
	issuer string
	key    ed25519.PrivateKey
	kid    string
	signer jose.Signer
	jwks   []byte
}

const assertionFor = 5 * time.Minute

func newAsserter(issuer string, seed []byte) (*asserter, error) {
	key := ed25519.NewKeyFromSeed(seed)
	pub := key.Public().(ed25519.PublicKey)
	sum := sha256.Sum256(pub)
	kid := base64.RawURLEncoding.EncodeToString(sum[:12])
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid))
	if err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: pub, KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"}}})
	if err != nil {
		return nil, err
	}
	return &asserter{issuer: issuer, key: key, kid: kid, signer: signer, jwks: jwks}, nil
}

// assert is the JWT for email on host, issued at now.
func (a *asserter) assert(email, host string, now time.Time) (string, error) {
	c := struct {
		jwt.Claims
		Email string `json:"email"`
	}{jwt.Claims{Issuer: a.issuer, Subject: email, Audience: jwt.Audience{host},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-30 * time.Second)),
		Expiry: jwt.NewNumericDate(now.Add(assertionFor))}, email}
	return jwt.Signed(a.signer).Claims(c).Serialize()
}

// serveJWKS publishes the public key (JWKPath on the edge's own name).
func (a *asserter) serveJWKS(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(a.jwks)
}
