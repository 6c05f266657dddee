package tftp

import (
	"encoding/binary"
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
// that fails, a park, a poller wake-up and a second read. While fewer
// transfers run than there are CPUs, nothing else needs the thread, so the
// transfer blocks in the kernel instead and is woken by the packet itself.

// blockingReadSlice bounds each blocking wait, so a transfer that is
// evicted or stopped notices within this time.
const blockingReadSlice = 200 * time.Millisecond

// blockingReaders counts the transfers reading with blocking system calls.
var blockingReaders atomic.Int32

// blockingConn reads a transfer's socket with blocking system calls; writes
// go through the socket as usual.
type blockingConn struct {
	*net.UDPConn
	raw      syscall.RawConn
	deadline atomic.Int64  // Unix nanoseconds; 0 for none
	slice    time.Duration // SO_RCVTIMEO now set on the socket

	// the read in progress, set up for readFn and filled by it
	buf    []byte
	n      int
	errno  syscall.Errno
	sa     unix.RawSockaddrInet6
	readFn func(fd uintptr) bool
}

// blockingReads switches conn to blocking reads if the process is quiet
// enough; it returns nil, and leaves conn as it is, otherwise.
func blockingReads(conn *net.UDPConn, running int32) *blockingConn {
	limit := int32(runtime.GOMAXPROCS(0))
	if running > limit {
		return nil
	}
	if blockingReaders.Add(1) > limit {
		blockingReaders.Add(-1)
		return nil
	}
	// A deadline left by the socket's previous transfer must not fail
	// the reads below, which the runtime checks before each.
	err := conn.SetReadDeadline(time.Time{})
	var raw syscall.RawConn
	if err == nil {
		raw, err = conn.SyscallConn()
	}
	if err == nil {
		err = setBlocking(raw, true)
	}
	if err != nil {
		blockingReaders.Add(-1)
		return nil
	}
	c := &blockingConn{UDPConn: conn, raw: raw}
	c.readFn = c.recvfrom
	return c
}

// restore puts the socket back in the runtime poller's hands and returns
// it, or closes it and returns nil if that fails.
func (c *blockingConn) restore() *net.UDPConn {
	defer blockingReaders.Add(-1)
	err := setBlocking(c.raw, false)
	if err == nil && c.slice != 0 {
		err = setReceiveTimeout(c.raw, 0)
	}
	if err != nil {
		_ = c.UDPConn.Close()
		return nil
	}
	return c.UDPConn
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
			if err := setReceiveTimeout(c.raw, wait); err != nil {
				return 0, netip.AddrPort{}, err
			}
			c.slice = wait
		}
		c.buf = b
		if err := c.raw.Read(c.readFn); err != nil {
			return 0, netip.AddrPort{}, err
		}
		switch c.errno {
		case 0:
			return c.n, c.from(), nil
		case unix.EAGAIN, unix.EINTR:
			continue // the slice ran out: check the deadline
		default:
			return 0, netip.AddrPort{}, os.NewSyscallError("recvfrom", c.errno)
		}
	}
}

// recvfrom is the one blocking system call of a read; it is a method value
// made once, so a read allocates nothing.
func (c *blockingConn) recvfrom(fd uintptr) bool {
	salen := uint32(unsafe.Sizeof(c.sa))
	var p unsafe.Pointer
	if len(c.buf) > 0 {
		p = unsafe.Pointer(&c.buf[0])
	}
	n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(p), uintptr(len(c.buf)), 0,
		uintptr(unsafe.Pointer(&c.sa)), uintptr(unsafe.Pointer(&salen)))
	c.n, c.errno = int(n), errno
	return true
}

// from is the sender of the datagram just read.
func (c *blockingConn) from() netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&c.sa.Port))[:])
	if c.sa.Family == unix.AF_INET {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&c.sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(c.sa.Addr), port)
}

func setBlocking(raw syscall.RawConn, blocking bool) error {
	var err error
	cerr := raw.Control(func(fd uintptr) {
		err = syscall.SetNonblock(int(fd), !blocking)
	})
	if cerr != nil {
		return cerr
	}
	return err
}

func setReceiveTimeout(raw syscall.RawConn, d time.Duration) error {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	var err error
	cerr := raw.Control(func(fd uintptr) {
		err = unix.SetsockoptTimeval(int(fd), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if cerr != nil {
		return cerr
	}
	return err
}
