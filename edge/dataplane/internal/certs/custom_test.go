package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

func pemFor(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func TestCustomCertsInstallAndAnswers(t *testing.T) {
	c := &CustomCerts{}
	cert, key := pemFor(t, "shop.example.org")
	cases := []struct {
		name    string
		wantErr bool
	}{
		{"shop.example.org", false},
		{"other.example.org", true}, // a certificate is installed only for a name it covers
	}
	for _, tc := range cases {
		_, err := c.Install(tc.name, cert, key)
		if (err != nil) != tc.wantErr || (c.Get(tc.name) != nil) == tc.wantErr {
			t.Errorf("%s: err %v, installed %v", tc.name, err, c.Get(tc.name) != nil)
		}
	}
	if _, ok := c.Answer("t1"); ok {
		t.Fatal("an answer before any was published")
	}
	c.SetRemote(map[string]string{"t1": "t1.thumb"})
	if v, ok := c.Answer("t1"); !ok || v != "t1.thumb" {
		t.Fatalf("published answer: %q %v", v, ok)
	}
	if _, _, _, err := (&CustomCerts{ACME: &ACME{}}).Finish(t.Context(), "shop.example.org"); err == nil {
		t.Fatal("finished an order never begun")
	}
}
