package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"mysocketd/edge/dataplane/internal/state"
)

func TestZoneCertUnder(t *testing.T) {
	z := &ZoneCert{Zone: "edge.test"}
	cases := map[string]bool{"edge.test": true, "a.edge.test": true, "api.edge.test": true,
		"a.b.edge.test": false, "edge.test.evil": false, "xedge.test": false, ".edge.test": false, "test": false}
	for name, want := range cases {
		if got := z.Under(name); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

// selfSigned is a PEM chain and key for names, signed by itself.
func selfSigned(t *testing.T, names ...string) ([]byte, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	chain, keyPEM, err := toPEM(&tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return chain, keyPEM
}

func TestZoneCertInstall(t *testing.T) {
	cases := []struct {
		names []string
		ok    bool
	}{
		{[]string{"edge.test", "*.edge.test"}, true},
		{[]string{"*.edge.test"}, false}, // not the apex
		{[]string{"edge.test"}, false},   // not the labels under it
		{[]string{"*.other.test", "other.test"}, false},
	}
	for _, c := range cases {
		z := &ZoneCert{Zone: "edge.test"}
		chain, key := selfSigned(t, c.names...)
		_, err := z.Install(chain, key)
		if (err == nil) != c.ok || (z.Get() != nil) != c.ok {
			t.Errorf("%v: err %v, served %v", c.names, err, z.Get() != nil)
		}
	}
	z := &ZoneCert{Zone: "edge.test"}
	chain, _ := selfSigned(t, "edge.test", "*.edge.test")
	_, otherKey := selfSigned(t, "edge.test", "*.edge.test")
	if _, err := z.Install(chain, otherKey); err == nil {
		t.Error("a key that is not the certificate's was installed")
	}
	if _, err := z.Install([]byte("junk"), []byte("junk")); err == nil {
		t.Error("junk was installed")
	}
}

// The zone's names never reach ACME: the wildcard when there is one, else the internal CA.
func TestChooserZone(t *testing.T) {
	ca, caKey, err := LoadOrCreateCA(t.TempDir(), []string{"edge.test"})
	if err != nil {
		t.Fatal(err)
	}
	holder := state.NewHolder("")
	holder.Replace(state.StateIn{Version: 1, Sockets: []state.SocketIn{{SocketID: "s", DNSName: "a.edge.test", Type: "http"}}})
	zone := &ZoneCert{Zone: "edge.test"}
	// An ACME whose client would fail the test if asked: a nil client panics on use.
	c := &Chooser{State: holder, APIName: "api.edge.test", CA: ca, CAKey: caKey, ACME: &ACME{}, Zone: zone}
	hello := func(name string) *tls.ClientHelloInfo { return &tls.ClientHelloInfo{ServerName: name} }
	cert, err := c.Get(hello("a.edge.test"))
	if err != nil || cert.Leaf.Issuer.CommonName != "mysocketd edge internal CA" {
		t.Fatalf("before the wildcard: %v %v", err, cert)
	}
	if _, err := c.Get(hello("nobody.edge.test")); err == nil {
		t.Fatal("a name nobody serves got a certificate before the wildcard")
	}
	chain, key := selfSigned(t, "edge.test", "*.edge.test")
	if _, err := zone.Install(chain, key); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.edge.test", "api.edge.test", "nobody.edge.test", "edge.test"} {
		if cert, err := c.Get(hello(name)); err != nil || cert != zone.Get() {
			t.Fatalf("%s: %v, not the wildcard", name, err)
		}
	}
}
