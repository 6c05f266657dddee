package proxydhcp

import (
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"
)

// recorder is a packetHandler that passes what it gets to a channel.
type recorder chan string

func (r recorder) handlePacket(_ *socket, pkt []byte, _ netip.AddrPort, _ packetInfo) {
	r <- string(pkt)
}

// TestSocketHandoff checks the shared socket directly: a second config
// gets the same socket and takes over its requests; rolling it back gives
// them to the first again; the last release closes it.
func TestSocketHandoff(t *testing.T) {
	port := freeUDPPort(t)
	s1, err := acquireSocket("lo", port, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	h1, h2 := make(recorder, 4), make(recorder, 4)
	if prev := s1.setHandler(h1); prev != nil {
		t.Fatalf("a new socket had handler %v", prev)
	}
	s2, err := acquireSocket("lo", port, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if s2 != s1 {
		t.Fatal("the second config got a socket of its own")
	}
	if prev := s2.setHandler(h2); prev != packetHandler(h1) {
		t.Fatalf("setHandler returned %v, want the first handler", prev)
	}
	c := newTestClient(t)
	expect := func(want recorder, other recorder, msg string) {
		t.Helper()
		c.sendRaw(port, []byte(msg))
		select {
		case got := <-want:
			if got != msg {
				t.Fatalf("handler got %q, want %q", got, msg)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q did not reach the current handler", msg)
		}
		// Requests are handed over one at a time: had the other handler
		// got this one too, it would be in its channel by now.
		if len(other) != 0 {
			t.Fatalf("%q also reached the replaced handler", msg)
		}
	}
	expect(h2, h1, "to the new config")
	s2.restoreHandler(h2, h1)
	expect(h1, h2, "back to the old config")
	// Restoring a handler that is no longer current changes nothing.
	s2.restoreHandler(h2, nil)
	expect(h1, h2, "still the old config")

	if err := s2.release(); err != nil {
		t.Fatal(err)
	}
	s1.restoreHandler(h1, nil)
	if err := s1.release(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s1.done:
	default:
		t.Fatal("the reader still runs after the last release")
	}
}
