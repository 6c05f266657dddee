package proxydhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// sockets holds one socket per interface and port across config reloads.
// While an old and a new config overlap, both would receive every
// broadcast DISCOVER on sockets of their own and answer it twice; with one
// shared socket whose handler is swapped, each request is answered once,
// by the config that is current, and none is lost in between.
var sockets = caddy.NewUsagePool()

// maxPacket is the largest datagram read: DHCP messages are at most 576
// bytes unless the client allows more (option 57), and then rarely above
// 1500.
const maxPacket = 4096

// packetInfo is what the kernel reports about where a datagram arrived.
type packetInfo struct {
	ifIndex int        // the interface it came in on
	dst     netip.Addr // its destination address (ours, or a broadcast address)
	local   netip.Addr // our address for a reply on that interface
}

// packetHandler receives the requests read from a socket: one config's
// binding to it.
type packetHandler interface {
	handlePacket(s *socket, pkt []byte, src netip.AddrPort, info packetInfo)
}

// handlerBox lets an interface value live in an atomic.Pointer.
type handlerBox struct{ h packetHandler }

// socket is a UDP socket bound to the wildcard address and one port, and
// to one interface, with a single reader goroutine.
type socket struct {
	key     string
	iface   string
	port    uint16
	conn    *net.UDPConn
	handler atomic.Pointer[handlerBox]
	done    chan struct{}

	// handoff is held by the reader while a handler runs and by every
	// handler change, so when setHandler or restoreHandler returns, the
	// replaced handler is not handling a request any more.
	handoff sync.Mutex
}

// acquireSocket returns the shared socket for port on iface, binding it on
// first use.
func acquireSocket(iface string, port uint16, logger *zap.Logger) (*socket, error) {
	key := iface + "/" + strconv.Itoa(int(port))
	v, _, err := sockets.LoadOrNew(key, func() (caddy.Destructor, error) {
		conn, err := listenUDP(iface, port)
		if err != nil {
			return nil, fmt.Errorf("listening on UDP port %d of %s: %w", port, iface, err)
		}
		s := &socket{key: key, iface: iface, port: port, conn: conn, done: make(chan struct{})}
		go s.serve(logger.With(zap.String("interface", iface), zap.Uint16("port", port)))
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*socket), nil
}

// release drops one reference; the last one closes the socket.
func (s *socket) release() error {
	_, err := sockets.Delete(s.key)
	return err
}

// Destruct closes the socket once no config uses it and waits for the
// reader to exit.
func (s *socket) Destruct() error {
	err := s.conn.Close()
	<-s.done
	return err
}

// setHandler makes h receive requests and returns the previous handler.
func (s *socket) setHandler(h packetHandler) packetHandler {
	s.handoff.Lock()
	defer s.handoff.Unlock()
	old := s.handler.Swap(&handlerBox{h})
	if old == nil {
		return nil
	}
	return old.h
}

// restoreHandler gives the socket back to prev if h still holds it, so a
// config rolled back after it started does not silence the one that keeps
// running.
func (s *socket) restoreHandler(h, prev packetHandler) {
	s.handoff.Lock()
	defer s.handoff.Unlock()
	cur := s.handler.Load()
	if cur == nil || cur.h != h {
		return
	}
	if prev == nil {
		s.handler.Store(nil)
		return
	}
	s.handler.Store(&handlerBox{prev})
}

// serve reads requests until the socket is closed and hands each to the
// current handler. Answers are built and sent inline: each is a few
// hundred bytes computed from the request alone.
func (s *socket) serve(logger *zap.Logger) {
	defer close(s.done)
	buf := make([]byte, maxPacket)
	oob := make([]byte, oobSize)
	for {
		n, oobn, _, src, err := s.conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			logger.Debug("reading request", zap.Error(err))
			continue
		}
		info := parsePacketInfo(oob[:oobn])
		s.handoff.Lock()
		if box := s.handler.Load(); box != nil {
			s.dispatch(logger, box.h, buf[:n], src, info)
		}
		s.handoff.Unlock()
	}
}

// dispatch runs a handler; a panic while answering one request is logged
// and does not stop the socket.
func (s *socket) dispatch(logger *zap.Logger, h packetHandler, pkt []byte, src netip.AddrPort, info packetInfo) {
	defer func() {
		if r := recover(); r != nil {
			logger.Error("panic handling request", zap.Stringer("remote", src), zap.Any("panic", r), zap.StackSkip("stack", 2))
		}
	}()
	h.handlePacket(s, pkt, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), info)
}

// send transmits a reply to dst, out of the interface the request came in
// on and from our address local.
func (s *socket) send(b []byte, dst netip.AddrPort, ifIndex int, local netip.Addr) error {
	_, _, err := s.conn.WriteMsgUDPAddrPort(b, replyOOB(ifIndex, local), dst)
	return err
}

// Interface guards
var _ caddy.Destructor = (*socket)(nil)
