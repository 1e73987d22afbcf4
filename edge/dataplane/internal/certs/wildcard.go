package certs

// One certificate for the whole zone (<zone> and *.<zone>) from ACME by DNS-01.
//
// Why it is shaped this way:
//   - Every socket's name is one label under the zone, so one wildcard
//     covers them all: sockets never cause an ACME order, and an edge with
//     thousands of names stays far below a CA's limit of new certificates
//     per registered domain (Let's Encrypt: 50 a week).
//   - The order is two calls from the control plane (Begin, then Finish),
//     because the DNS-01 TXT values must be answered by every node of the
//     edge (the CA may ask any NS), and only the control plane can publish
//     them to the others (through the store). The control plane also holds
//     the store's lock that lets one node order at a time, and keeps the
//     result, encrypted, in the store for every node (Install).
//   - Installing swaps one pointer: new handshakes get the new certificate,
//     connections already open keep theirs (nothing is dropped on renewal).
//   - The protocol steps are golang.org/x/crypto/acme's (already the data
//     plane's dependency), the same client as HTTP-01 (acme.go).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/acme"

	"mysocketd/edge/dataplane/internal/logx"
)

// ZoneCert is the zone's wildcard certificate as served (nil until one is installed).
type ZoneCert struct {
	Zone string // lower case, no trailing dot
	cert atomic.Pointer[tls.Certificate]
}

// Get is the installed certificate, or nil.
func (z *ZoneCert) Get() *tls.Certificate { return z.cert.Load() }

// Under reports whether name is the zone or one label under it: the names the wildcard covers.
func (z *ZoneCert) Under(name string) bool {
	if name == z.Zone {
		return true
	}
	label, ok := strings.CutSuffix(name, "."+z.Zone)
	return ok && label != "" && !strings.Contains(label, ".")
}

// Install parses a PEM chain and key and serves it from now on, if it covers the zone.
func (z *ZoneCert) Install(certPEM, keyPEM []byte) (*x509.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
		return nil, err
	}
	for _, name := range []string{z.Zone, "x." + z.Zone} {
		if err := pair.Leaf.VerifyHostname(name); err != nil {
			return nil, fmt.Errorf("the certificate does not cover %s: %w", name, err)
		}
	}
	z.cert.Store(&pair)
	logx.Printf("wildcard: serving the certificate for %s and *.%s, serial %x, valid until %s", z.Zone, z.Zone,
		pair.Leaf.SerialNumber, pair.Leaf.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
	return pair.Leaf, nil
}

// zoneOrder is an order begun and not finished yet.
type zoneOrder struct {
	order *acme.Order
	chals []*acme.Challenge
	authz []string
}

// ZoneOrders runs the zone's DNS-01 orders, one at a time, with the ACME client of a.
type ZoneOrders struct {
	ACME *ACME
	Zone *ZoneCert
	mu   sync.Mutex
	open *zoneOrder
}

// Begin orders <zone> and *.<zone>; the TXT values _acme-challenge.<zone> must answer.
func (o *ZoneOrders) Begin(ctx context.Context) ([]string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	a := o.ACME
	if err := a.register(ctx); err != nil {
		return nil, err
	}
	order, err := a.client.AuthorizeOrder(ctx, acme.DomainIDs(o.Zone.Zone, "*."+o.Zone.Zone))
	if err != nil {
		return nil, fmt.Errorf("order: %w", err)
	}
	chals, authz, err := a.challenges(ctx, order, "dns-01")
	if err != nil {
		return nil, err
	}
	txt := []string{}
	for _, chal := range chals {
		v, err := a.client.DNS01ChallengeRecord(chal.Token)
		if err != nil {
			return nil, err
		}
		txt = append(txt, v)
	}
	o.open = &zoneOrder{order: order, chals: chals, authz: authz}
	logx.Printf("wildcard: order for %s and *.%s begun, %d TXT values to publish", o.Zone.Zone, o.Zone.Zone, len(txt))
	return txt, nil
}

// Finish tells the CA the TXT values are published, waits for the certificate and installs
// it; its PEM chain and key, for the control plane to keep in the store.
func (o *ZoneOrders) Finish(ctx context.Context) (certPEM, keyPEM []byte, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	open, a := o.open, o.ACME
	o.open = nil
	if open == nil {
		return nil, nil, errors.New("no order was begun")
	}
	if err := a.prove(ctx, open.chals, open.authz); err != nil {
		return nil, nil, err
	}
	cert, err := a.finalize(ctx, open.order.URI, []string{o.Zone.Zone, "*." + o.Zone.Zone})
	if err != nil {
		return nil, nil, err
	}
	if certPEM, keyPEM, err = toPEM(cert); err != nil {
		return nil, nil, err
	}
	if _, err := o.Zone.Install(certPEM, keyPEM); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}
