package tftp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// listeners holds one socket per listen address across config reloads, so
// the well-known port never goes dark and no queued request is lost when a
// new config takes over: the socket stays, only its handler changes.
var listeners = caddy.NewUsagePool()

// listenReadBuffer is the receive buffer asked for on listening sockets, so
// a burst of requests from many booting machines is queued, not dropped.
const listenReadBuffer = 4 << 20

// requestHandler is what a listener hands each request datagram to: the
// server of the config that is current now.
type requestHandler interface {
	handleRequest(in inbound)
}

// listener is a shared listening socket with a single reader goroutine.
type listener struct {
	key     string
	pc      net.PacketConn // as returned by Caddy; closing it releases the bind
	conn    *net.UDPConn
	addr    netip.AddrPort // bound address
	handler atomic.Pointer[handlerBox]
	done    chan struct{}

	// handoff is held by the reader while it hands a request to the
	// handler, and by every handler change, so once setHandler or
	// restoreHandler returns no request is still on its way to the handler
	// that was replaced.
	handoff sync.Mutex

	// active holds every transfer in progress on this address by client
	// address, across reloads: a repeated request does not start a second
	// transfer, limits count them, and single-port transfers get their
	// packets through it.
	mu       sync.Mutex
	active   map[netip.AddrPort]*activeTransfer
	perHost  map[netip.Addr]int
	muxCount int // single-port transfers among active

	// dallies remembers the ends of single-port uploads (see addDally);
	// dallyCount lets the reader skip the lock when there are none.
	dallies      map[netip.AddrPort]dallyEntry
	dallySweepAt int
	dallyCount   atomic.Int32
	dallyAck     []byte // used by the reader goroutine only

	// sockets keeps the sockets of finished transfers for new ones.
	sockets socketPool
}

// handlerBox lets an interface value live in an atomic.Pointer.
type handlerBox struct{ h requestHandler }

// acquireListener returns the shared socket for na, binding it on first use.
func acquireListener(ctx caddy.Context, na caddy.NetworkAddress, logger *zap.Logger) (*listener, error) {
	key := na.String()
	v, _, err := listeners.LoadOrNew(key, func() (caddy.Destructor, error) {
		return openListener(ctx, na, key, logger)
	})
	if err != nil {
		return nil, err
	}
	return v.(*listener), nil
}

// releaseListener drops one reference; the last one closes the socket.
func releaseListener(l *listener) {
	_, _ = listeners.Delete(l.key)
}

func openListener(ctx caddy.Context, na caddy.NetworkAddress, key string, logger *zap.Logger) (*listener, error) {
	if err := checkAddressFree(na); err != nil {
		return nil, err
	}
	ln, err := na.Listen(ctx, 0, net.ListenConfig{})
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", na, err)
	}
	pc, ok := ln.(net.PacketConn)
	if !ok {
		if c, ok := ln.(interface{ Close() error }); ok {
			_ = c.Close()
		}
		return nil, fmt.Errorf("listening on %s: not a datagram socket", na)
	}
	conn := unwrapUDPConn(pc)
	if conn == nil {
		_ = pc.Close()
		return nil, fmt.Errorf("listening on %s: not a UDP socket", na)
	}
	_ = conn.SetReadBuffer(listenReadBuffer)
	enableDestinationInfo(conn)
	l := &listener{
		key:     key,
		pc:      pc,
		conn:    conn,
		addr:    conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		done:    make(chan struct{}),
		active:  make(map[netip.AddrPort]*activeTransfer),
		perHost: make(map[netip.Addr]int),
	}
	ownPorts.add(l.addr.Port(), 1)
	go l.serve(logger.With(zap.String("listen", l.addr.String())))
	return l, nil
}

// unwrapUDPConn digs the *net.UDPConn out of Caddy's wrappers.
func unwrapUDPConn(pc net.PacketConn) *net.UDPConn {
	for {
		switch c := pc.(type) {
		case *net.UDPConn:
			return c
		case interface{ Unwrap() net.PacketConn }:
			pc = c.Unwrap()
		default:
			return nil
		}
	}
}

// Destruct closes the socket once no config uses it; the reader exits.
func (l *listener) Destruct() error {
	err := l.pc.Close()
	<-l.done
	l.sockets.close()
	ownPorts.add(l.addr.Port(), -1)
	return err
}

// setHandler makes h receive new requests and returns the previous one.
func (l *listener) setHandler(h requestHandler) requestHandler {
	l.handoff.Lock()
	defer l.handoff.Unlock()
	old := l.handler.Swap(&handlerBox{h})
	if old == nil {
		return nil
	}
	return old.h
}

// restoreHandler gives the socket back to prev if h still holds it; a
// config that is rolled back after starting must not black-hole the one
// that keeps running.
func (l *listener) restoreHandler(h, prev requestHandler) {
	l.handoff.Lock()
	defer l.handoff.Unlock()
	for {
		cur := l.handler.Load()
		if cur == nil || cur.h != h {
			return
		}
		var next *handlerBox
		if prev != nil {
			next = &handlerBox{prev}
		}
		if l.handler.CompareAndSwap(cur, next) {
			return
		}
	}
}

// serve reads requests until the socket closes. Requests are parsed and
// dispatched inline; every transfer runs on its own goroutine and socket.
func (l *listener) serve(logger *zap.Logger) {
	defer close(l.done)
	// Large enough for a DATA packet of the biggest block, which single-port
	// transfers receive here; requests longer than maxRequestLen are
	// refused by the parser.
	buf := make([]byte, headerLen+maxBlockSize+1)
	oob := make([]byte, oobSize)
	for {
		n, oobn, _, remote, err := l.conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			logger.Debug("reading request", zap.Error(err))
			continue
		}
		local := destinationAddr(oob[:oobn])
		if !local.IsValid() {
			local = l.addr.Addr()
		}
		if l.deliverToTransfer(remote, buf[:n]) || l.answerDally(remote, buf[:n], local) {
			continue
		}
		l.handoff.Lock()
		if box := l.handler.Load(); box != nil {
			l.dispatch(logger, box.h, inbound{pkt: buf[:n], remote: remote, local: local, port: l})
		}
		l.handoff.Unlock()
	}
}

// dispatch hands a request to the handler; a panic while handling one
// request is logged and never stops the listener.
func (l *listener) dispatch(logger *zap.Logger, h requestHandler, in inbound) {
	defer func() {
		if r := recover(); r != nil {
			logger.Error("panic handling request", zap.Stringer("remote", unmapAddrPort(in.remote)), zap.Any("panic", r), zap.StackSkip("stack", 2))
		}
	}()
	h.handleRequest(in)
}

// inbox implements requestPort.
func (l *listener) inbox(remote netip.AddrPort, local netip.Addr) inboxConn {
	return newMuxConn(l.conn, l.addr.Addr(), remote, local)
}

// transferSocket implements requestPort.
func (l *listener) transferSocket(local netip.Addr, peer netip.AddrPort, params transferParams) (*net.UDPConn, error) {
	return l.sockets.get(local, peer, params)
}

// recycleSocket implements requestPort.
func (l *listener) recycleSocket(local netip.Addr, conn *net.UDPConn, peer netip.AddrPort) {
	l.sockets.put(local, conn, peer)
}

// deliverToTransfer passes a packet to the single-port transfer of its
// sender, if there is one.
func (l *listener) deliverToTransfer(remote netip.AddrPort, pkt []byte) bool {
	l.mu.Lock()
	if l.muxCount == 0 {
		l.mu.Unlock()
		return false
	}
	at := l.active[remote]
	l.mu.Unlock()
	if at == nil || at.inbox == nil {
		return false
	}
	at.inbox.deliver(pkt)
	return true
}

// reply sends a packet from the listening socket, with the source address
// the request was sent to.
func (l *listener) reply(b []byte, remote netip.AddrPort, local netip.Addr) {
	_, _, _ = l.conn.WriteMsgUDPAddrPort(b, sourceOOB(local, l.addr.Addr()), remote)
}

// claim registers a transfer for its client address, within the limits.
// When the host is at its per-host limit, its longest-stalled transfer (the
// one that has waited on a retransmission the longest) gives up its slot
// and is returned as victim; a transfer making progress never does.
func (l *listener) claim(at *activeTransfer, limits claimLimits) (result claimResult, victim *activeTransfer) {
	host := at.remote.Addr().Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, busy := l.active[at.remote]; busy {
		// A request repeated while its transfer runs is ignored. Once the
		// transfer has moved its last block, the client can only be
		// starting a new one from a reused port, so the old transfer
		// gives up the address.
		if !prev.finished.Load() && !prev.finishing() {
			return claimDuplicate, nil
		}
		l.removeLocked(prev)
	}
	if limits.total > 0 && len(l.active) >= limits.total {
		if !l.dropEndedLocked(netip.Addr{}) {
			return claimOverTotal, nil
		}
	}
	if limits.perHost > 0 && l.perHost[host] >= limits.perHost && !l.dropEndedLocked(host) {
		if victim = l.longestStalledLocked(host); victim == nil {
			return claimOverHost, nil
		}
		l.removeLocked(victim)
		victim.xfer.Load().evict()
	}
	l.active[at.remote] = at
	l.perHost[host]++
	if at.inbox != nil {
		l.muxCount++
	}
	return claimed, victim
}

// dropEndedLocked frees the slot of a transfer of host (of any host if
// host is the zero Addr) that has moved its last block and has its own
// socket, and reports whether it found one. Such a transfer only waits
// for its final packet or is logging; a client that starts its next
// transfer as soon as its last one ended is not refused for it. It runs
// only when a limit is reached.
func (l *listener) dropEndedLocked(host netip.Addr) bool {
	for _, at := range l.active {
		if host.IsValid() && at.remote.Addr().Unmap() != host {
			continue
		}
		if at.inbox == nil && (at.finished.Load() || at.finishing()) {
			l.removeLocked(at)
			return true
		}
	}
	return false
}

// longestStalledLocked returns the transfer of host that has waited on a
// retransmission the longest, or nil if none is waiting. It runs only when
// a host is at its limit, so the scan costs nothing in the common case.
func (l *listener) longestStalledLocked(host netip.Addr) *activeTransfer {
	var (
		victim *activeTransfer
		oldest int64
	)
	for _, at := range l.active {
		if at.remote.Addr().Unmap() != host || at.finishing() || at.finished.Load() {
			continue
		}
		t := at.xfer.Load()
		if t == nil {
			continue
		}
		if since := t.stalledSince.Load(); since != 0 && (victim == nil || since < oldest) {
			victim, oldest = at, since
		}
	}
	return victim
}

// unclaim ends what claim started.
func (l *listener) unclaim(at *activeTransfer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active[at.remote] == at {
		l.removeLocked(at)
	}
}

func (l *listener) removeLocked(at *activeTransfer) {
	host := at.remote.Addr().Unmap()
	delete(l.active, at.remote)
	if l.perHost[host]--; l.perHost[host] <= 0 {
		delete(l.perHost, host)
	}
	if at.inbox != nil {
		l.muxCount--
	}
}

// Interface guards
var (
	_ caddy.Destructor = (*listener)(nil)
	_ requestPort      = (*listener)(nil)
)

// dallyEntry is the end of a single-port upload, remembered by the
// listener so a retransmitted last DATA block gets its ACK again.
type dallyEntry struct {
	block   uint16
	local   netip.Addr
	until   time.Time
	lastAck time.Time
}

// addDally remembers the end of a single-port upload for d.
// Expired entries are swept when the table has doubled since the last
// sweep (or is full), so the cost per upload stays constant.
func (l *listener) addDally(remote netip.AddrPort, local netip.Addr, block uint16, d time.Duration) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dallies == nil {
		l.dallies = make(map[netip.AddrPort]dallyEntry)
	}
	if len(l.dallies) >= min(l.dallySweepAt, maxDallies) {
		for k, e := range l.dallies {
			if now.After(e.until) {
				delete(l.dallies, k)
			}
		}
		l.dallySweepAt = max(64, 2*len(l.dallies))
	}
	if len(l.dallies) >= maxDallies {
		return
	}
	l.dallies[remote] = dallyEntry{block: block, local: local, until: now.Add(d)}
	l.dallyCount.Store(int32(len(l.dallies)))
}

// answerDally answers a DATA packet from a client whose single-port upload
// has ended, and reports whether the packet belonged to such an upload.
func (l *listener) answerDally(remote netip.AddrPort, pkt []byte, local netip.Addr) bool {
	if l.dallyCount.Load() == 0 || opcode(pkt) != opDATA {
		return false
	}
	blk, _, ok := parseBlockPacket(pkt)
	if !ok {
		return false
	}
	now := time.Now()
	l.mu.Lock()
	e, found := l.dallies[remote]
	switch {
	case !found:
		l.mu.Unlock()
		return false
	case now.After(e.until):
		delete(l.dallies, remote)
		l.dallyCount.Store(int32(len(l.dallies)))
		l.mu.Unlock()
		return false
	}
	send := blk == e.block && now.Sub(e.lastAck) >= dupAckInterval
	if send {
		e.lastAck = now
		l.dallies[remote] = e
	}
	l.mu.Unlock()
	if send {
		l.dallyAck = appendAck(l.dallyAck[:0], blk)
		l.reply(l.dallyAck, remote, local)
	}
	return true
}
