//go:build !linux

package tftp

import (
	"net"
	"net/netip"
)

// blockingConn is never made on this platform: every transfer reads
// through the runtime's poller.
type blockingConn struct{ *net.UDPConn }

func openBlocking(netip.Addr, netip.AddrPort, int32) *blockingConn { return nil }

func (c *blockingConn) udpConn() (*net.UDPConn, error) { return c.UDPConn, nil }
