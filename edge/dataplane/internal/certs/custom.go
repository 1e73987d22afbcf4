package certs

// Certificates for custom hostnames (names outside the zone that an account proved it controls),
// from ACME by HTTP-01, ordered when the control plane says.
//
// Why it is shaped this way:
//   - A handshake never orders: the control plane orders a name once it is proven (edge/hostcerts.py),
//     under a lock in the store, so one node of the edge orders a name at a time, and a name whose
//     order failed is not ordered again before its backoff ends, however many visitors ask for it.
//   - The CA may send its HTTP-01 request to any node (the name resolves to all of them), so the
//     order is two calls (Begin: the key authorizations to publish; Finish: the certificate), and
//     the control plane publishes the key authorizations to every node (SetRemote) in between,
//     as it does with the zone's DNS-01 values.
//   - The certificate is kept by the control plane in the store, sealed, and installed on every
//     node (Install); installing swaps a pointer, so open connections keep theirs.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"mysocketd/edge/dataplane/internal/logx"
)

// CustomCerts holds the custom names' certificates and runs their orders.
type CustomCerts struct {
	ACME   *ACME
	mu     sync.Mutex
	open   map[string]*zoneOrder // name -> order begun, not finished
	certs  sync.Map              // name -> *tls.Certificate
	remote atomic.Pointer[map[string]string]
}

// Get is the installed certificate of name, or nil.
func (c *CustomCerts) Get(name string) *tls.Certificate {
	if v, ok := c.certs.Load(name); ok {
		return v.(*tls.Certificate)
	}
	return nil
}

// SetRemote replaces the HTTP-01 answers other nodes published (token -> key authorization).
func (c *CustomCerts) SetRemote(answers map[string]string) { c.remote.Store(&answers) }

// Answer is the key authorization of token if another node published it.
func (c *CustomCerts) Answer(token string) (string, bool) {
	if m := c.remote.Load(); m != nil {
		v, ok := (*m)[token]
		return v, ok
	}
	return "", false
}

// Begin orders name; the HTTP-01 answers (token -> key authorization) every node must give.
func (c *CustomCerts) Begin(ctx context.Context, name string) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	order, chals, authz, answers, err := c.ACME.orderHTTP01(ctx, name)
	if err != nil {
		return nil, err
	}
	if c.open == nil {
		c.open = map[string]*zoneOrder{}
	}
	c.open[name] = &zoneOrder{order: order, chals: chals, authz: authz}
	return answers, nil
}

// Finish lets the CA check the answers, waits for the certificate and installs it; its PEM chain
// and key, for the control plane to keep in the store.
func (c *CustomCerts) Finish(ctx context.Context, name string) (certPEM, keyPEM []byte, leaf *x509.Certificate, err error) {
	c.mu.Lock()
	open, a := c.open[name], c.ACME
	delete(c.open, name)
	c.mu.Unlock()
	if open == nil {
		return nil, nil, nil, errors.New("no order was begun for " + name)
	}
	defer func() {
		for _, chal := range open.chals {
			a.tokens.Delete(chal.Token)
		}
	}()
	if err := a.prove(ctx, open.chals, open.authz); err != nil {
		return nil, nil, nil, err
	}
	cert, err := a.finalize(ctx, open.order.URI, []string{name})
	if err != nil {
		return nil, nil, nil, err
	}
	if certPEM, keyPEM, err = toPEM(cert); err != nil {
		return nil, nil, nil, err
	}
	leaf, err = c.Install(name, certPEM, keyPEM)
	return certPEM, keyPEM, leaf, err
}

// Install serves a PEM chain and key for name from now on, if it covers name.
func (c *CustomCerts) Install(name string, certPEM, keyPEM []byte) (*x509.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
		return nil, err
	}
	if err := pair.Leaf.VerifyHostname(name); err != nil {
		return nil, fmt.Errorf("the certificate does not cover %s: %w", name, err)
	}
	if old := c.Get(name); old == nil || old.Leaf.SerialNumber.Cmp(pair.Leaf.SerialNumber) != 0 {
		logx.Printf("custom hostname %s: serving the certificate serial %x, valid until %s", name,
			pair.Leaf.SerialNumber, pair.Leaf.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
	}
	c.certs.Store(name, &pair)
	return pair.Leaf, nil
}
