package certs

import (
	"crypto/tls"
	"crypto/x509"
	"time"
)

// InternalCAName is the name the internal CA's expiry is reported under.
const InternalCAName = "internal-ca"

// Expiries is the notAfter of every certificate the edge holds, by name, for the metric
// mysocket_edge_certificate_expiry_timestamp_seconds: the given certificate (by its first
// DNS name), the zone's wildcard (*.<zone>), each ACME name's, and the internal CA's
// (InternalCAName). The leaves the internal CA issues are left out: they are issued again
// on their own before they expire. Two certificates under one name report the earlier.
func (c *Chooser) Expiries() map[string]time.Time {
	out := map[string]time.Time{}
	put := func(name string, notAfter time.Time) {
		if was, ok := out[name]; !ok || notAfter.Before(was) {
			out[name] = notAfter
		}
	}
	if leaf := leafOf(c.Given); leaf != nil {
		name := leaf.Subject.CommonName
		if len(leaf.DNSNames) > 0 {
			name = leaf.DNSNames[0]
		}
		put(name, leaf.NotAfter)
	}
	if c.Zone != nil {
		if leaf := leafOf(c.Zone.Get()); leaf != nil {
			put("*."+c.Zone.Zone, leaf.NotAfter)
		}
	}
	if c.ACME != nil {
		for name, notAfter := range c.ACME.expiries() {
			put(name, notAfter)
		}
	}
	if c.CA != nil {
		put(InternalCAName, c.CA.NotAfter)
	}
	return out
}

func (a *ACME) expiries() map[string]time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]time.Time, len(a.certs))
	for name, cert := range a.certs {
		if leaf := leafOf(cert); leaf != nil {
			out[name] = leaf.NotAfter
		}
	}
	return out
}

func leafOf(c *tls.Certificate) *x509.Certificate {
	if c == nil {
		return nil
	}
	if c.Leaf != nil {
		return c.Leaf
	}
	if len(c.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}
