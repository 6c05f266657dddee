//go:build !linux

package tftp

import (
	"net"
	"net/netip"
)

// oobSize is zero where destination addresses are not reported.
const oobSize = 0

// enableDestinationInfo is a no-op on this platform: replies leave from the
// address the operating system picks, so list concrete listen addresses.
func enableDestinationInfo(*net.UDPConn) {}

func destinationAddr([]byte) netip.Addr { return netip.Addr{} }

func sourceOOB(netip.Addr, netip.Addr) []byte { return nil }
