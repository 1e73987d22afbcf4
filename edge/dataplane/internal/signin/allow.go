package signin

import (
	"strings"

	"mysocketd/edge/dataplane/internal/state"
)

// Allowed reports whether a verified e-mail address may open sock: it is one
// of the socket's allowed addresses, or its domain (after the last @) is one
// of its allowed domains, compared without case. Empty lists allow nobody: the
// socket fails closed.
func Allowed(email string, sock *state.Socket) bool {
	email = strings.ToLower(strings.TrimSpace(email))
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || at == len(email)-1 {
		return false
	}
	for _, a := range sock.AllowedAddresses {
		if strings.ToLower(strings.TrimSpace(a)) == email {
			return true
		}
	}
	domain := email[at+1:]
	for _, d := range sock.AllowedDomains {
		if strings.TrimPrefix(strings.ToLower(strings.TrimSpace(d)), "@") == domain {
			return true
		}
	}
	return false
}
