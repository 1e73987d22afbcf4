package certs

// Certificates from an ACME CA (RFC 8555) by HTTP-01, with golang.org/x/crypto/acme.
//
// Why not acme/autocert: its renewal window is capped at 30 days and cannot
// be driven, so renewal could not be tested end to end against a local CA;
// the protocol steps themselves are the library's. What this file adds:
//   - one issuance at a time per name; concurrent handshakes wait for it;
//   - certificates and the account key kept in data_dir/acme/ (key files
//     0600), so a restart does not ask the CA again;
//   - a renewal loop: a certificate with less than RenewBefore left is
//     replaced by a new one; handshakes pick the new one up, connections
//     already open keep theirs (nothing is dropped);
//   - failures remembered per name: a name whose order failed is not ordered
//     again on the next handshake but after RetryFirst (1 min), doubling up
//     to RetryMax (1 day), so a broken name cannot spend the CA's limits or
//     make every visitor wait for an order.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"

	"mysocketd/edge/dataplane/internal/answer"
	"mysocketd/edge/dataplane/internal/logx"
)

// ACMEChallengePrefix is the path under which the CA fetches HTTP-01 answers.
const ACMEChallengePrefix = "/.well-known/acme-challenge/"

// ACME obtains, keeps and renews certificates from an ACME CA.
type ACME struct {
	client      *acme.Client
	dir         string
	email       string
	renewBefore time.Duration
	allowed     func(string) bool
	mu          sync.Mutex
	certs       map[string]*tls.Certificate
	pending     map[string]chan struct{}
	tokens      sync.Map // token -> key authorization
	regMu       sync.Mutex
	registered  bool
	failed      map[string]failure // under mu
	RetryFirst  time.Duration      // after a name's first failure; doubled after each next one
	RetryMax    time.Duration
	// Published answers the HTTP-01 requests of orders another node made (custom hostnames:
	// the CA may ask any node); nil: none.
	Published func(token string) (string, bool)
}

// failure is when a name whose order failed may be ordered again.
type failure struct {
	until time.Time
	wait  time.Duration
	err   error
}

func NewACME(dataDir, directory, caFile, email string, renewBefore time.Duration) (*ACME, error) {
	dir := filepath.Join(dataDir, "acme")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := loadOrCreateKey(filepath.Join(dir, "account.key"))
	if err != nil {
		return nil, err
	}
	httpClient := http.DefaultClient
	if caFile != "" {
		pemBytes, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
		httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	a := &ACME{client: &acme.Client{Key: key, DirectoryURL: directory, HTTPClient: httpClient,
		UserAgent: "mysocketd-edge"}, dir: dir, email: email, renewBefore: renewBefore,
		certs: map[string]*tls.Certificate{}, pending: map[string]chan struct{}{},
		failed: map[string]failure{}, RetryFirst: time.Minute, RetryMax: 24 * time.Hour}
	return a, nil
}

// ServeChallenge answers the CA's HTTP-01 request.
func (a *ACME) ServeChallenge(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.URL.Path, ACMEChallengePrefix)
	if v, ok := a.tokens.Load(token); ok {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(v.(string)))
		return
	}
	if a.Published != nil {
		if v, ok := a.Published(token); ok {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(v))
			return
		}
	}
	answer.Write(w, http.StatusNotFound, answer.UnknownHost, "no such ACME challenge")
}

// Get returns the name's certificate, obtaining it first if there is none.
func (a *ACME) Get(name string) (*tls.Certificate, error) {
	for {
		a.mu.Lock()
		if c := a.certs[name]; c != nil {
			a.mu.Unlock()
			return c, nil
		}
		if c := a.fromDisk(name); c != nil {
			a.certs[name] = c
			a.mu.Unlock()
			return c, nil
		}
		if f, ok := a.failed[name]; ok && time.Now().Before(f.until) {
			a.mu.Unlock()
			return nil, fmt.Errorf("ACME: %s failed (%v); not ordered again before %s", name, f.err,
				f.until.UTC().Format(time.RFC3339))
		}
		if wait, busy := a.pending[name]; busy {
			a.mu.Unlock()
			<-wait
			a.mu.Lock()
			c := a.certs[name]
			a.mu.Unlock()
			if c == nil {
				return nil, fmt.Errorf("ACME: no certificate for %s", name)
			}
			return c, nil
		}
		a.mu.Unlock()
		if _, err := a.renew(name); err != nil {
			return nil, err
		}
	}
}

// renew obtains a new certificate for name and puts it in place.
func (a *ACME) renew(name string) (*tls.Certificate, error) {
	a.mu.Lock()
	if wait, busy := a.pending[name]; busy {
		a.mu.Unlock()
		<-wait
		return nil, nil
	}
	done := make(chan struct{})
	a.pending[name] = done
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.pending, name)
		a.mu.Unlock()
		close(done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cert, err := a.obtain(ctx, name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		f := a.failed[name]
		f.wait = min(max(f.wait*2, a.RetryFirst), a.RetryMax)
		f.until, f.err = time.Now().Add(f.wait), err
		if len(a.failed) > 10000 { // bounded, like the certificates of the internal CA
			a.failed = map[string]failure{}
		}
		a.failed[name] = f
		logx.Printf("ACME: %s: %v (next try in %s)", name, err, f.wait)
		return nil, err
	}
	delete(a.failed, name)
	a.certs[name] = cert
	logx.Printf("ACME: certificate for %s issued, serial %x, valid until %s", name, cert.Leaf.SerialNumber,
		cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return cert, nil
}

// register makes the ACME account once (the key in data_dir/acme/account.key).
func (a *ACME) register(ctx context.Context) error {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	if a.registered {
		return nil
	}
	acct := &acme.Account{}
	if a.email != "" {
		acct.Contact = []string{"mailto:" + a.email}
	}
	if _, err := a.client.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return fmt.Errorf("register: %w", err)
	}
	a.registered = true
	return nil
}

// orderHTTP01 orders name (registering first if need be) and answers its HTTP-01 challenges from
// tokens: the order, its challenges, their authorization URLs and the answers (token -> key
// authorization), which a node that is not the one ordering must give too.
func (a *ACME) orderHTTP01(ctx context.Context, name string) (*acme.Order, []*acme.Challenge, []string, map[string]string, error) {
	if err := a.register(ctx); err != nil {
		return nil, nil, nil, nil, err
	}
	order, err := a.client.AuthorizeOrder(ctx, acme.DomainIDs(name))
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("order: %w", err)
	}
	chals, authz, err := a.challenges(ctx, order, "http-01")
	if err != nil {
		return nil, nil, nil, nil, err
	}
	answers := map[string]string{}
	for _, chal := range chals {
		v, err := a.client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		answers[chal.Token] = v
	}
	for token, v := range answers {
		a.tokens.Store(token, v)
	}
	return order, chals, authz, answers, nil
}

func (a *ACME) obtain(ctx context.Context, name string) (*tls.Certificate, error) {
	order, chals, authz, answers, err := a.orderHTTP01(ctx, name)
	if err != nil {
		return nil, err
	}
	for token := range answers {
		defer a.tokens.Delete(token)
	}
	if err := a.prove(ctx, chals, authz); err != nil {
		return nil, err
	}
	cert, err := a.finalize(ctx, order.URI, []string{name})
	if err != nil {
		return nil, err
	}
	a.toDisk(name, cert)
	return cert, nil
}

// challenges are the order's challenges of type typ still to prove, with their authorization URLs.
func (a *ACME) challenges(ctx context.Context, order *acme.Order, typ string) ([]*acme.Challenge, []string, error) {
	var chals []*acme.Challenge
	var authz []string
	for _, u := range order.AuthzURLs {
		z, err := a.client.GetAuthorization(ctx, u)
		if err != nil {
			return nil, nil, err
		}
		if z.Status == acme.StatusValid { // reused by the CA: nothing to prove
			continue
		}
		var chal *acme.Challenge
		for _, c := range z.Challenges {
			if c.Type == typ {
				chal = c
			}
		}
		if chal == nil {
			return nil, nil, fmt.Errorf("the CA offers no %s challenge", typ)
		}
		chals, authz = append(chals, chal), append(authz, z.URI)
	}
	return chals, authz, nil
}

// prove tells the CA the answers are in place and waits for each authorization.
func (a *ACME) prove(ctx context.Context, chals []*acme.Challenge, authz []string) error {
	for i, chal := range chals {
		if _, err := a.client.Accept(ctx, chal); err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		if _, err := a.client.WaitAuthorization(ctx, authz[i]); err != nil {
			return fmt.Errorf("authorization: %w", err)
		}
	}
	return nil
}

// finalize waits for the order to be ready and has the CA sign a new key for names.
func (a *ACME) finalize(ctx context.Context, orderURI string, names []string) (*tls.Certificate, error) {
	order, err := a.client.WaitOrder(ctx, orderURI)
	if err != nil {
		return nil, fmt.Errorf("order: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, key)
	if err != nil {
		return nil, err
	}
	der, _, err := a.client.CreateOrderCert(ctx, order.FinalizeURL, csr, true)
	if err != nil {
		return nil, fmt.Errorf("finalize: %w", err)
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: der, PrivateKey: key, Leaf: leaf}, nil
}

// RenewLoop renews, every interval, the certificates that have less than renewBefore left.
func (a *ACME) RenewLoop(interval time.Duration, stillServed func(string) bool) {
	for range time.Tick(interval) {
		a.mu.Lock()
		var due []string
		for name, c := range a.certs {
			if time.Until(c.Leaf.NotAfter) < a.renewBefore && stillServed(name) {
				due = append(due, name)
			}
		}
		a.mu.Unlock()
		for _, name := range due {
			a.renew(name)
		}
	}
}

func (a *ACME) certPath(name string) string { return filepath.Join(a.dir, name+".pem") }

// toPEM is a certificate's chain and its key, PEM.
func toPEM(c *tls.Certificate) (chain, key []byte, err error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, nil, err
	}
	for _, der := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func (a *ACME) toDisk(name string, c *tls.Certificate) {
	chain, key, err := toPEM(c)
	if err != nil {
		return
	}
	if err := writeFile0600(a.certPath(name), append(key, chain...)); err != nil {
		logx.Printf("ACME: cannot keep the certificate of %s: %v", name, err)
	}
}

func (a *ACME) fromDisk(name string) *tls.Certificate {
	data, err := os.ReadFile(a.certPath(name))
	if err != nil {
		return nil
	}
	pair, err := tls.X509KeyPair(data, data)
	if err != nil {
		return nil
	}
	if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil || time.Now().After(pair.Leaf.NotAfter) {
		return nil
	}
	return &pair
}

func loadOrCreateKey(path string) (crypto.Signer, error) {
	if data, err := os.ReadFile(path); err == nil {
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("%s: not PEM", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		return k.(crypto.Signer), nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	return key, writeFile0600(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}
