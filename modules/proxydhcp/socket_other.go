//go:build !linux

package proxydhcp

import (
	"errors"
	"net"
	"net/netip"
)

// oobSize is zero where packet information is not read.
const oobSize = 0

// listenUDP fails: answering on one interface needs SO_BINDTODEVICE and
// IP_PKTINFO, which this package implements for Linux only.
func listenUDP(string, uint16) (*net.UDPConn, error) {
	return nil, errors.New("proxy_dhcp is supported on Linux only")
}

func parsePacketInfo([]byte) packetInfo { return packetInfo{} }

func replyOOB(int, netip.Addr) []byte { return nil }
