package tftp

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Transfer sockets: every transfer answers from a port of its own (its
// transfer ID, RFC 1350), and a listener keeps the sockets of finished
// transfers for the next ones instead of closing them. Opening a socket,
// registering it with the runtime's poller and closing it again cost about
// a quarter of the CPU of a one-block transfer.

// maxPooledSockets bounds the idle transfer sockets a listener keeps per
// local address.
const maxPooledSockets = 256

// pooledSocketIdle is how long an idle transfer socket is kept; a quiet
// server holds no ports open for long.
const pooledSocketIdle = 15 * time.Second

// socketPool holds idle transfer sockets by the local address they are
// bound to, newest last.
type socketPool struct {
	mu     sync.Mutex
	idle   map[netip.Addr][]idleSocket
	reaper *time.Timer
	closed bool
}

// idleSocket is a transfer socket waiting in the pool.
type idleSocket struct {
	conn  *net.UDPConn
	last  netip.AddrPort // the client it served last
	since time.Time
}

// get returns a socket on local for a transfer with peer. It never hands
// out the socket that just served the same client address and port: a
// late duplicate of that transfer's packets would otherwise pass for one
// of the new transfer's.
func (p *socketPool) get(local netip.Addr, peer netip.AddrPort, params transferParams) (*net.UDPConn, error) {
	local = transferAddr(local, peer)
	p.mu.Lock()
	stack := p.idle[local]
	for i := len(stack) - 1; i >= 0 && i >= len(stack)-2; i-- {
		if stack[i].last == peer {
			continue
		}
		conn := stack[i].conn
		top := len(stack) - 1
		stack[i] = stack[top]
		stack[top] = idleSocket{}
		p.idle[local] = stack[:top]
		p.mu.Unlock()
		sizeReadBuffer(conn, params)
		return conn, nil
	}
	p.mu.Unlock()
	return listenTransfer(local, params)
}

// put keeps conn, which get gave out for local and which last served
// peer, for a later transfer; past the pool's bound, or once the listener
// is gone, it is closed.
func (p *socketPool) put(local netip.Addr, conn *net.UDPConn, peer netip.AddrPort) {
	local = transferAddr(local, peer)
	p.mu.Lock()
	if p.closed || len(p.idle[local]) >= maxPooledSockets {
		p.mu.Unlock()
		_ = conn.Close()
		return
	}
	if p.idle == nil {
		p.idle = make(map[netip.Addr][]idleSocket)
	}
	p.idle[local] = append(p.idle[local], idleSocket{conn: conn, last: peer, since: time.Now()})
	if p.reaper == nil {
		p.reaper = time.AfterFunc(pooledSocketIdle, p.reap)
	}
	p.mu.Unlock()
}

// reap closes the sockets idle for longer than pooledSocketIdle and runs
// again while any remain.
func (p *socketPool) reap() {
	p.closeIdleBefore(time.Now().Add(-pooledSocketIdle))
}

// closeIdleBefore closes the sockets put back before cutoff; the reaper
// runs again while any remain.
func (p *socketPool) closeIdleBefore(cutoff time.Time) {
	var old []*net.UDPConn
	p.mu.Lock()
	for local, stack := range p.idle {
		n := 0 // the oldest are at the bottom
		for n < len(stack) && stack[n].since.Before(cutoff) {
			old = append(old, stack[n].conn)
			n++
		}
		if n == len(stack) {
			delete(p.idle, local)
			continue
		}
		p.idle[local] = append(stack[:0], stack[n:]...)
	}
	p.reaper = nil
	if len(p.idle) > 0 && !p.closed {
		p.reaper = time.AfterFunc(pooledSocketIdle, p.reap)
	}
	p.mu.Unlock()
	for _, c := range old {
		_ = c.Close()
	}
}

// close closes every idle socket; sockets put back later are closed.
func (p *socketPool) close() {
	p.mu.Lock()
	p.closed = true
	if p.reaper != nil {
		p.reaper.Stop()
	}
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, stack := range idle {
		for _, s := range stack {
			_ = s.conn.Close()
		}
	}
}

// transferAddr is the address a transfer's socket binds: the one the client
// contacted, or where that is not known (no packet info from the kernel),
// the wildcard of the client's family.
func transferAddr(local netip.Addr, peer netip.AddrPort) netip.Addr {
	local = local.Unmap()
	if local.IsUnspecified() && peer.Addr().Is4() {
		local = netip.IPv4Unspecified()
	}
	return local
}

// listenTransfer opens a transfer's socket on an ephemeral port of local.
// It deliberately avoids SO_REUSEPORT so two transfers can never share a
// port.
func listenTransfer(local netip.Addr, params transferParams) (*net.UDPConn, error) {
	network := "udp6"
	if local.Is4() {
		network = "udp4"
	}
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil && !local.IsUnspecified() {
		// An address that cannot be bound alone (a link-local address
		// without its zone) falls back to the wildcard of its family.
		conn, err = net.ListenUDP(network, nil)
	}
	if err != nil {
		return nil, err
	}
	sizeReadBuffer(conn, params)
	return conn, nil
}

// sizeReadBuffer makes a window of large blocks fit the receive buffer, or
// the kernel drops the end of every window of an upload.
func sizeReadBuffer(conn *net.UDPConn, params transferParams) {
	if want := params.windowSize * (params.blockSize + 64); want > 128<<10 {
		_ = conn.SetReadBuffer(min(want, listenReadBuffer))
	}
}
