package front

// The HTTP front's one call into a socket's route table (internal/routes).
//
// Why it is shaped this way: the matching, the filters and the weights are
// internal/routes' business; here is only the glue, called from one place in
// ServeHTTP, so the front stays the same for sockets without a table. A
// request of a socket with a table either gets the edge's own answer (no
// route 404, a redirect, no valid or no connected backend 500) or goes on as
// a request of the chosen backend's group of tunnels (state.Socket.Group):
// candidates, failover, keep-alive channels and the proxy are the front's
// usual ones. The request edits are made on the way in; the response edits
// by fromApp, the proxy's ModifyResponse.

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"

	"mysocketd/edge/dataplane/internal/answer"
	"mysocketd/edge/dataplane/internal/routes"
	"mysocketd/edge/dataplane/internal/state"
	"mysocketd/edge/dataplane/internal/tunnels"
)

const (
	// Redirect marks a redirect a route asked for (RequestRedirect).
	reasonRedirect answer.Reason = "redirect"
	// NoRoute: no route of the socket's table matches the request (404).
	reasonNoRoute answer.Reason = "no-route"
	// NoBackend: the route's backend is not valid, or none of its tunnels is connected (500,
	// as the Gateway API asks for a backend that cannot be reached).
	reasonNoBackend answer.Reason = "no-backend"
)

type ctxRouteKey struct{}

// route applies sock's route table to r. ok false: the edge answered. Otherwise the socket to
// forward to is the chosen backend's group and r carries the decision for the response edits.
func (f *HTTP) route(w http.ResponseWriter, r *http.Request, sock *state.Socket) (*state.Socket, *http.Request, bool) {
	if sock.Routes == nil {
		answer.Write(w, http.StatusInternalServerError, reasonNoBackend, "the route table of this name cannot be served")
		return nil, r, false
	}
	in := routes.Request{Port: 80, HTTP: r}
	if r.TLS != nil {
		in.Port, in.SNI = 443, r.TLS.ServerName
	}
	d := sock.Routes.Decide(in)
	switch {
	case d.Location != "":
		w.Header().Set("Location", d.Location)
		answer.Write(w, d.Status, reasonRedirect, "redirected to "+d.Location)
		return nil, r, false
	case d.Status == http.StatusNotFound:
		answer.Write(w, d.Status, reasonNoRoute, "no route of "+sock.DNSName+" matches this request")
		return nil, r, false
	case d.Status != 0:
		answer.Write(w, d.Status, answer.Reason(d.Reason), "this request's route cannot be served")
		return nil, r, false
	}
	group := sock.Group(d.Backend)
	protocol := "" // the request goes over its backend's protocol; fallbacks must speak the same
	if group != nil {
		protocol = group.UpstreamProtocol
	} else if len(d.Fallbacks) > 0 && sock.Group(d.Fallbacks[0]) != nil {
		protocol = sock.Group(d.Fallbacks[0]).UpstreamProtocol
	}
	fallback := sock.Fallback(d.Fallbacks, protocol)
	if group == nil || len(f.Tunnels.Candidates(group)) == 0 {
		// No tunnel of its own backend: the rule's other backends take its share (a lost cluster of a
		// pool, a Service with no ready endpoint), else the Gateway API's 500.
		if fallback == nil || len(f.Tunnels.Candidates(fallback)) == 0 {
			answer.Write(w, http.StatusInternalServerError, reasonNoBackend, "backend "+d.Backend+": no tunnel is connected")
			return nil, r, false
		}
		group, fallback = fallback, nil
	}
	r = r.WithContext(context.WithValue(r.Context(), ctxRouteKey{}, &routed{d, fallback}))
	d.Rewrite(r)
	return group, r, true
}

// routed is what a routed request carries: its decision, and where it may fall back to.
type routed struct {
	routes.Decision
	fallback *state.Socket
}

// fallbackCandidates are the tunnels a routed request may try after its own backend's (dial): a
// tunnel that dies silently fails its channel open, and nothing was sent, so another backend of the
// rule takes the request instead of the visitor getting an error.
func (f *HTTP) fallbackCandidates(ctx context.Context) []*tunnels.Forward {
	if rt, _ := ctx.Value(ctxRouteKey{}).(*routed); rt != nil && rt.fallback != nil {
		return f.Tunnels.Candidates(rt.fallback)
	}
	return nil
}

// ownSocket is the socket whose own address c came to, or nil.
func ownSocket(st *state.Holder, c net.Conn) *state.Socket {
	if ip, _, err := net.SplitHostPort(c.LocalAddr().String()); err == nil {
		return st.ByAddress(ip)
	}
	return nil
}

// serveOwnAddress is the TLS port of a socket's own address: a TLS listener's route passes the
// connection through to its backend's tunnels by SNI; an HTTPS listener terminates it with its own
// certificate (or the edge's for the socket's name) and hands it to the HTTP front, where the table
// routes each request. A server name no listener takes is refused (closed).
func (t *TLS) serveOwnAddress(c net.Conn, sni string, sock *state.Socket) {
	if sock.Routes == nil {
		c.Close()
		return
	}
	if backend, ok := sock.Routes.Passthrough(sni); ok {
		if g := sock.Group(backend); g != nil {
			t.spliceToSocket(c, g, "tls")
			return
		}
		c.Close()
		return
	}
	if !sock.Routes.Terminates(sni) {
		c.Close()
		return
	}
	cfg := &tls.Config{NextProtos: alpn, MinVersion: tls.VersionTLS12} // h2 too: a GRPCRoute on an HTTPS listener
	if cert := sock.Routes.Certificate(sni); cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	} else {
		cfg.GetCertificate = t.certs.Get
	}
	t.http.push(tls.Server(c, cfg))
}

// socketFor is the socket that owns the address the visitor connected to (a Gateway's own address:
// every Host is its listeners' to judge), else the socket named by host.
func (f *HTTP) socketFor(r *http.Request, host string) *state.Socket {
	if la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr); la != nil {
		if ip, _, err := net.SplitHostPort(la.String()); err == nil {
			if sock := f.State.ByAddress(ip); sock != nil {
				return sock
			}
		}
	}
	return f.State.ByDNS(host)
}

// routeEdits makes a route's response edits (called by fromApp, the proxy's ModifyResponse).
func routeEdits(resp *http.Response) {
	if rt, _ := resp.Request.Context().Value(ctxRouteKey{}).(*routed); rt != nil && rt.HasResponseEdits() {
		rt.ModifyResponse(resp.Header)
	}
}
