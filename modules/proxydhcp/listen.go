package proxydhcp

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// listenSpec is one Listen entry: an address or an interface name.
type listenSpec struct {
	entry string
	addr  netip.Addr // when the entry is an address
	iface string     // when the entry is an interface name
}

// parseListen classifies a listen entry as an IPv4 address or an interface
// name.
func parseListen(entry string) (listenSpec, error) {
	if addr, err := netip.ParseAddr(entry); err == nil {
		if !addr.Is4() || addr.IsUnspecified() || addr.IsMulticast() {
			return listenSpec{}, fmt.Errorf("%q: not a unicast IPv4 address (proxy_dhcp is IPv4 only)", entry)
		}
		return listenSpec{entry: entry, addr: addr}, nil
	}
	if entry == "" || len(entry) > 15 || strings.ContainsAny(entry, ":/ \t") || strings.Trim(entry, "0123456789.") == "" {
		return listenSpec{}, fmt.Errorf("%q is neither an IPv4 address nor an interface name (ports are set by dhcp_port and pxe_port)", entry)
	}
	return listenSpec{entry: entry, iface: entry}, nil
}

// interfaceName returns the interface a listen entry stands for.
func (l listenSpec) interfaceName() (string, error) {
	if l.iface != "" {
		if _, err := net.InterfaceByName(l.iface); err != nil {
			return "", fmt.Errorf("interface %s: %w", l.iface, err)
		}
		return l.iface, nil
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("listing interfaces: %w", err)
	}
	for _, ifi := range ifaces {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			if ipn, ok := ad.(*net.IPNet); ok {
				if a, ok := netip.AddrFromSlice(ipn.IP.To4()); ok && a == l.addr {
					return ifi.Name, nil
				}
			}
		}
	}
	return "", fmt.Errorf("no interface has the address %s", l.addr)
}
