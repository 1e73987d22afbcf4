package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mysocketd/edge/dataplane/internal/state"
)

func TestLoadOrCreateCA(t *testing.T) {
	dir := t.TempDir()
	ca, key, err := LoadOrCreateCA(dir, []string{"edge.test"})
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || ca.Subject.CommonName != "mysocketd edge internal CA" {
		t.Fatalf("CA %+v", ca.Subject)
	}
	files := []struct {
		name string
		mode os.FileMode
	}{{"ca.key", 0o600}, {"ca.crt", 0o644}}
	for _, f := range files {
		st, err := os.Stat(filepath.Join(dir, f.name))
		if err != nil || st.Mode().Perm() != f.mode {
			t.Errorf("%s: %v mode %v, want %v", f.name, err, st.Mode().Perm(), f.mode)
		}
	}
	again, againKey, err := LoadOrCreateCA(dir, []string{"other.test"})
	if err != nil || !bytes.Equal(again.Raw, ca.Raw) || !againKey.(*ecdsa.PrivateKey).Equal(key) {
		t.Fatalf("a second start made another CA (err %v)", err)
	}
}

// given makes a certificate for *.given.test signed by itself.
func given(t *testing.T) *tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "*.given.test"},
		DNSNames: []string{"*.given.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestChooserGet(t *testing.T) {
	ca, caKey, err := LoadOrCreateCA(t.TempDir(), []string{"edge.localhost"})
	if err != nil {
		t.Fatal(err)
	}
	holder := state.NewHolder("")
	holder.Replace(state.StateIn{Sockets: []state.SocketIn{
		{SocketID: "s1", DNSName: "web.edge.localhost", Type: "http"},
		{SocketID: "s2", DNSName: "secure.edge.localhost", Type: "https"},
		{SocketID: "s3", DNSName: "pass.edge.localhost", Type: "tls"},
		{SocketID: "s4", DNSName: "db.edge.localhost", Type: "tcp"},
		{SocketID: "s5", DNSName: "app.given.test", Type: "http"},
		{SocketID: "s6", DNSName: "shop.edge.localhost", Type: "http", Hostnames: []string{"shop.example.org"}},
	}})
	c := &Chooser{State: holder, APIName: "api.edge.localhost", Given: given(t), CA: ca, CAKey: caKey}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	cases := []struct {
		sni  string
		want string // "internal:<name>", "given", or "" for no certificate
	}{
		{"web.edge.localhost", "internal:web.edge.localhost"},
		{"Web.Edge.Localhost.", "internal:web.edge.localhost"},
		{"secure.edge.localhost", "internal:secure.edge.localhost"},
		{"api.edge.localhost", "internal:api.edge.localhost"},
		{"", "internal:api.edge.localhost"}, // no SNI: the API's
		{"pass.edge.localhost", ""},         // tls sockets hold their own certificate
		{"db.edge.localhost", ""},
		{"made-up.edge.localhost", ""}, // never for a name the edge does not serve
		{"app.given.test", "given"},
		{"anything.given.test", "given"}, // the given certificate covers what it covers
		{"shop.edge.localhost", "internal:shop.edge.localhost"},
		{"shop.example.org", ""}, // a verified custom name: ACME only (none here), never the internal CA
	}
	for _, tc := range cases[len(cases)-1:] {
		if _, err := c.Get(&tls.ClientHelloInfo{ServerName: tc.sni}); err == nil ||
			!strings.Contains(err.Error(), "never signs names outside its zone") {
			t.Fatalf("%s: %v", tc.sni, err)
		}
	}
	for _, tc := range cases {
		t.Run(tc.sni, func(t *testing.T) {
			cert, err := c.Get(&tls.ClientHelloInfo{ServerName: tc.sni})
			switch {
			case tc.want == "":
				if err == nil {
					t.Fatalf("a certificate for %q", tc.sni)
				}
			case tc.want == "given":
				if err != nil || cert != c.Given {
					t.Fatalf("not the given certificate: %v", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				name := tc.want[len("internal:"):]
				if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
					t.Fatalf("leaf does not verify for %s under the CA: %v", name, err)
				}
				again, _ := c.Get(&tls.ClientHelloInfo{ServerName: tc.sni})
				if again != cert {
					t.Fatal("a second handshake got a new certificate")
				}
			}
		})
	}
}

// The CA vouches for the zone's names and for nothing else, even when its key signs them.
func TestCAIsNameConstrained(t *testing.T) {
	ca, caKey, err := LoadOrCreateCA(t.TempDir(), []string{"edge.test", "api.example.net"})
	if err != nil {
		t.Fatal(err)
	}
	if !ca.PermittedDNSDomainsCritical {
		t.Fatal("the name constraints are not critical")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	cases := []struct {
		dns []string
		ip  string
		ok  bool
	}{
		{[]string{"a.edge.test"}, "", true},
		{[]string{"edge.test"}, "", true},
		{[]string{"api.example.net"}, "", true},
		{[]string{"www.example.com"}, "", false},
		{[]string{"a.edge.test", "www.example.com"}, "", false},
		{[]string{"edge.test.evil.com"}, "", false},
		{[]string{"shop.example.net"}, "", false},
		{[]string{"a.edge.test"}, "192.0.2.1", false},
	}
	for _, c := range cases {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: c.dns[0]},
			DNSNames: c.dns, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if c.ip != "" {
			tmpl.IPAddresses = []net.IP{net.ParseIP(c.ip)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots})
		if (err == nil) != c.ok {
			t.Errorf("%v %s: verify error %v, want ok %v", c.dns, c.ip, err, c.ok)
		}
	}
}
