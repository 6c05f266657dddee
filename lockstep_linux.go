package tftp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Lock-step transfers while the server is quiet: a transfer that waits for
// one packet at a time through the runtime's poller pays, per block, a read
// that fails, a park, a poller wake-up and a second read. While no more
// transfers run than there are CPUs, nothing else needs the thread, so the
// transfer blocks in the kernel instead and is woken by the packet itself.
// Its socket is one the runtime's poller does not know: a socket the poller
// watches wakes an idle thread of the runtime for every packet in and out,
// which costs more than the poller saves.

// blockingReadSlice bounds each blocking wait, so a transfer that is
// evicted or stopped notices within this time.
const blockingReadSlice = 200 * time.Millisecond

// blockingReaders counts the transfers reading with blocking system calls.
var blockingReaders atomic.Int32

// blockingConn is a transfer socket read and written with blocking system
// calls, outside the runtime's poller.
type blockingConn struct {
	fd       int
	closed   bool
	deadline atomic.Int64  // Unix nanoseconds; 0 for none
	slice    time.Duration // SO_RCVTIMEO now set on the socket

	peer   netip.AddrPort
	peerSA unix.RawSockaddrInet6 // peer as a sockaddr, for sendto
	peerSL uint32
	from   unix.RawSockaddrInet6 // sender of the last datagram read
}

// openBlocking opens a blocking socket on local for a lock-step transfer
// with peer, if the process is quiet enough (running transfers other than
// this one); it returns nil otherwise, or if the socket cannot be opened.
func openBlocking(local netip.Addr, peer netip.AddrPort, running int32) *blockingConn {
	limit := int32(runtime.GOMAXPROCS(0))
	if running > limit || peer.Addr().Zone() != "" {
		return nil
	}
	if blockingReaders.Add(1) > limit {
		blockingReaders.Add(-1)
		return nil
	}
	c := &blockingConn{fd: -1, peer: peer}
	if err := c.open(local); err != nil {
		c.Close()
		return nil
	}
	c.peerSL = sockaddrOf(peer, &c.peerSA)
	return c
}

func (c *blockingConn) open(local netip.Addr) error {
	family := unix.AF_INET6
	if local.Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return err
	}
	c.fd = fd
	var sa unix.RawSockaddrInet6
	n := sockaddrOf(netip.AddrPortFrom(local, 0), &sa)
	err = bind(fd, &sa, n)
	if err != nil && !local.IsUnspecified() {
		// As listenTransfer: an address that cannot be bound alone
		// falls back to the wildcard of its family.
		wildcard := netip.IPv6Unspecified()
		if local.Is4() {
			wildcard = netip.IPv4Unspecified()
		}
		n = sockaddrOf(netip.AddrPortFrom(wildcard, 0), &sa)
		err = bind(fd, &sa, n)
	}
	return err
}

// Close closes the socket; only the transfer that reads it calls it.
func (c *blockingConn) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	blockingReaders.Add(-1)
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// udpConn hands the socket over as a *net.UDPConn in the runtime poller's
// hands (for the dally after an upload) and closes this one.
func (c *blockingConn) udpConn() (*net.UDPConn, error) {
	defer c.Close()
	if err := unix.SetNonblock(c.fd, true); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(c.fd), "tftp transfer")
	pc, err := net.FilePacketConn(f) // a duplicate of the descriptor
	_ = f.Close()
	c.fd = -1
	if err != nil {
		return nil, err
	}
	udp, ok := pc.(*net.UDPConn)
	if !ok {
		_ = pc.Close()
		return nil, fmt.Errorf("transfer socket is a %T", pc)
	}
	return udp, nil
}

// SetReadDeadline sets when a read gives up; a blocked read notices a
// change within blockingReadSlice.
func (c *blockingConn) SetReadDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	c.deadline.Store(ns)
	return nil
}

// ReadFromUDPAddrPort blocks in the kernel until a datagram arrives or the
// deadline passes.
func (c *blockingConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		wait := blockingReadSlice
		if d := c.deadline.Load(); d != 0 {
			left := time.Duration(d - time.Now().UnixNano())
			if left <= 0 {
				return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
			}
			wait = min(wait, left)
		}
		// The timeout is only changed when it differs by more than a
		// tenth: a lock-step transfer waits the same time for every block.
		if diff := wait - c.slice; diff > c.slice/10 || diff < -c.slice/10 {
			tv := unix.NsecToTimeval(wait.Nanoseconds())
			if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
				return 0, netip.AddrPort{}, os.NewSyscallError("setsockopt", err)
			}
			c.slice = wait
		}
		fromLen := uint32(unsafe.Sizeof(c.from))
		var p unsafe.Pointer
		if len(b) > 0 {
			p = unsafe.Pointer(&b[0])
		}
		n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, uintptr(c.fd), uintptr(p), uintptr(len(b)), 0,
			uintptr(unsafe.Pointer(&c.from)), uintptr(unsafe.Pointer(&fromLen)))
		switch errno {
		case 0:
			return int(n), addrPortOf(&c.from), nil
		case unix.EAGAIN, unix.EINTR:
			continue // the slice ran out: check the deadline
		default:
			return 0, netip.AddrPort{}, os.NewSyscallError("recvfrom", errno)
		}
	}
}

// WriteToUDPAddrPort sends b to addr; the transfer's peer's address is
// converted once.
func (c *blockingConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	sa, sl := &c.peerSA, c.peerSL
	if addr != c.peer {
		sa = new(unix.RawSockaddrInet6)
		sl = sockaddrOf(addr, sa)
	}
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	for {
		n, _, errno := syscall.Syscall6(syscall.SYS_SENDTO, uintptr(c.fd), uintptr(p), uintptr(len(b)), 0,
			uintptr(unsafe.Pointer(sa)), uintptr(sl))
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		default:
			return 0, os.NewSyscallError("sendto", errno)
		}
	}
}

func bind(fd int, sa *unix.RawSockaddrInet6, n uint32) error {
	_, _, errno := syscall.Syscall(syscall.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(sa)), uintptr(n))
	if errno != 0 {
		return errno
	}
	return nil
}

// sockaddrOf writes ap as a sockaddr of its family into sa (an IPv4 one
// fits in the IPv6 one's room) and returns its length.
func sockaddrOf(ap netip.AddrPort, sa *unix.RawSockaddrInet6) uint32 {
	*sa = unix.RawSockaddrInet6{}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	if ap.Addr().Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		sa4.Addr = ap.Addr().As4()
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	sa.Addr = ap.Addr().As16()
	return unix.SizeofSockaddrInet6
}

// addrPortOf reads a sockaddr that recvfrom filled in.
func addrPortOf(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	if sa.Family == unix.AF_INET {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
}
