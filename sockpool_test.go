package tftp

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestSocketPool(t *testing.T) {
	var p socketPool
	local := netip.MustParseAddr("127.0.0.1")
	peerA := netip.MustParseAddrPort("127.0.0.1:40001")
	peerB := netip.MustParseAddrPort("127.0.0.1:40002")
	params := transferParams{blockSize: 512, windowSize: 1}
	port := func(c *net.UDPConn) uint16 { return c.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

	first, err := p.get(local, peerA, params)
	if err != nil {
		t.Fatal(err)
	}
	p.put(local, first, peerA)

	// The client the socket just served gets another one: its late
	// packets must not reach its next transfer.
	again, err := p.get(local, peerA, params)
	if err != nil {
		t.Fatal(err)
	}
	if port(again) == port(first) {
		t.Fatalf("the socket that served %s was handed to it again", peerA)
	}
	// Another client gets the idle socket.
	other, err := p.get(local, peerB, params)
	if err != nil {
		t.Fatal(err)
	}
	if other != first {
		t.Fatalf("an idle socket was not reused: got port %d, idle %d", port(other), port(first))
	}
	p.put(local, other, peerB)
	p.put(local, again, peerA)

	// Sockets idle past the cutoff are closed; newer ones stay.
	p.closeIdleBefore(time.Now().Add(time.Hour))
	if _, err := first.WriteToUDPAddrPort([]byte("x"), peerA); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("socket idle past the cutoff: write got %v, want it closed", err)
	}
	if n := len(p.idle[local]); n != 0 {
		t.Fatalf("%d sockets left after closing every idle one", n)
	}

	// Once the listener is gone, nothing is kept.
	c, err := p.get(local, peerA, params)
	if err != nil {
		t.Fatal(err)
	}
	p.close()
	p.put(local, c, peerB)
	if _, err := c.WriteToUDPAddrPort([]byte("x"), peerA); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("socket put back after close: write got %v, want it closed", err)
	}
}
