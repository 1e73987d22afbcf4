// Package answer is the edge's own voice: "how does the edge answer by
// itself". Every answer the edge gives instead of the app's carries the
// response header `Mysocket-Edge: <reason>` and a short plain-text body, so
// clients and probes never mistake it for the app's (edge/README.md lists
// the reasons). Every package that answers by itself writes through here.
package answer

import (
	"fmt"
	"html"
	"net/http"
)

// Header names the reason of an answer the edge gave by itself.
const Header = "Mysocket-Edge"

// Reason is the value of Header; the table in edge/README.md says when each is given.
type Reason string

const (
	NoTunnel       Reason = "no-tunnel"       // 502: no tunnel connected, or none could take the request
	UnknownHost    Reason = "unknown-host"    // 404: no socket has this name
	Unauthorized   Reason = "unauthorized"    // 401: basic auth missing or wrong
	Forbidden      Reason = "forbidden"       // 403: cloud authentication (fails closed)
	RateLimited    Reason = "rate-limited"    // 429: too many failed basic-auth attempts; a visitor's share is held
	BadRequest     Reason = "bad-request"     // 400: no Host
	Misdirected    Reason = "misdirected"     // 421: a tcp or tls socket's name on the HTTP front
	Timeout        Reason = "timeout"         // 504: the app did not answer in time; 408: the visitor's body stalled
	TooLarge       Reason = "too-large"       // 431: request head too large
	Unavailable    Reason = "unavailable"     // 503: the account's quota, or the password checks' budget, is full; 502: the API is down
	UpstreamFailed Reason = "upstream-failed" // 502: the app's connection broke after the request was sent
	HTTPSRedirect  Reason = "https-redirect"  // 308: an https socket asked for over plain HTTP
	SignIn         Reason = "sign-in"         // 302 to the identity provider, 401/400/503 on the way; 200 signed out
	NotAllowed     Reason = "not-allowed"     // 403: signed in, but this e-mail address may not open this socket
)

// Write writes one of the edge's own answers: status, reason, one line of text.
func Write(w http.ResponseWriter, status int, reason Reason, text string) {
	h := w.Header()
	h.Set(Header, string(reason))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintln(w, text)
}

// RedirectHTTPS sends a visitor of plain HTTP to the same URL on https://host.
func RedirectHTTPS(w http.ResponseWriter, r *http.Request, host string) {
	w.Header().Set(Header, string(HTTPSRedirect))
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// Page writes one of the edge's own answers for a person in a browser: the
// same header as Write, a short HTML page with a title, one paragraph and
// optional links (text, href), every string escaped.
func Page(w http.ResponseWriter, status int, reason Reason, title, text string, links ...[2]string) {
	h := w.Header()
	h.Set(Header, string(reason))
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title></head>\n"+
		"<body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\">\n<h1>%s</h1>\n<p id=\"edge-text\">%s</p>\n",
		html.EscapeString(title), html.EscapeString(title), html.EscapeString(text))
	for _, l := range links {
		fmt.Fprintf(w, "<p><a href=\"%s\">%s</a></p>\n", html.EscapeString(l[1]), html.EscapeString(l[0]))
	}
	fmt.Fprintf(w, "<p><small>Answered by the edge (%s), not by the app.</small></p></body></html>\n", html.EscapeString(string(reason)))
}

// The signed-in visitor's identity, as the edge gives it to apps (internal/signin).
const (
	VisitorEmail     = "Mysocket-Visitor-Email"
	VisitorAssertion = "Mysocket-Visitor-Assertion"
)

// Voice is every header the edge speaks with: removed from what apps answer
// and from what visitors send to apps, so only the edge can set them.
var Voice = []string{Header, VisitorEmail, VisitorAssertion}

// Strip removes the edge's headers from h.
func Strip(h http.Header) {
	for _, name := range Voice {
		h.Del(name)
	}
}
