// Package certs answers "which certificate does this name get", in this order:
//  1. a given certificate (e.g. a wildcard for *.<domain>) when it covers the name;
//  2. the zone's own wildcard from ACME by DNS-01 (wildcard.go) for the zone and
//     every label under it: those names never cause an order of their own;
//  3. ACME, when a directory URL is configured (see acme.go, HTTP-01);
//  4. the edge's own internal CA, created on first start in the data
//     directory (ca.crt is what a client trusts), so that TLS works out of
//     the box and no name is ever served without TLS.
//
// Only names the edge serves get a certificate (a socket's dnsname, the API
// name, a custom name its account proved it controls): a visitor cannot make
// the edge ask an ACME CA for arbitrary names. A custom name (outside the
// zone) gets a certificate from ACME only, never from the internal CA: the
// CA's name constraints are fixed in its root when it is made, so they cannot
// follow names that are proven and later lost, and a root that any client
// trusts must not speak for a domain its owner may take back.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"mysocketd/edge/dataplane/internal/logx"
	"mysocketd/edge/dataplane/internal/state"
)

// Chooser picks the certificate of each name; Get is a tls.Config's GetCertificate.
type Chooser struct {
	State   *state.Holder
	APIName string            // the REST API's public name, lower case
	Given   *tls.Certificate  // --tls-cert/--tls-key, or nil
	ACME    *ACME             // nil: no ACME
	Zone    *ZoneCert         // nil: no wildcard for the zone by DNS-01
	Custom  *CustomCerts      // custom hostnames' certificates (custom.go); nil: no ACME
	CA      *x509.Certificate // the internal CA
	CAKey   crypto.Signer

	mu     sync.Mutex
	leaves map[string]*tls.Certificate // issued by the internal CA
}

// Renewable: the data plane renews name's ACME certificate itself (custom hostnames are renewed by
// the control plane, one node at a time, edge/hostcerts.py).
func (c *Chooser) Renewable(name string) bool { return c.Allowed(name) && !c.custom(name) }

// Allowed: the edge serves name over TLS (the API name, an http or https socket).
func (c *Chooser) Allowed(name string) bool {
	if name == c.APIName {
		return true
	}
	sock := c.State.ByDNS(name)
	return sock != nil && (sock.Type == "http" || sock.Type == "https")
}

// custom: name is a socket's verified custom name, not its generated dnsname (nor the API name).
func (c *Chooser) custom(name string) bool {
	sock := c.State.ByDNS(name)
	return name != c.APIName && sock != nil && !strings.EqualFold(sock.DNSName, name)
}

// Get returns the certificate for the ClientHello's name.
func (c *Chooser) Get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := state.HostOnly(hello.ServerName)
	if name == "" {
		name = c.APIName // clients without SNI: some certificate, the API's
	}
	if c.Given != nil && c.Given.Leaf != nil && c.Given.Leaf.VerifyHostname(name) == nil {
		return c.Given, nil
	}
	zone := c.Zone != nil && c.Zone.Under(name)
	if zone {
		if cert := c.Zone.Get(); cert != nil {
			return cert, nil
		}
	}
	if !c.Allowed(name) {
		return nil, fmt.Errorf("no certificate for %q: not a name this edge serves", name)
	}
	if c.custom(name) {
		if c.Custom == nil {
			return nil, fmt.Errorf("no certificate for the custom name %q: the edge has no --acme-directory, "+
				"and its internal CA never signs names outside its zone", name)
		}
		if cert := c.Custom.Get(name); cert != nil {
			return cert, nil
		}
		return nil, fmt.Errorf("no certificate for the custom name %q yet: the edge orders it once the "+
			"name is proven (never on a handshake)", name)
	}
	if c.ACME != nil && !zone { // the zone's names wait for its wildcard (the internal CA's meanwhile)
		return c.ACME.Get(name)
	}
	return c.internal(name)
}

func (c *Chooser) internal(name string) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if leaf := c.leaves[name]; leaf != nil && time.Until(leaf.Leaf.NotAfter) > 10*24*time.Hour {
		return leaf, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(30 * 24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.CA, &key.PublicKey, c.CAKey)
	if err != nil {
		return nil, err
	}
	leaf, _ := x509.ParseCertificate(der)
	cert := &tls.Certificate{Certificate: [][]byte{der, c.CA.Raw}, PrivateKey: key, Leaf: leaf}
	if c.leaves == nil || len(c.leaves) > 10000 {
		c.leaves = map[string]*tls.Certificate{}
	}
	c.leaves[name] = cert
	return cert, nil
}

// LoadOrCreateCA reads data_dir/ca.crt + ca.key, creating them (0600 key) on first start.
//
// A CA it creates is name-constrained (RFC 5280, critical): valid only for the names under
// permitted (the zone, and the API name when it is outside it) and for no IP address, so a
// client told to trust ca.crt trusts the edge for its own names and nothing else on the
// internet, even if the CA's key leaked.
func LoadOrCreateCA(dir string, permitted []string) (*x509.Certificate, crypto.Signer, error) {
	crtPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if _, err := os.Stat(crtPath); errors.Is(err, os.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
		tmpl := &x509.Certificate{SerialNumber: serial,
			Subject:   pkix.Name{CommonName: "mysocketd edge internal CA", Organization: []string{"mysocketd edge"}},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
			IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
			KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			PermittedDNSDomainsCritical: true, PermittedDNSDomains: permitted,
			ExcludedIPRanges: []*net.IPNet{{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
				{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return nil, nil, err
		}
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		if err := writeFile0600(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			return nil, nil, err
		}
		logx.Printf("created the internal CA %s (clients trust this file)", crtPath)
	}
	pair, err := tls.LoadX509KeyPair(crtPath, keyPath)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	if len(ca.PermittedDNSDomains) == 0 {
		logx.Printf("the internal CA %s is not name-constrained (made by an older edge): a client that trusts it "+
			"trusts this edge for every name; to replace it, stop every node, remove ca.crt and ca.key (with "+
			"PostgreSQL also the meta rows file:ca.crt and file:ca.key) and hand out the new ca.crt", crtPath)
	}
	return ca, pair.PrivateKey.(crypto.Signer), nil
}

// writeFile0600 creates path with mode 0600 from the start (never chmod'ed after).
func writeFile0600(path string, data []byte) error {
	tmp := path + ".tmp"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// LoadGiven reads a given certificate and its key (none when certFile is empty).
func LoadGiven(certFile, keyFile string) (*tls.Certificate, error) {
	if certFile == "" {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0])
	return &pair, err
}
