package tftp

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// muxInboxLen is how many packets may wait for a single-port transfer; more
// are dropped as a full socket buffer would drop them.
const muxInboxLen = 128

// muxConn carries one single-port transfer over the listening socket: the
// listener's reader delivers the client's packets here, and replies leave
// from the listening socket with the address the client contacted.
type muxConn struct {
	conn   *net.UDPConn   // the listening socket
	remote netip.AddrPort // as the listener sees it (may be IPv4-mapped)
	oob    []byte
	inbox  chan *[]byte
	wake   chan struct{}
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
	timer    *time.Timer
}

func newMuxConn(conn *net.UDPConn, bound netip.Addr, remote netip.AddrPort, local netip.Addr) *muxConn {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &muxConn{
		conn:   conn,
		remote: remote,
		oob:    sourceOOB(local, bound),
		inbox:  make(chan *[]byte, muxInboxLen),
		wake:   make(chan struct{}, 1),
		closed: make(chan struct{}),
		timer:  t,
	}
}

// deliver queues a copy of a packet from the client; the listener calls it.
func (m *muxConn) deliver(pkt []byte) {
	b := getBuffer(len(pkt))
	copy(*b, pkt)
	select {
	case m.inbox <- b:
	default:
		putBuffer(b)
	}
}

func (m *muxConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		m.mu.Lock()
		d := m.deadline
		m.mu.Unlock()
		wait := time.Until(d)
		if !d.IsZero() && wait <= 0 {
			return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
		}
		var timeout <-chan time.Time
		if !d.IsZero() {
			m.timer.Reset(wait)
			timeout = m.timer.C
		}
		select {
		case p := <-m.inbox:
			m.timer.Stop()
			n := copy(b, *p)
			putBuffer(p)
			return n, m.remote, nil
		case <-timeout:
		case <-m.wake:
			m.timer.Stop()
		case <-m.closed:
			m.timer.Stop()
			return 0, netip.AddrPort{}, net.ErrClosed
		}
	}
}

func (m *muxConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if unmapAddrPort(addr) == unmapAddrPort(m.remote) {
		addr = m.remote
	}
	n, _, err := m.conn.WriteMsgUDPAddrPort(b, m.oob, addr)
	return n, err
}

// SetReadDeadline sets the deadline and wakes a blocked reader so it takes
// effect at once.
func (m *muxConn) SetReadDeadline(t time.Time) error {
	m.mu.Lock()
	m.deadline = t
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return nil
}

func (m *muxConn) Close() error {
	m.once.Do(func() {
		close(m.closed)
		for {
			select {
			case p := <-m.inbox:
				putBuffer(p)
			default:
				return
			}
		}
	})
	return nil
}

// Interface guards
var (
	_ packetConn = (*muxConn)(nil)
	_ packetConn = (*net.UDPConn)(nil)
)
