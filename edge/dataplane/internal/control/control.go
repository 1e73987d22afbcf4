// Package control answers "what does the control plane ask of us": the
// control socket (HTTP over a unix socket, JSON) through which the
// Python control plane drives this process. Only the edge's own Python
// process can reach it (a file in its data directory, mode 0600).
package control

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"mysocketd/edge/dataplane/internal/certs"
	"mysocketd/edge/dataplane/internal/dns"
	"mysocketd/edge/dataplane/internal/front"
	"mysocketd/edge/dataplane/internal/logx"
	"mysocketd/edge/dataplane/internal/metrics"
	"mysocketd/edge/dataplane/internal/nodes"
	"mysocketd/edge/dataplane/internal/routes"
	"mysocketd/edge/dataplane/internal/signin"
	"mysocketd/edge/dataplane/internal/sshd"
	"mysocketd/edge/dataplane/internal/state"
	"mysocketd/edge/dataplane/internal/tunnels"
)

// API is the control socket's handler and what it drives.
type API struct {
	State    *state.Holder
	Tunnels  *tunnels.Registry
	SSH      *sshd.Server
	TCP      *front.TCP
	Links    *nodes.Links       // nil: one node, no links
	DNS      *dns.Server        // nil: no DNS served
	Wildcard *certs.ZoneOrders  // nil: no wildcard for the zone by DNS-01
	Metrics  *metrics.Edge      // GET /metrics (nil: 404)
	Custom   *certs.CustomCerts // custom hostnames' certificates; nil: no ACME
	SignIn   *signin.Service    // GET /signin/keys; nil or without a provider: 404
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// readJSON decodes the body into v; on error it answers 400 and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 256<<20)).Decode(v); err != nil {
		writeJSON(w, 400, map[string]string{"error_message": err.Error()})
		return false
	}
	return true
}

// Handler serves the control API.
func (c *API) Handler() http.Handler {
	mux := http.NewServeMux()
	// CPU and heap profiles for `make bench` and operators (the control socket is 0600).
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.Handle("GET /debug/pprof/heap", pprof.Handler("heap"))
	// The edge's metrics in Prometheus text (internal/metrics); the control plane serves them to
	// operators on its opt-in --metrics-listen, never on a public front.
	if c.Metrics != nil {
		mux.Handle("GET /metrics", c.Metrics.Handler())
	}
	mux.HandleFunc("PUT /state", func(w http.ResponseWriter, r *http.Request) {
		var in state.StateIn
		if !readJSON(w, r, &in) {
			return
		}
		if changes, ok := c.State.Replace(in); ok {
			c.Tunnels.Follow(changes)
			c.Metrics.Prune() // the whole picture: any socket not in it is gone
		}
		writeJSON(w, 200, map[string]int64{"version": c.State.Version()})
	})
	// Only what changed: costs the records named, whatever the total (state.Apply).
	mux.HandleFunc("PATCH /state", func(w http.ResponseWriter, r *http.Request) {
		var in state.DeltaIn
		if !readJSON(w, r, &in) {
			return
		}
		if changes, ok := c.State.Apply(in); ok {
			c.Tunnels.Follow(changes)
			c.Metrics.Forget(in.SocketsGone...) // after Follow: the forwards' drops are counted first
		}
		writeJSON(w, 200, map[string]int64{"version": c.State.Version()})
	})
	// A route table the API is asked to store: the data plane is the judge of whether it can
	// serve it (regular expressions, certificates, indexes), so a table is refused whole, with
	// the reason, before anything is stored.
	mux.HandleFunc("POST /routes/check", func(w http.ResponseWriter, r *http.Request) {
		var t routes.Table
		if !readJSON(w, r, &t) {
			return
		}
		if _, err := routes.Compile(t); err != nil {
			writeJSON(w, 422, map[string]string{"error_message": err.Error()})
			return
		}
		writeJSON(w, 200, map[string]bool{"ok": true})
	})
	// The live nodes: links to them are dialled, links to the others closed, and the
	// zone's DNS answers with their public addresses.
	mux.HandleFunc("PUT /nodes", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Nodes []struct {
				nodes.Peer
				Host      string   `json:"tunnel_server"`
				Addresses []string `json:"addresses"`
				Challenge []string `json:"challenge"`
			} `json:"nodes"`
		}
		if !readJSON(w, r, &in) {
			return
		}
		peers, named, http01 := []nodes.Peer{}, []dns.Node{}, map[string]string{}
		for _, n := range in.Nodes {
			txt := []string{}
			for _, v := range n.Challenge { // "http01:<token>=<key authorization>": a custom name's order
				if answer, ok := strings.CutPrefix(v, "http01:"); ok {
					token, auth, _ := strings.Cut(answer, "=")
					http01[token] = auth
				} else {
					txt = append(txt, v)
				}
			}
			peers, named = append(peers, n.Peer), append(named, dns.Node{Host: n.Host, Addresses: n.Addresses,
				Challenge: txt})
		}
		if c.Custom != nil {
			c.Custom.SetRemote(http01)
		}
		if c.Links != nil {
			c.Links.Update(peers)
		}
		if c.DNS != nil {
			c.DNS.SetNodes(named)
		}
		up := []string{}
		if c.Links != nil {
			up = c.Links.Up()
		}
		writeJSON(w, 200, map[string]any{"links_up": up})
	})
	// The zone's wildcard by DNS-01: begin an order (the TXT values to publish), finish it
	// (the certificate, installed, for the store), or install the one from the store.
	mux.HandleFunc("POST /wildcard/begin", func(w http.ResponseWriter, r *http.Request) {
		if c.Wildcard == nil {
			writeJSON(w, 409, map[string]string{"error_message": "no ACME wildcard (--acme-wildcard)"})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
		defer cancel()
		txt, err := c.Wildcard.Begin(ctx)
		if err != nil {
			writeJSON(w, 502, map[string]string{"error_message": err.Error()})
			return
		}
		writeJSON(w, 200, map[string]any{"txt": txt})
	})
	mux.HandleFunc("POST /wildcard/finish", func(w http.ResponseWriter, r *http.Request) {
		if c.Wildcard == nil {
			writeJSON(w, 409, map[string]string{"error_message": "no ACME wildcard (--acme-wildcard)"})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
		defer cancel()
		cert, key, err := c.Wildcard.Finish(ctx)
		if err != nil {
			writeJSON(w, 502, map[string]string{"error_message": err.Error()})
			return
		}
		leaf := c.Wildcard.Zone.Get().Leaf
		writeJSON(w, 200, map[string]any{"cert": string(cert), "key": string(key),
			"not_before": leaf.NotBefore.Unix(), "not_after": leaf.NotAfter.Unix()})
	})
	mux.HandleFunc("PUT /wildcard", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Cert string `json:"cert"`
			Key  string `json:"key"`
		}
		if !readJSON(w, r, &in) {
			return
		}
		if c.Wildcard == nil {
			writeJSON(w, 409, map[string]string{"error_message": "no ACME wildcard (--acme-wildcard)"})
			return
		}
		leaf, err := c.Wildcard.Zone.Install([]byte(in.Cert), []byte(in.Key))
		if err != nil {
			writeJSON(w, 400, map[string]string{"error_message": err.Error()})
			return
		}
		writeJSON(w, 200, map[string]int64{"not_before": leaf.NotBefore.Unix(), "not_after": leaf.NotAfter.Unix()})
	})
	// Custom hostnames' certificates by HTTP-01: begin an order (the answers to publish), finish it
	// (the certificate, installed, for the store), or install the one from the store.
	mux.HandleFunc("POST /hostcert/begin", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Name string `json:"name"`
		}
		if !readJSON(w, r, &in) || !c.custom(w) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
		defer cancel()
		answers, err := c.Custom.Begin(ctx, in.Name)
		if err != nil {
			writeJSON(w, 502, map[string]string{"error_message": err.Error()})
			return
		}
		writeJSON(w, 200, map[string]any{"http01": answers})
	})
	mux.HandleFunc("POST /hostcert/finish", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Name string `json:"name"`
		}
		if !readJSON(w, r, &in) || !c.custom(w) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
		defer cancel()
		cert, key, leaf, err := c.Custom.Finish(ctx, in.Name)
		if err != nil {
			writeJSON(w, 502, map[string]string{"error_message": err.Error()})
			return
		}
		writeJSON(w, 200, map[string]any{"cert": string(cert), "key": string(key),
			"not_before": leaf.NotBefore.Unix(), "not_after": leaf.NotAfter.Unix()})
	})
	mux.HandleFunc("PUT /hostcert", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Name string `json:"name"`
			Cert string `json:"cert"`
			Key  string `json:"key"`
		}
		if !readJSON(w, r, &in) || !c.custom(w) {
			return
		}
		leaf, err := c.Custom.Install(in.Name, []byte(in.Cert), []byte(in.Key))
		if err != nil {
			writeJSON(w, 400, map[string]string{"error_message": err.Error()})
			return
		}
		writeJSON(w, 200, map[string]int64{"not_before": leaf.NotBefore.Unix(), "not_after": leaf.NotAfter.Unix()})
	})
	// Forwards that came up or went down after ?after=N, waiting up to ?wait= seconds.
	// What the dashboard verifies a sign-in to the edge's own name with: the assertions' issuer,
	// audience and keys (internal/signin), from the one process that holds the key.
	mux.HandleFunc("GET /signin/keys", func(w http.ResponseWriter, r *http.Request) {
		issuer, jwks := "", []byte(nil)
		if c.SignIn != nil {
			issuer, jwks = c.SignIn.Keys()
		}
		if jwks == nil {
			writeJSON(w, 404, map[string]string{"error_message": "no identity provider is configured (--oidc-issuer)"})
			return
		}
		writeJSON(w, 200, map[string]any{"issuer": issuer, "audience": c.SignIn.Own(), "jwks": json.RawMessage(jwks)})
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
		wait, _ := strconv.ParseFloat(r.URL.Query().Get("wait"), 64)
		boot, next, events := c.Tunnels.Events(after, time.Duration(min(max(wait, 0), 25)*float64(time.Second)))
		if events == nil {
			events = []tunnels.Event{}
		}
		writeJSON(w, 200, map[string]any{"boot": boot, "next": next, "events": events})
	})
	mux.HandleFunc("GET /tunnels", func(w http.ResponseWriter, r *http.Request) {
		out := []map[string]any{}
		for _, f := range c.Tunnels.All() {
			out = append(out, map[string]any{"local_port": f.Port, "user_name": f.Session.UserName,
				"dnsname": f.DNSName, "since": f.Since.UTC().Format("2006-01-02T15:04:05.000000-07:00"), "peer": f.Session.Peer})
		}
		if r.URL.Query().Get("everywhere") != "" && c.Links != nil {
			// ...and the forwards the other live nodes hold (asked over the links, 1 s at most).
			for node, ports := range c.Links.Held(time.Second) {
				for _, p := range ports {
					out = append(out, map[string]any{"local_port": p, "node": node})
				}
			}
		}
		writeJSON(w, 200, out)
	})
	mux.HandleFunc("POST /drop-ssh", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]int{"dropped": c.SSH.CloseAll()})
	})
	mux.HandleFunc("POST /forget-forward", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			LocalPort int `json:"local_port"`
		}
		if !readJSON(w, r, &in) {
			return
		}
		// The edge drops a forward: by design it ends that SSH session, so the client's ssh
		// exits and reconnects at once (no stale binding). Tests and the chaos suite use this.
		n := 0
		if f := c.Tunnels.Get(in.LocalPort); f != nil && c.Tunnels.Remove(f, false) {
			f.Session.Conn.Close()
			n = 1
		}
		writeJSON(w, 200, map[string]int{"forgotten": n})
	})
	mux.HandleFunc("POST /tcp/open", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Port int `json:"port"`
		}
		if !readJSON(w, r, &in) {
			return
		}
		port, err := c.TCP.Open(in.Port)
		if err != nil {
			writeJSON(w, 409, map[string]string{"error_message": err.Error()})
			return
		}
		logx.Printf("tcp port %d listening", port)
		writeJSON(w, 200, map[string]int{"port": port})
	})
	mux.HandleFunc("POST /tcp/close", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Port int `json:"port"`
		}
		if !readJSON(w, r, &in) {
			return
		}
		c.TCP.Close(in.Port)
		writeJSON(w, 200, map[string]int{"port": in.Port})
	})
	return mux
}

// custom answers 409 when the data plane has no ACME for custom hostnames.
func (c *API) custom(w http.ResponseWriter) bool {
	if c.Custom == nil {
		writeJSON(w, 409, map[string]string{"error_message": "no ACME for custom hostnames (--acme-directory)"})
		return false
	}
	return true
}
