package tftp

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// relayFaults makes an interopRelay drop or duplicate datagrams in both
// directions, deterministically: a seeded generator per direction decides
// the fate of each packet in the order the relay sees them, so a lock-step
// transfer meets the same faults on every run. The relay's mutex guards it.
type relayFaults struct {
	loss, dup float64
	rng       [2]*rand.Rand // one per direction: [to server, to client]
	sent      [2]int        // datagrams forwarded (duplicates included)
	dropped   [2]int
	doubled   [2]int
}

// copies decides how many copies of the next packet in a direction go on.
func (f *relayFaults) copies(fromServer bool) int {
	dir := 0
	if fromServer {
		dir = 1
	}
	n := 1
	switch x := f.rng[dir].Float64(); {
	case x < f.loss:
		n = 0
		f.dropped[dir]++
	case x < f.loss+f.dup:
		n = 2
		f.doubled[dir]++
	}
	f.sent[dir] += n
	return n
}

// startFaultRelay starts a relay to server for one transfer, losing and
// duplicating each packet with the given probabilities.
func startFaultRelay(t testing.TB, server netip.AddrPort, seed uint64, loss, dup float64) *interopRelay {
	t.Helper()
	f := &relayFaults{loss: loss, dup: dup}
	for dir := range f.rng {
		f.rng[dir] = rand.New(rand.NewPCG(seed, uint64(dir)))
	}
	r := startRelay(t, server, false)
	r.mu.Lock()
	r.faults = f
	r.mu.Unlock()
	return r
}

// faultCounts returns what a fault relay did ([to server, to client]) and
// how many DATA packets the client sent, before faults.
func (r *interopRelay) faultCounts() (sent, dropped, doubled [2]int, dataSeen int) {
	for _, p := range r.trace() {
		if !p.fromServer && p.op == opDATA {
			dataSeen++
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.faults.sent, r.faults.dropped, r.faults.doubled, dataSeen
}
