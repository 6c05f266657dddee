package proxydhcp

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// oobSize fits the IPv4 packet-info control message.
var oobSize = unix.CmsgSpace(unix.SizeofInet4Pktinfo)

// listenUDP binds 0.0.0.0:port on one interface (SO_BINDTODEVICE): a socket
// bound to a unicast address would not receive broadcast DISCOVERs.
// SO_REUSEADDR and SO_REUSEPORT let it share port 67 with a DHCP server
// on the same host that sets them too (dnsmasq with --bind-interfaces);
// both then receive every broadcast. SO_BROADCAST allows broadcast
// replies, IP_PKTINFO reports the interface and addresses of each request.
func listenUDP(iface string, port uint16) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, o := range []struct{ level, opt int }{
				{unix.SOL_SOCKET, unix.SO_REUSEADDR},
				{unix.SOL_SOCKET, unix.SO_REUSEPORT},
				{unix.SOL_SOCKET, unix.SO_BROADCAST},
				{unix.IPPROTO_IP, unix.IP_PKTINFO},
			} {
				if serr = unix.SetsockoptInt(int(fd), o.level, o.opt, 1); serr != nil {
					return
				}
			}
			serr = unix.BindToDevice(int(fd), iface)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(int(port))))
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// parsePacketInfo reads the IP_PKTINFO control message of a request.
func parsePacketInfo(oob []byte) packetInfo {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return packetInfo{}
	}
	for _, m := range msgs {
		if m.Header.Level != unix.IPPROTO_IP || m.Header.Type != unix.IP_PKTINFO || len(m.Data) < unix.SizeofInet4Pktinfo {
			continue
		}
		// struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst; struct in_addr ipi_addr; }
		return packetInfo{
			ifIndex: int(int32(binary.NativeEndian.Uint32(m.Data[0:4]))),
			local:   netip.AddrFrom4([4]byte(m.Data[4:8])),
			dst:     netip.AddrFrom4([4]byte(m.Data[8:12])),
		}
	}
	return packetInfo{}
}

// replyOOB builds the IP_PKTINFO control message that sends a reply out of
// interface ifIndex from address local.
func replyOOB(ifIndex int, local netip.Addr) []byte {
	if ifIndex == 0 && !local.Is4() {
		return nil
	}
	info := &unix.Inet4Pktinfo{Ifindex: int32(ifIndex)}
	if local.Is4() {
		info.Spec_dst = local.As4()
	}
	return unix.PktInfo4(info)
}
