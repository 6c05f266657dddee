package tftp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/caddy-tftp/tftp/store"
	"go.uber.org/zap"
)

// Running an accepted request: open the file, negotiate, connect, transfer,
// report, dally.

// runTransfer runs an accepted request on its own goroutine, one step
// after another: open the file, negotiate, connect, transfer, report, and
// after an upload, dally. Each step is a function with one exit.
func (s *Server) runTransfer(in inbound, at *activeTransfer, req request, netascii bool) {
	defer s.transfers.Done()
	slot := &claimedSlot{in: in, at: at}
	defer slot.release()
	peer := unmapAddrPort(in.remote)
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("panic in transfer", zap.Stringer("remote", peer), zap.String("file", at.file), zap.Any("panic", r), zap.StackSkip("stack", 2))
		}
	}()

	f, params, err := s.open(&req, at.file, netascii, peer)
	if err != nil {
		// Release the client's address first, so a request it sends as
		// soon as it reads the error is not taken for a duplicate.
		slot.release()
		code, msg := errorCodeFor(err)
		if code == ErrCodeUndefined {
			s.logger.Error("opening file", zap.String("file", at.file), zap.Error(err))
		}
		s.refuse(&in, &req, code, msg)
		return
	}
	defer f.close()
	t, err := s.connect(&in, at, &req, params, f.size)
	if err != nil {
		f.abort()
		slot.release()
		s.logger.Error("opening transfer socket", zap.Error(err))
		s.refuse(&in, &req, ErrCodeUndefined, "server busy")
		return
	}
	transfersRunning.Add(1)
	defer transfersRunning.Add(-1)
	defer t.release()
	defer func() { s.hangUp(&in, t, err) }()
	err = s.transfer(t, &req, &f, netascii)
	at.finished.Store(true)
	if at.inbox == nil {
		slot.release()
	}
	outcome := s.finishTransfer(t, &req, at.file, err)
	if s.eventsOn {
		emitTransferEvent(s.name, t, &req, at.file, outcome, err)
	}
	if req.op == opWRQ && err == nil {
		s.dallyAfter(t, slot)
	}
}

// claimedSlot is a request's place in its listener, given back once.
type claimedSlot struct {
	in       inbound
	at       *activeTransfer
	released bool
}

func (c *claimedSlot) release() {
	if c.released {
		return
	}
	c.released = true
	c.in.port.unclaim(c.at)
	if c.at.inbox != nil {
		_ = c.at.inbox.Close()
	}
}

// openedFile is what a request opened in the store: a file to read (src,
// size bytes, -1 when not known yet) or an upload to write.
type openedFile struct {
	file store.File // nil for an upload
	src  io.ReaderAt
	size int64
	up   store.Upload // nil for a read
	stop func() bool  // stops waking a growing file on cancel
}

// open opens the named file for the request and negotiates its options
// (a read's tsize needs the file's size).
func (s *Server) open(req *request, name string, netascii bool, peer netip.AddrPort) (openedFile, transferParams, error) {
	info := s.requestInfo(req, peer)
	if req.op == opWRQ {
		params := negotiate(req, s.policy, -1)
		up, err := s.store.Create(name, store.CreateOptions{Overwrite: !s.NoOverwrite, Size: params.tsize, Request: info})
		if err != nil {
			return openedFile{}, params, err
		}
		return openedFile{up: up, size: params.tsize}, params, nil
	}
	f, src, size, err := s.openForRead(name, netascii, info)
	if err != nil {
		if f != nil {
			_ = f.Close()
		}
		return openedFile{}, transferParams{}, err
	}
	o := openedFile{file: f, src: src, size: size}
	if g, ok := f.(store.GrowingFile); ok {
		// A read waiting for bytes that have not arrived yet is woken
		// when the server's transfers are cancelled.
		o.stop = context.AfterFunc(s.transferCtx, func() { _ = g.Close() })
	}
	return o, negotiate(req, s.policy, size), nil
}

// close releases a file opened for reading.
func (o *openedFile) close() {
	if o.stop != nil {
		o.stop()
	}
	if o.file != nil {
		_ = o.file.Close()
	}
}

// abort discards an upload that never started.
func (o *openedFile) abort() {
	if o.up != nil {
		o.up.Abort()
	}
}

// connect gives the transfer its connection: a new socket on the address
// the client contacted, or in single-port mode the listener's inbox. The
// transfer is published in the listener's record for the admin API.
func (s *Server) connect(in *inbound, at *activeTransfer, req *request, params transferParams, size int64) (*transfer, error) {
	var conn packetConn = at.inbox
	peer := unmapAddrPort(in.remote)
	if at.inbox == nil && lockStepLong(params, size) {
		if bc := openBlocking(transferAddr(in.local, peer), peer, transfersRunning.Load()); bc != nil {
			conn = bc
		}
	}
	if conn == nil {
		udp, err := in.port.transferSocket(in.local, peer, params)
		if err != nil {
			return nil, err
		}
		conn = udp
	}
	t := newTransfer(s.transferCtx, conn, peer, params, s.limits)
	t.size = size
	if req.op == opRRQ {
		t.batch = newSendBatch(conn, peer, params)
	}
	at.xfer.Store(t)
	return t, nil
}

// transfer runs the read or write to its end; a failed upload is
// discarded. The server's cancellation ends a transfer's wait at once.
func (s *Server) transfer(t *transfer, req *request, f *openedFile, netascii bool) error {
	// A transfer checks the context before every read, and endTransfers
	// cancels it before it wakes the reads of those tracked.
	s.track(t)
	defer s.untrack(t)
	inProgress := s.metrics.inProgress[dirIndex(req.op)]
	inProgress.Inc()
	defer inProgress.Dec()
	if req.op == opRRQ {
		return t.serveRead(f.src, f.size)
	}
	err := t.serveWrite(f.up, netascii)
	if err != nil {
		f.up.Abort()
	}
	return err
}

// dallyAfter keeps answering a client whose final ACK of an upload is
// lost, without holding the buffers or the transfer's slot.
func (s *Server) dallyAfter(t *transfer, slot *claimedSlot) {
	if bc, ok := t.conn.(*blockingConn); ok {
		t.conn = nil
		udp, err := bc.udpConn()
		if err != nil {
			s.logger.Debug("upload ended without its dally", zap.Error(err))
			return
		}
		t.conn = udp
	}
	if udp, ok := t.conn.(*net.UDPConn); ok {
		startDally(s.transferCtx, udp, t.peer, t.lastBlock, s.dally)
		t.conn = nil // the dally owns the socket now
		return
	}
	slot.release()
	slot.in.port.addDally(slot.in.remote, slot.in.local, t.lastBlock, s.dally)
}

// hangUp gives a transfer's own socket back to the listener for the next
// transfer once its slot is released; a socket the dally took has gone
// already, and a single-port connection is closed.
func (s *Server) hangUp(in *inbound, t *transfer, err error) {
	switch conn := t.conn.(type) {
	case nil:
	case *net.UDPConn:
		s.recycle(in, conn, t.peer, err)
	case *blockingConn:
		_ = conn.Close() // not the runtime poller's: never pooled
	default:
		_ = conn.Close()
	}
	t.conn = nil
}

// recycle hands a socket back to the listener, unless the server is
// stopping.
func (s *Server) recycle(in *inbound, conn *net.UDPConn, peer netip.AddrPort, err error) {
	if errors.Is(err, errStopping) {
		_ = conn.Close()
		return
	}
	in.port.recycleSocket(in.local, conn, peer)
}

// lockStepMinBlocks is the shortest transfer, in blocks, worth a blocking
// socket of its own (lockstep_linux.go) instead of a pooled one.
const lockStepMinBlocks = 16

// transfersRunning counts the transfers of the process that have a
// connection.
var transfersRunning atomic.Int32

// lockStepLong reports whether a transfer is lock-step and long enough
// (or of unknown length) to read with blocking system calls.
func lockStepLong(params transferParams, size int64) bool {
	return params.windowSize == 1 && (size < 0 || size/int64(params.blockSize) >= lockStepMinBlocks)
}
