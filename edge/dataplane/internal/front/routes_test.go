package front

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"

	"mysocketd/edge/dataplane/internal/state"
)

// An HTTPS listener on a Gateway's own address offers h2 then http/1.1, as the edge's own names
// do: a GRPCRoute on it is reached by gRPC clients over TLS (which ask for h2 by ALPN).
func TestOwnAddressHTTPSListenersOfferH2(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shop.example.com"},
		DNSNames: []string{"shop.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	table, _ := json.Marshal(map[string]any{
		"listeners": []map[string]any{{"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "shop.example.com",
			"certificates": []map[string]string{{
				"cert": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
				"key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))}}}},
		"actions": []any{}})
	h := state.NewHolder("")
	h.Replace(state.StateIn{Version: 1, Sockets: []state.SocketIn{
		{SocketID: "gw", DNSName: "gw.edge.localhost", Type: "http", Address: "127.100.9.1", Routes: table}}})
	sock := h.ByAddress("127.100.9.1")
	if sock == nil || sock.RoutesErr != nil {
		t.Fatalf("socket: %+v", sock)
	}
	for _, tc := range []struct {
		offered []string
		want    string
	}{{[]string{"h2", "http/1.1"}, "h2"}, {[]string{"http/1.1"}, "http/1.1"}} {
		handed := NewChanListener(nil)
		front := &TLS{http: handed}
		client, server := net.Pipe()
		go front.serveOwnAddress(server, "shop.example.com", sock)
		done := make(chan error, 1)
		go func() {
			c, err := handed.Accept()
			if err == nil {
				err = c.(*tls.Conn).Handshake()
			}
			done <- err
		}()
		conn := tls.Client(client, &tls.Config{ServerName: "shop.example.com", NextProtos: tc.offered,
			InsecureSkipVerify: true})
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if err := conn.Handshake(); err != nil {
			t.Fatalf("%v: %v", tc.offered, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("%v: server: %v", tc.offered, err)
		}
		if got := conn.ConnectionState().NegotiatedProtocol; got != tc.want {
			t.Errorf("offered %v: negotiated %q, want %q", tc.offered, got, tc.want)
		}
		conn.Close()
		handed.Close()
	}
}
