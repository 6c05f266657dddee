package tftp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestBlockingConn checks the blocking sockets of a quiet server's long
// lock-step transfers: the sender is reported, other senders are told
// apart, deadlines hold, a deadline moved by another goroutine (eviction,
// shutdown) ends a blocked read, and an upload's socket is handed over to
// the runtime's poller for its dally.
func TestBlockingConn(t *testing.T) {
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	local := netip.MustParseAddr("127.0.0.1")
	if openBlocking(local, peerAddr, 1<<20) != nil {
		t.Fatal("a blocking socket while more transfers run than there are CPUs")
	}
	bc := openBlocking(local, peerAddr, 0)
	if bc == nil {
		t.Fatal("a quiet process did not get a blocking socket")
	}
	defer bc.Close()
	var sa unix.RawSockaddrInet6
	sl := uint32(unsafe.Sizeof(sa))
	if _, _, errno := unix.Syscall(unix.SYS_GETSOCKNAME, uintptr(bc.fd), uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&sl))); errno != 0 {
		t.Fatal(errno)
	}
	to := addrPortOf(&sa)
	if to.Addr() != local || to.Port() == 0 {
		t.Fatalf("blocking socket bound to %s, want an ephemeral port of %s", to, local)
	}
	buf := make([]byte, 16)

	// Both ways, with the peer and with another sender.
	if _, err := bc.WriteToUDPAddrPort([]byte("data"), peerAddr); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, from, err := peer.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "data" || from != to {
		t.Fatalf("peer read %q from %s, %v; want \"data\" from %s", buf[:n], from, err, to)
	}
	if _, err := peer.WriteToUDPAddrPort([]byte("ack"), to); err != nil {
		t.Fatal(err)
	}
	_ = bc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, from, err := bc.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "ack" || from != peerAddr {
		t.Fatalf("read %q from %s, %v; want \"ack\" from %s", buf[:n], from, err, peerAddr)
	}
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	otherAddr := other.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := bc.WriteToUDPAddrPort([]byte("error"), otherAddr); err != nil {
		t.Fatal(err)
	}
	_ = other.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := other.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "error" {
		t.Fatalf("another sender read %q, %v", buf[:n], err)
	}
	if _, err := other.WriteToUDPAddrPort([]byte("x"), to); err != nil {
		t.Fatal(err)
	}
	if _, from, err := bc.ReadFromUDPAddrPort(buf); err != nil || from != otherAddr {
		t.Fatalf("read from %s, %v; want from %s", from, err, otherAddr)
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
	_ = bc.SetReadDeadline(time.Unix(1, 0)) // what evict and endTransfers do
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read woken by a past deadline: %v", err)
		}
	case <-time.After(blockingReadSlice + 2*time.Second):
		t.Fatal("a deadline moved into the past did not end a blocked read")
	}

	udp, err := bc.udpConn()
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	if n := blockingReaders.Load(); n != 0 {
		t.Fatalf("%d blocking sockets counted after the hand-over", n)
	}
	if got := udp.LocalAddr().(*net.UDPAddr).AddrPort(); got != to {
		t.Fatalf("handed-over socket on %s, want %s", got, to)
	}
	go func() {
		_ = udp.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, _, err := udp.ReadFromUDPAddrPort(buf)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("handed-over socket: read got %v, want its deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handed-over socket blocks past its deadline")
	}
}
