package tftp

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"

	"github.com/caddyserver/caddy/v2"
)

// errAddressInUse is returned when another process holds a listen address.
var errAddressInUse = errors.New("address already in use by another process")

// ownPorts counts this process's listening sockets by port, so a check
// for another process holding an address can tell our own sockets apart.
var ownPorts = portCounts{n: make(map[uint16]int)}

type portCounts struct {
	mu sync.Mutex
	n  map[uint16]int
}

func (p *portCounts) add(port uint16, delta int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[port] += delta; p.n[port] <= 0 {
		delete(p.n, port)
	}
}

func (p *portCounts) has(port uint16) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[port] > 0
}

// checkAddressFree refuses an address that another process already holds.
// Listening sockets are opened with SO_REUSEPORT so a config reload can
// hand them over, but that also lets a second server started by mistake
// bind the same address, and the kernel would then split requests between
// the two. So before binding, a plain bind without SO_REUSEPORT is tried
// and released: it fails only if the address is taken. An address held by
// this process (another listener on the same port) is not refused.
func checkAddressFree(na caddy.NetworkAddress) error {
	addr := net.JoinHostPort(na.Host, strconv.FormatUint(uint64(na.StartPort), 10))
	pc, err := net.ListenPacket(na.Network, addr)
	if err == nil {
		return pc.Close()
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		if ownPorts.has(uint16(na.StartPort)) {
			return nil
		}
		return fmt.Errorf("listening on %s: %w", na, errAddressInUse)
	}
	// Other failures (a missing address, no permission) are reported by
	// the real bind that follows.
	return nil
}
