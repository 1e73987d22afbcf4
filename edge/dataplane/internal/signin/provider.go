package signin

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// provider is the identity provider, discovered on first use and kept. The
// edge never asks it anything at start, so an edge whose provider is down
// starts and serves every name that needs no sign-in; a failed discovery is
// remembered for retryAfter, so a flood of sign-ins during an outage costs
// one request to the provider per period, not one each.
type provider struct {
	issuer, clientID, clientSecret, redirect string
	client                                   *http.Client // every call to the provider is bounded by its Timeout

	mu       sync.Mutex
	ready    *discovered
	failed   error
	failedAt time.Time
}

type discovered struct {
	op       *oidc.Provider
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
}

const retryAfter = 5 * time.Second

func (p *provider) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, p.client)
}

// get is the discovered provider, or why there is none right now.
func (p *provider) get(ctx context.Context) (*discovered, error) {
	p.mu.Lock()
	defer p.mu.Unlock() // one discovery at a time; the others wait for its answer (bounded by the timeout)
	if p.ready != nil {
		return p.ready, nil
	}
	if p.failed != nil && time.Since(p.failedAt) < retryAfter {
		return nil, p.failed
	}
	op, err := oidc.NewProvider(p.ctx(ctx), p.issuer)
	if err != nil {
		p.failed, p.failedAt = err, time.Now()
		return nil, err
	}
	p.ready = &discovered{op: op, verifier: op.Verifier(&oidc.Config{ClientID: p.clientID}),
		oauth: &oauth2.Config{ClientID: p.clientID, ClientSecret: p.clientSecret, Endpoint: op.Endpoint(),
			RedirectURL: p.redirect, Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}}
	return p.ready, nil
}
