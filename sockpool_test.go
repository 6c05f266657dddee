package tftp

import (
	"errors"
	"net"
	"net/netip"
	"os"
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

// TestBlockingConn checks the blocking reads of a quiet server's lock-step
// transfers: the sender is reported, deadlines hold, a deadline moved by
// another goroutine (eviction, shutdown) ends a blocked read, and the
// socket given back reads through the runtime's poller again.
func TestBlockingConn(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if blockingReads(conn, 1<<20) != nil {
		t.Fatal("blocking reads while more transfers run than there are CPUs")
	}
	// A deadline left in the past by a previous transfer must not matter.
	_ = conn.SetReadDeadline(time.Unix(1, 0))
	bc := blockingReads(conn, 0)
	if bc == nil {
		t.Fatal("a quiet process did not get blocking reads")
	}
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	buf := make([]byte, 16)

	if _, err := peer.WriteToUDPAddrPort([]byte("ack"), to); err != nil {
		t.Fatal(err)
	}
	_ = bc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := bc.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "ack" || from != peer.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("read %q from %s, %v; want \"ack\" from %s", buf[:n], from, err, peer.LocalAddr())
	}

	start := time.Now()
	_ = bc.SetReadDeadline(start.Add(50 * time.Millisecond))
	if _, _, err := bc.ReadFromUDPAddrPort(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v", err)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond || waited > time.Second {
		t.Fatalf("a 50ms deadline ended the read after %v", waited)
	}

	_ = bc.SetReadDeadline(time.Now().Add(time.Hour))
	done := make(chan error, 1)
	go func() {
		_, _, err := bc.ReadFromUDPAddrPort(buf)
		done <- err
	}()
	_ = bc.SetReadDeadline(time.Unix(1, 0)) // what evict and shutdown do
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read woken by a past deadline: %v", err)
		}
	case <-time.After(blockingReadSlice + 2*time.Second):
		t.Fatal("a deadline moved into the past did not end a blocked read")
	}

	udp := bc.restore()
	if udp != conn {
		t.Fatal("restore did not give the socket back")
	}
	if n := blockingReaders.Load(); n != 0 {
		t.Fatalf("%d blocking readers counted after restore", n)
	}
	go func() {
		_ = udp.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, _, err := udp.ReadFromUDPAddrPort(buf)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("restored socket: read got %v, want its deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the restored socket still blocks past its deadline")
	}
}
