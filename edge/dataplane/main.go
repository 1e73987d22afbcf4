// Command dataplane is the edge's data plane: the SSH server that accepts
// reverse tunnels, the public HTTP, HTTPS/TLS and TCP fronts. The Python edge
// (python -m edge) starts it, pushes accounts and sockets to it over a unix
// control socket, and supervises it; see edge/README.md for why the bytes go
// through Go while the REST API and the policy stay in Python.
//
// Once every port listens it prints one line on stdout:
//
//	DATAPLANE READY ssh=H:P http=H:P https=H:P
//
// and logs go to stderr. SIGTERM/SIGINT stop it within about a second.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"mysocketd/edge/dataplane/internal/auth"
	"mysocketd/edge/dataplane/internal/certs"
	"mysocketd/edge/dataplane/internal/control"
	"mysocketd/edge/dataplane/internal/dns"
	"mysocketd/edge/dataplane/internal/front"
	"mysocketd/edge/dataplane/internal/limits"
	"mysocketd/edge/dataplane/internal/logx"
	"mysocketd/edge/dataplane/internal/metrics"
	"mysocketd/edge/dataplane/internal/nodes"
	"mysocketd/edge/dataplane/internal/signin"
	"mysocketd/edge/dataplane/internal/sshd"
	"mysocketd/edge/dataplane/internal/state"
	"mysocketd/edge/dataplane/internal/tunnels"
)

type options struct {
	listen, control, hostKey, dataDir, domain, apiName, apiUpstream string
	sshPort, httpPort, httpsPort                                    int
	keepalive, openFirst, openLast, acmeRenewBefore, acmeCheck      time.Duration
	keepaliveCount                                                  int
	acmeDirectory, acmeCA, acmeEmail, tlsCert, tlsKey               string
	nodeName, clusterSecretFile                                     string
	linkPort, h2MaxStreams                                          int

	bounds                             front.Bounds
	sshHandshake                       time.Duration
	connsPerVisitor, preauthPerAddress int
	preauthTotal, authCheckMiB         int
	dnsListen, dnsNS                   string
	dnsTTL                             time.Duration
	dnsAnswersPerMinute                float64
	acmeWildcard                       bool
	signin                             signinFlags
}

// signinFlags: the OIDC sign-in of cloud-auth sockets (internal/signin).
type signinFlags struct {
	issuer, clientID, clientSecretFile, secretFile, publicURL string
	cfg                                                       signin.Config
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1", "address every public port listens on")
	flag.IntVar(&o.sshPort, "ssh-port", 2222, "SSH port (0: any)")
	flag.IntVar(&o.httpPort, "http-port", 8000, "public HTTP port (0: any)")
	flag.IntVar(&o.httpsPort, "https-port", 8443, "public TLS port (0: any)")
	flag.StringVar(&o.control, "control", "", "unix socket path of the control API (required)")
	flag.StringVar(&o.hostKey, "host-key", "", "SSH host key file, OpenSSH format (required)")
	flag.StringVar(&o.dataDir, "data-dir", ".", "directory for the internal CA and ACME state")
	flag.StringVar(&o.domain, "domain", "edge.localhost", "domain of the socket names")
	flag.StringVar(&o.apiName, "api-name", "", "public name of the REST API on the TLS port")
	flag.StringVar(&o.apiUpstream, "api-upstream", "", "host:port of the REST API (plain HTTP)")
	flag.DurationVar(&o.keepalive, "keepalive-interval", time.Second, "server keepalive interval")
	flag.IntVar(&o.keepaliveCount, "keepalive-count", 3, "unanswered keepalive intervals before a session is closed")
	flag.DurationVar(&o.openFirst, "open-timeout", time.Second, "channel-open wait while another tunnel is left to try")
	flag.DurationVar(&o.openLast, "open-timeout-last", 10*time.Second, "channel-open wait for a socket's last tunnel")
	flag.StringVar(&o.acmeDirectory, "acme-directory", "", "ACME directory URL (empty: no ACME)")
	flag.StringVar(&o.acmeCA, "acme-ca", "", "PEM file of the CA that signs the ACME server's own TLS certificate")
	flag.StringVar(&o.acmeEmail, "acme-email", "", "contact e-mail for the ACME account")
	flag.DurationVar(&o.acmeRenewBefore, "acme-renew-before", 30*24*time.Hour, "renew ACME certificates with less than this left")
	flag.DurationVar(&o.acmeCheck, "acme-check-interval", time.Hour, "how often certificates are checked for renewal")
	flag.StringVar(&o.tlsCert, "tls-cert", "", "a given certificate (e.g. a wildcard), PEM")
	flag.StringVar(&o.tlsKey, "tls-key", "", "its private key, PEM")
	flag.StringVar(&o.nodeName, "node-name", "", "this node's name among the edge's nodes (empty: one node)")
	flag.IntVar(&o.linkPort, "link-port", -1, "port of the link between nodes (-1: none; 0: any)")
	flag.StringVar(&o.clusterSecretFile, "cluster-secret-file", "", "file with the secret every node shares (with --link-port)")
	flag.BoolVar(&o.acmeWildcard, "acme-wildcard", false, "the zone and every label under it get one wildcard by DNS-01, ordered when the control plane says (needs --acme-directory)")
	flag.StringVar(&o.dnsListen, "dns-listen", "", "host:port of the zone's authoritative DNS, UDP and TCP (empty: none)")
	flag.StringVar(&o.dnsNS, "dns-ns", "", "the zone's name servers, comma-separated (default ns1.<domain>,ns2.<domain>)")
	flag.DurationVar(&o.dnsTTL, "dns-ttl", 30*time.Second, "TTL of the DNS answers")
	flag.Float64Var(&o.dnsAnswersPerMinute, "dns-answers-per-minute", 1200, "UDP DNS answers per source address (IPv6: /64) per minute (0: no limit)")
	flag.IntVar(&o.h2MaxStreams, "h2-max-streams", 100, "concurrent HTTP/2 streams per visitor connection")
	boundsFlags(&o)
	sf := &o.signin
	flag.StringVar(&sf.issuer, "oidc-issuer", "", "OpenID Connect issuer URL for the sign-in of cloud-auth sockets (empty: they answer 403)")
	flag.StringVar(&sf.clientID, "oidc-client-id", "", "the edge's client id at the issuer")
	flag.StringVar(&sf.clientSecretFile, "oidc-client-secret-file", "", "file holding the edge's client secret")
	flag.StringVar(&sf.secretFile, "signin-secret-file", "", "file with the secret sessions and assertions are sealed and signed with, the same on every node (default: --cluster-secret-file, else <data-dir>/signin.secret, made once)")
	flag.StringVar(&sf.publicURL, "signin-public-url", "", "the edge's own name as visitors reach it (default https://<api-name>[:<https port>])")
	flag.DurationVar(&sf.cfg.Session, "signin-session", 12*time.Hour, "how long a visitor's sign-in lasts")
	flag.DurationVar(&sf.cfg.Timeout, "signin-timeout", 10*time.Second, "each call to the identity provider")
	flag.Float64Var(&sf.cfg.PerMinute, "signin-per-minute", 30, "sign-in starts and callbacks per visitor (an address; IPv6 /64) per minute (0: no limit)")
	flag.Parse()
	o.bounds.PeekTimeout = o.bounds.HeadTimeout
	if o.control == "" || o.hostKey == "" {
		fmt.Fprintln(os.Stderr, "dataplane: --control and --host-key are required")
		os.Exit(2)
	}
	return o
}

// boundsFlags: the timeouts and visitor limits (0 switches one off; edge/README.md lists them).
func boundsFlags(o *options) {
	b := &o.bounds
	flag.DurationVar(&b.HeadTimeout, "head-timeout", 10*time.Second, "a request head (or a TLS ClientHello) must arrive within this")
	flag.DurationVar(&b.BodyReadTimeout, "body-read-timeout", 15*time.Second, "a request body must bring a byte within this of the last (408)")
	flag.DurationVar(&b.ResponseHeaderTimeout, "response-header-timeout", 100*time.Second, "the app must begin its answer within this (504)")
	flag.DurationVar(&b.IdleTimeout, "idle-timeout", 60*time.Second, "a keep-alive connection is closed after this without a request")
	flag.DurationVar(&b.SendTimeout, "send-timeout", 60*time.Second, "a visitor must take each write of an answer within this")
	flag.DurationVar(&b.UpgradeIdleTimeout, "upgrade-idle-timeout", 300*time.Second, "an upgraded (WebSocket) connection is closed after this without a byte either way")
	flag.DurationVar(&b.SpliceIdleTimeout, "splice-idle-timeout", 600*time.Second, "a tls passthrough or tcp connection is closed after this without a byte either way")
	flag.Float64Var(&b.VisitorShare, "visitor-share", 0.05, "share of an account's connection quota one visitor (an address; IPv6 /64) may hold")
	flag.IntVar(&o.connsPerVisitor, "conns-per-visitor", 256, "open public connections (HTTP, HTTPS, TCP) one visitor may hold")
	flag.DurationVar(&o.sshHandshake, "ssh-handshake-timeout", 10*time.Second, "an SSH connection must log in within this")
	flag.IntVar(&o.preauthPerAddress, "ssh-preauth-per-address", 64, "SSH connections not logged in yet, per address")
	flag.IntVar(&o.preauthTotal, "ssh-preauth-total", 1024, "SSH connections not logged in yet, in all (more wait in the backlog)")
	flag.IntVar(&o.authCheckMiB, "auth-check-memory", 128, "MiB of scrypt password checks at once (more are shed: 503)")
}

func listen(host string, port int) net.Listener {
	l, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
	if err != nil {
		logx.Printf("cannot listen: %v", err)
		os.Exit(1)
	}
	return l
}

func main() {
	// End with the Python edge that started us, even if it is SIGKILLed.
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
	if os.Getppid() == 1 {
		os.Exit(1)
	}
	o := parseFlags()
	// Requests allocate a little each and the heap stays small: collect less
	// often (GOGC=400 unless the environment says otherwise).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	// ...but never let garbage (the 16 MiB of each password check above all)
	// pile up past a soft limit: the password checks' budget and room for the
	// rest (GOMEMLIMIT, Go's own variable, overrides it).
	authBudget := int64(o.authCheckMiB) << 20
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(authBudget + 384<<20)
	}
	keyPEM, err := os.ReadFile(o.hostKey)
	if err != nil {
		logx.Printf("cannot read the host key: %v", err)
		os.Exit(1)
	}
	hostKey, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		logx.Printf("cannot parse the host key: %v", err)
		os.Exit(1)
	}
	holder := state.NewHolder(o.nodeName)
	reg := tunnels.NewRegistry(o.openFirst, o.openLast, func(s *tunnels.Session) {
		logx.Printf("closing the SSH session of %s (%s): it serves no tunnel any more", s.UserName, s.Peer)
		s.Conn.Close()
	})
	sshServer := sshd.NewServer(holder, reg, hostKey, o.keepalive, o.keepaliveCount)
	sshServer.HandshakeTimeout = o.sshHandshake

	zoneName := strings.TrimSuffix(strings.ToLower(o.domain), ".")
	permitted := []string{zoneName}
	if api := strings.ToLower(o.apiName); api != "" && api != zoneName && !strings.HasSuffix(api, "."+zoneName) {
		permitted = append(permitted, api)
	}
	ca, caKey, err := certs.LoadOrCreateCA(o.dataDir, permitted)
	if err != nil {
		logx.Printf("internal CA: %v", err)
		os.Exit(1)
	}
	given, err := certs.LoadGiven(o.tlsCert, o.tlsKey)
	if err != nil {
		logx.Printf("--tls-cert/--tls-key: %v", err)
		os.Exit(1)
	}
	chooser := &certs.Chooser{State: holder, APIName: strings.ToLower(o.apiName), Given: given, CA: ca, CAKey: caKey}
	var acmeMgr *certs.ACME
	if o.acmeDirectory != "" {
		if acmeMgr, err = certs.NewACME(o.dataDir, o.acmeDirectory, o.acmeCA, o.acmeEmail, o.acmeRenewBefore); err != nil {
			logx.Printf("ACME: %v", err)
			os.Exit(1)
		}
		chooser.ACME = acmeMgr
		chooser.Custom = &certs.CustomCerts{ACME: acmeMgr}
		acmeMgr.Published = chooser.Custom.Answer
		go acmeMgr.RenewLoop(o.acmeCheck, chooser.Renewable)
	}
	var zoneOrders *certs.ZoneOrders
	if o.acmeWildcard && acmeMgr != nil {
		chooser.Zone = &certs.ZoneCert{Zone: zoneName}
		zoneOrders = &certs.ZoneOrders{ACME: acmeMgr, Zone: chooser.Zone}
	}
	holdings := limits.NewHoldings()
	meters := metrics.New(metrics.Sources{Live: holder.HasSocket, Accounts: holder.AccountIDs, Tunnels: reg.BySocket,
		Connections: holdings.Accounts, Sessions: sshServer.SessionsByAccount, Certificates: chooser.Expiries,
		Limits: func() (int, int) {
			l := holder.Limits()
			return l.SessionsPerAccount, l.ConnectionsPerAccount
		}})
	reg.Metrics = meters
	shared := front.Shared{State: holder, Tunnels: reg, Holdings: holdings, Bounds: o.bounds, Metrics: meters}
	checks := auth.Options{MemoryBudget: authBudget, VisitorShare: o.bounds.VisitorShare}
	httpFront := front.NewHTTP(shared, checks, strings.ToLower(o.apiName), o.apiUpstream, acmeMgr)
	visitors := limits.NewCounts() // open public connections per visitor, across the fronts
	tcp := front.NewTCP(shared, o.listen, visitors, o.connsPerVisitor)
	httpFront.SetH2(front.H2{MaxStreams: o.h2MaxStreams})

	os.Remove(o.control)
	controlL, err := net.Listen("unix", o.control)
	if err != nil {
		logx.Printf("control socket: %v", err)
		os.Exit(1)
	}
	os.Chmod(o.control, 0o600)
	sshL := limits.NewListener(listen(o.listen, o.sshPort), "ssh pre-auth", limits.NewCounts(),
		o.preauthPerAddress, o.preauthTotal)
	httpL := limits.NewListener(listen(o.listen, o.httpPort), "http", visitors, o.connsPerVisitor, 0)
	httpsL := limits.NewListener(listen(o.listen, o.httpsPort), "https", visitors, o.connsPerVisitor, 0)
	tlsConns := front.NewChanListener(httpsL.Addr())
	tlsFront := front.NewTLS(shared, chooser, tlsConns)

	signIn, err := newSignIn(o, holder, httpsL.Addr())
	if err != nil {
		logx.Printf("sign-in: %v", err)
		os.Exit(1)
	}
	httpFront.SetSignIn(signIn)

	httpSrv, httpsSrv := httpFront.NewServer(), httpFront.NewServer()
	var links *nodes.Links
	var linkL net.Listener
	linkReady := ""
	if o.linkPort >= 0 { // many nodes: the link to the others (internal/nodes)
		secret, err := os.ReadFile(o.clusterSecretFile)
		if err != nil || len(bytes.TrimSpace(secret)) < 16 {
			logx.Printf("--cluster-secret-file: a secret of at least 16 characters is required with --link-port (%v)", err)
			os.Exit(1)
		}
		links = nodes.New(nodes.Config{Name: o.nodeName, HostKey: hostKey, Secret: bytes.TrimSpace(secret),
			Local: reg, Held: reg.HeldPorts, Logf: logx.Printf})
		reg.SetLinks(links, o.nodeName)
		// the link port is public too: the same pre-auth caps as the SSH port
		linkL = limits.NewListener(listen(o.listen, o.linkPort), "link pre-auth", limits.NewCounts(),
			o.preauthPerAddress, o.preauthTotal)
		go links.Serve(linkL)
		linkReady = " link=" + linkL.Addr().String()
	}
	var zone *dns.Server
	var dnsSrv *dns.Servers
	dnsReady := ""
	if o.dnsListen != "" { // the zone's own DNS (internal/dns)
		zone = dns.New(dns.Config{Zone: o.domain, NS: strings.Split(o.dnsNS, ","),
			TTL: uint32(o.dnsTTL / time.Second), AnswersPerMinute: o.dnsAnswersPerMinute})
		if dnsSrv, err = dns.Listen(o.dnsListen, zone); err != nil {
			logx.Printf("cannot listen for DNS: %v", err)
			os.Exit(1)
		}
		dnsReady = " dns=" + dnsSrv.Addr
	}
	controlSrv := &http.Server{Handler: (&control.API{State: holder, Tunnels: reg, SSH: sshServer, TCP: tcp,
		Links: links, DNS: zone, Wildcard: zoneOrders, Metrics: meters, Custom: chooser.Custom, SignIn: signIn}).Handler()}
	go controlSrv.Serve(controlL)
	go sshServer.Serve(sshL)
	go httpSrv.Serve(httpL)
	go httpsSrv.Serve(tlsConns)
	go tlsFront.Serve(httpsL)

	fmt.Printf("DATAPLANE READY ssh=%s http=%s https=%s%s%s\n", sshL.Addr(), httpL.Addr(), httpsL.Addr(), linkReady, dnsReady)
	logx.Printf("up: ssh=%s http=%s https=%s acme=%q internal_ca=%s/ca.crt", sshL.Addr(), httpL.Addr(),
		httpsL.Addr(), o.acmeDirectory, o.dataDir)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	logx.Printf("stopping")
	sshL.Close()
	httpsL.Close()
	if links != nil {
		linkL.Close()
		links.Close()
	}
	if dnsSrv != nil {
		dnsSrv.Close()
	}
	tcp.CloseAll()
	sshServer.CloseAll()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	httpSrv.Shutdown(ctx)
	httpsSrv.Shutdown(ctx)
	controlSrv.Close()
	os.Remove(o.control)
	logx.Printf("stopped")
}

// newSignIn reads the sign-in's secrets (never logged) and makes it; with no
// --oidc-issuer it only refuses cloud-auth sockets.
func newSignIn(o options, holder *state.Holder, https net.Addr) (*signin.Service, error) {
	sf := o.signin
	cfg := sf.cfg
	if sf.issuer == "" {
		return signin.New(cfg, holder)
	}
	cfg.Issuer, cfg.ClientID = sf.issuer, sf.clientID
	if sf.clientSecretFile != "" {
		b, err := os.ReadFile(sf.clientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("--oidc-client-secret-file: %v", err)
		}
		cfg.ClientSecret = string(bytes.TrimSpace(b))
	}
	secretFile := sf.secretFile
	if secretFile == "" {
		secretFile = o.clusterSecretFile
	}
	if secretFile == "" {
		secretFile = filepath.Join(o.dataDir, "signin.secret")
		if _, err := os.Stat(secretFile); os.IsNotExist(err) {
			b := make([]byte, 32)
			rand.Read(b)
			if err := os.WriteFile(secretFile, []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
				return nil, err
			}
		}
	}
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		return nil, fmt.Errorf("the sign-in secret: %v", err)
	}
	cfg.Secret = bytes.TrimSpace(secret)
	cfg.PublicURL = sf.publicURL
	if cfg.PublicURL == "" {
		if o.apiName == "" {
			return nil, fmt.Errorf("--oidc-issuer needs --api-name or --signin-public-url: the callback lives on the edge's own name")
		}
		_, port, _ := net.SplitHostPort(https.String())
		cfg.PublicURL = "https://" + strings.ToLower(o.apiName)
		if port != "443" {
			cfg.PublicURL += ":" + port
		}
	}
	s, err := signin.New(cfg, holder)
	if err == nil {
		logx.Printf("sign-in: issuer %s, client %s, callback %s%s", cfg.Issuer, cfg.ClientID, cfg.PublicURL, signin.CallbackPath)
	}
	return s, err
}
