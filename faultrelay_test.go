package tftp

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
)

// faultRelay sits between one real client and the server for one transfer
// and drops or duplicates datagrams in both directions, deterministically:
// a seeded generator per direction decides the fate of each packet in the
// order the relay sees them, so a lock-step transfer meets the same faults
// on every run. The client talks to the relay's address; the relay forwards
// to the server's request port until the server answers, then to the
// server's transfer port.
type faultRelay struct {
	front, back *net.UDPConn
	loss, dup   float64
	wg          sync.WaitGroup

	mu       sync.Mutex
	rng      [2]*rand.Rand // one per direction: [to server, to client]
	server   netip.AddrPort
	learned  bool
	client   netip.AddrPort
	sent     [2]int // datagrams forwarded (duplicates included): [to server, to client]
	dropped  [2]int
	doubled  [2]int
	dataSeen int // DATA packets the client sent, before faults
}

// startFaultRelay starts a relay to server on the server's loopback
// address, losing and duplicating each packet with the given probabilities.
func startFaultRelay(t testing.TB, server netip.AddrPort, seed uint64, loss, dup float64) *faultRelay {
	t.Helper()
	local := net.UDPAddrFromAddrPort(netip.AddrPortFrom(server.Addr(), 0))
	front, err := net.ListenUDP("udp", local)
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.ListenUDP("udp", local)
	if err != nil {
		front.Close()
		t.Fatal(err)
	}
	r := &faultRelay{front: front, back: back, loss: loss, dup: dup, server: server}
	for dir := range r.rng {
		r.rng[dir] = rand.New(rand.NewPCG(seed, uint64(dir)))
	}
	r.wg.Add(2)
	go r.pump(false)
	go r.pump(true)
	t.Cleanup(func() {
		front.Close()
		back.Close()
		r.wg.Wait()
	})
	return r
}

func (r *faultRelay) addr() netip.AddrPort {
	return r.front.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (r *faultRelay) pump(fromServer bool) {
	defer r.wg.Done()
	in, out, dir := r.front, r.back, 0
	if fromServer {
		in, out, dir = r.back, r.front, 1
	}
	buf := make([]byte, 1<<16)
	for {
		n, from, err := in.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		var to netip.AddrPort
		if fromServer {
			if !r.learned {
				r.server, r.learned = from, true
			}
			to = r.client
		} else {
			if !r.client.IsValid() {
				r.client = from
			}
			to = r.server
			if opcode(buf[:n]) == opDATA {
				r.dataSeen++
			}
		}
		copies := 1
		switch x := r.rng[dir].Float64(); {
		case x < r.loss:
			copies = 0
			r.dropped[dir]++
		case x < r.loss+r.dup:
			copies = 2
			r.doubled[dir]++
		}
		r.sent[dir] += copies
		r.mu.Unlock()
		for range copies {
			if to.IsValid() {
				_, _ = out.WriteToUDPAddrPort(buf[:n], to)
			}
		}
	}
}

// counts returns what the relay saw and did.
func (r *faultRelay) counts() (sent, dropped, doubled [2]int, dataSeen int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent, r.dropped, r.doubled, r.dataSeen
}
