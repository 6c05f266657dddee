//go:build !linux

package tftp

import "net"

// blockingConn is never made on this platform: every transfer reads
// through the runtime's poller.
type blockingConn struct{ *net.UDPConn }

func blockingReads(*net.UDPConn, int32) *blockingConn { return nil }

func (c *blockingConn) restore() *net.UDPConn { return c.UDPConn }
