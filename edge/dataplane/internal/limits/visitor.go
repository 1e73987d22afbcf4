package limits

import (
	"net"
	"net/netip"
)

// Visitor is who a limit counts: the client's address, or for IPv6 its /64 (one
// subscriber or host usually holds a whole /64, so counting single IPv6
// addresses would give an attacker 2^64 visitors). An IPv4-mapped IPv6 address
// is the IPv4 address. addr is "host:port" or a bare address; anything else is
// its own visitor (a unix socket in tests).
func Visitor(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	prefix, _ := ip.Prefix(64)
	return prefix.String()
}

// VisitorOf is Visitor for a net.Addr.
func VisitorOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	return Visitor(a.String())
}
