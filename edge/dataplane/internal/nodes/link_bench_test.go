package nodes

// The figures behind the choice of the link (edge/README.md, "The link between nodes"):
// what one visitor connection costs to open, and one small exchange on it, through
//   - nothing (a TCP connection straight to the target: the floor),
//   - an SSH link already up (one channel per visitor connection: this package),
//   - mutual TLS (a new TLS 1.3 connection with client certificates per visitor
//     connection, the usual alternative).
// go test -run '^$' -bench . -benchtime 2s ./internal/nodes/

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

func exchange(b *testing.B, c io.ReadWriter) {
	buf := make([]byte, 64)
	if _, err := c.Write(buf); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		b.Fatal(err)
	}
}

func linkForBench(b *testing.B) *Link {
	t := &testing.T{}
	key, echo := signer(t), echoServer(t)
	a := startNode(t, "a", key, "s3cret", echo)
	bn := startNode(t, "b", key, "s3cret", echo)
	a.links.Update([]Peer{{"b", bn.addr}})
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if l := a.links.Get("b"); l != nil {
			return l
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatal("no link")
	return nil
}

func BenchmarkNewConnDirect(b *testing.B) {
	echo := echoServer(&testing.T{})
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", echo)
		if err != nil {
			b.Fatal(err)
		}
		exchange(b, c)
		c.Close()
	}
}

func BenchmarkNewConnSSHLink(b *testing.B) {
	link := linkForBench(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ch, err := relay(link, 7)
		if err != nil {
			b.Fatal(err)
		}
		exchange(b, ch)
		ch.Close()
	}
}

func BenchmarkKeepAliveSSHLink(b *testing.B) {
	link := linkForBench(b)
	ch, err := relay(link, 7)
	if err != nil {
		b.Fatal(err)
	}
	defer ch.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		exchange(b, ch)
	}
}

func BenchmarkKeepAliveDirect(b *testing.B) {
	c, err := net.Dial("tcp", echoServer(&testing.T{}))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < b.N; i++ {
		exchange(b, c)
	}
}

func mtlsPair(b *testing.B) (*tls.Config, *tls.Config) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "node"},
		DNSNames: []string{"node"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	pair := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	server := &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	client := &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: "node",
		MinVersion: tls.VersionTLS13, ClientSessionCache: nil}
	return server, client
}

func tlsEcho(b *testing.B, cfg *tls.Config) string {
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

func BenchmarkNewConnMutualTLS(b *testing.B) {
	server, client := mtlsPair(b)
	addr := tlsEcho(b, server)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := tls.Dial("tcp", addr, client)
		if err != nil {
			b.Fatal(err)
		}
		exchange(b, c)
		c.Close()
	}
}

func BenchmarkKeepAliveMutualTLS(b *testing.B) {
	server, client := mtlsPair(b)
	c, err := tls.Dial("tcp", tlsEcho(b, server), client)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		exchange(b, c)
	}
}
