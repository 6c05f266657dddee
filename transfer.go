package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/caddy-tftp/tftp/store"
)

var (
	// errTimedOut ends a transfer whose peer stopped answering.
	errTimedOut = errors.New("peer stopped answering")
	// errStopping ends a transfer when its server shuts down.
	errStopping = errors.New("server shutting down")
	// errOptionsRefused ends a read whose client answered the OACK with
	// ERROR 8, as UEFI PXE does to learn a file's size. It is not a failure.
	errOptionsRefused = errors.New("client declined the negotiated options")
	// errTooLong ends a transfer that ran past max_transfer_duration.
	errTooLong = errors.New("transfer exceeded max_transfer_duration")
	// errTooSlow ends a transfer that moved less than min_transfer_rate.
	errTooSlow = errors.New("transfer slower than min_transfer_rate")
	// errEvicted ends a stalled transfer whose host, at its per-host limit,
	// made a new request.
	errEvicted = errors.New("stalled transfer evicted by a new request from its host")
)

// peerError is an ERROR packet received from the client.
type peerError struct {
	code ErrorCode
	msg  string
}

func (e *peerError) Error() string {
	return fmt.Sprintf("client sent error %d: %q", e.code, e.msg)
}

// sentError records that the server told the client why it stopped.
type sentError struct {
	code ErrorCode
	err  error
}

func (e *sentError) Error() string { return e.err.Error() }
func (e *sentError) Unwrap() error { return e.err }

// dupAckInterval is the shortest time between two ACKs of the same block of
// a lock-step upload: duplicates of a DATA block arriving sooner after an
// ACK are dropped. It is shorter than any client's retransmission timeout,
// so a client whose ACK was lost gets it again on its first retransmission.
const dupAckInterval = 250 * time.Millisecond

// transferLimits bound a transfer's life.
type transferLimits struct {
	retries     int
	maxDuration time.Duration
	minRate     int64         // bytes per second over each rateWindow; 0: off
	rateWindow  time.Duration // period minRate is averaged over
}

// transfer is one read or write session on its own socket, whose port is the
// server's transfer ID.
type transfer struct {
	ctx    context.Context
	conn   packetConn
	peer   netip.AddrPort
	params transferParams
	limits transferLimits
	start  time.Time

	// lastBlock is the final block of a finished write, for startDally.
	lastBlock uint16

	// finishing is raised when the last block has been sent or received.
	finishing atomic.Bool

	// rateCheck is when progress is next compared with the minimum rate,
	// and rateBytes the byte count at the previous check.
	rateCheck time.Time
	rateBytes int64

	pkt []byte // outgoing DATA, reused for every block
	ctl []byte // outgoing ACK, OACK or ERROR
	// ctlBuf backs ctl; the OACKs and ERRORs that do not fit grow it.
	ctlBuf [128]byte
	rbuf   []byte // incoming packets

	pktBuf, rBuf *[]byte // pooled backing of pkt and rbuf

	batch       *sendBatch // windowed reads send a window per system call
	highestSent uint64

	// size is the transfer's known size in bytes, for the admin API: a
	// read's file size (its netascii size for a netascii read) or the tsize
	// a write declared; -1 when unknown. It is set before the transfer is
	// published to the admin API and never changes.
	size int64
	// stalledSince is when the transfer began waiting on a retransmission
	// (Unix nanoseconds), or 0 while it makes progress; evicted is raised
	// by a newer request from the same host that takes its slot.
	stalledSince atomic.Int64
	evicted      atomic.Bool

	// Progress, read by the admin API and metrics while the transfer runs.
	bytes       atomic.Int64
	blocks      atomic.Int64
	retransmits atomic.Int64
}

// newTransfer prepares a session; buffers come from the pool for the block
// size and go back in release.
func newTransfer(ctx context.Context, conn packetConn, peer netip.AddrPort, params transferParams, limits transferLimits) *transfer {
	now := time.Now()
	t := &transfer{
		ctx:       ctx,
		conn:      conn,
		peer:      peer,
		params:    params,
		limits:    limits,
		start:     now,
		size:      -1,
		rateCheck: now.Add(limits.rateWindow),
		pktBuf:    getBuffer(headerLen + params.blockSize),
		rBuf:      getBuffer(headerLen + params.blockSize + 1),
	}
	t.ctl = t.ctlBuf[:0]
	t.pkt, t.rbuf = *t.pktBuf, *t.rBuf
	return t
}

// release returns the buffers to the pool; the socket is the caller's.
func (t *transfer) release() {
	putBuffer(t.pktBuf)
	putBuffer(t.rBuf)
	t.batch.release()
	t.pkt, t.rbuf, t.pktBuf, t.rBuf = nil, nil, nil, nil
}

// maxBackoffShift caps the doubling of the wait: it grows from the timeout
// to 16 times the timeout and stays there.
const maxBackoffShift = 4

// wait returns how long to wait for the peer after the given number of
// retransmissions; the wait doubles each time, up to 16 times the timeout,
// so a silent peer gets few packets.
func (t *transfer) wait(retry int) time.Duration {
	return t.params.timeout << min(retry, maxBackoffShift)
}

func (t *transfer) send(b []byte) error {
	_, err := t.conn.WriteToUDPAddrPort(b, t.peer)
	if err != nil {
		return fmt.Errorf("sending to %s: %w", t.peer, err)
	}
	return nil
}

// sendError tells the peer why the transfer ends and returns err annotated
// with the code sent.
func (t *transfer) sendError(code ErrorCode, msg string, err error) error {
	t.ctl = appendError(t.ctl[:0], code, msg)
	_ = t.send(t.ctl)
	return &sentError{code: code, err: err}
}

// abort ends the transfer for a local reason, telling the peer.
func (t *transfer) abort(err error) error {
	switch {
	case errors.Is(err, errStopping):
		return t.sendError(ErrCodeUndefined, "server shutting down", err)
	case errors.Is(err, errTimedOut):
		// The peer is gone or never was: stay silent, so a spoofed request
		// earns at most the first packet and its retries.
		return err
	case errors.Is(err, errTooLong):
		return t.sendError(ErrCodeUndefined, "transfer exceeded the maximum duration", err)
	case errors.Is(err, errTooSlow):
		return t.sendError(ErrCodeUndefined, "transfer slower than the minimum rate", err)
	case errors.Is(err, errEvicted):
		return t.sendError(ErrCodeUndefined, "stalled transfer replaced by a newer request from this host", err)
	}
	var pe *peerError
	if errors.As(err, &pe) {
		return err
	}
	code, msg := errorCodeFor(err)
	return t.sendError(code, msg, err)
}

// receive waits until deadline for a packet from the peer. A packet from any
// other address gets ERROR 5 and does not disturb the transfer.
func (t *transfer) receive(deadline time.Time) ([]byte, error) {
	if err := t.checkRate(); err != nil {
		return nil, err
	}
	if t.limits.maxDuration > 0 {
		if end := t.start.Add(t.limits.maxDuration); end.Before(deadline) {
			deadline = end
		}
	}
	_ = t.conn.SetReadDeadline(deadline)
	for {
		if t.ctx.Err() != nil {
			return nil, errStopping
		}
		n, from, err := t.conn.ReadFromUDPAddrPort(t.rbuf)
		if err != nil {
			if t.ctx.Err() != nil {
				return nil, errStopping
			}
			if t.evicted.Load() {
				return nil, errEvicted
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if t.limits.maxDuration > 0 && time.Since(t.start) >= t.limits.maxDuration {
					return nil, errTooLong
				}
				if t.stalledSince.Load() == 0 {
					t.stalledSince.Store(time.Now().UnixNano())
				}
				return nil, errTimedOut
			}
			return nil, fmt.Errorf("receiving: %w", err)
		}
		if unmapAddrPort(from) != t.peer {
			t.ctl = appendError(t.ctl[:0], ErrCodeUnknownTID, "unknown transfer ID")
			_, _ = t.conn.WriteToUDPAddrPort(t.ctl, from)
			countErrorSent(ErrCodeUnknownTID)
			continue
		}

		if n >= 4 && opcode(t.rbuf[:n]) == opERROR {
			code, msg, _ := parseError(t.rbuf[:n])
			return nil, &peerError{code: code, msg: msg}
		}
		return t.rbuf[:n], nil
	}
}

// progressed records that the peer moved the transfer forward, so it is no
// longer stalled and may not be evicted.
func (t *transfer) progressed() {
	if t.stalledSince.Load() != 0 {
		t.stalledSince.Store(0)
	}
}

// evict ends a stalled transfer from another goroutine: its next read
// fails at once and the transfer ends with errEvicted.
func (t *transfer) evict() {
	t.evicted.Store(true)
	_ = t.conn.SetReadDeadline(time.Unix(1, 0))
}

// markFinishing records that the last block has moved.
func (t *transfer) markFinishing() {
	t.finishing.Store(true)
}

// checkRate ends a transfer that moved less than the minimum rate over the
// last rate window.
func (t *transfer) checkRate() error {
	if t.limits.minRate <= 0 {
		return nil
	}
	now := time.Now()
	if now.Before(t.rateCheck) {
		return nil
	}
	moved := t.bytes.Load() - t.rateBytes
	if float64(moved) < float64(t.limits.minRate)*t.limits.rateWindow.Seconds() {
		return errTooSlow
	}
	t.rateBytes += moved
	t.rateCheck = now.Add(t.limits.rateWindow)
	return nil
}

// unknownLast stands for the number of the last block while a read's size
// is not known: the block that comes back short from the file is the last.
const unknownLast = math.MaxUint64

// serveRead sends size bytes of src, a window of blocks at a time (RFC 7440;
// a window of one is RFC 1350 lock-step). A size of -1 means the length is
// not known up front (a file streamed from elsewhere): blocks are read as
// they come, and the first short one is the last.
func (t *transfer) serveRead(src io.ReaderAt, size int64) error {
	if len(t.params.oack) > 0 {
		if err := t.awaitOACKAck(); err != nil {
			return err
		}
	}
	bs := int64(t.params.blockSize)
	last := uint64(unknownLast)
	if size >= 0 {
		last = uint64(size/bs) + 1 // a multiple of bs ends with an empty block
	}
	window := uint64(t.params.windowSize)
	growing, _ := src.(store.GrowingFile) // nil unless bytes still arrive
	base, next := uint64(1), uint64(1)    // first unacknowledged, next to send
	retries := 0
	resent := false
	var deadline time.Time
	for base <= last {
		if next < base+window && next <= last {
			end := min(base+window-1, last)
			if end == last {
				t.markFinishing()
			}
			if t.batch != nil {
				short, err := t.sendBlocks(src, growing, size, next, end)
				if err != nil {
					return err
				}
				next = end + 1
				if short != 0 {
					last, end, next = short, short, short+1
					t.markFinishing()
				}
			}
			for ; next <= end; next++ {
				short, err := t.sendBlock(src, size, next)
				if err != nil {
					return err
				}
				if short {
					last = next
					t.markFinishing()
					next++
					break
				}
			}
			deadline = time.Now().Add(t.wait(retries))
		}
		pkt, err := t.receive(deadline)
		if errors.Is(err, errTimedOut) {
			retries++
			if retries > t.limits.retries {
				return t.abort(err)
			}
			t.retransmits.Add(int64(next - base))
			next, resent = base, false
			continue
		}
		if err != nil {
			return t.abort(err)
		}
		if opcode(pkt) != opACK {
			continue
		}
		blk, _, ok := parseBlockPacket(pkt)
		if !ok {
			continue
		}
		delta, ok := ackedBlocks(blk, base, next)
		if !ok {
			continue // stale or bogus
		}
		if delta == 0 {
			// A duplicate ACK. In lock-step, resending would double every
			// packet from here on (the Sorcerer's Apprentice, RFC 1123
			// 4.2.3.1), so only a window resends, once per stall.
			if window > 1 && !resent {
				resent = true
				t.retransmits.Add(int64(next - base))
				next = base
			}
			continue
		}
		base += delta
		retries, resent = 0, false
		t.progressed()
		if base < next {
			// The client acknowledged part of the window: the rest was lost.
			t.retransmits.Add(int64(next - base))
			next = base
		}
	}
	return nil
}

// ackedBlocks places a 16-bit ACK number inside [base-1, next-1], where
// base is the first unacknowledged block and next the next one to send
// (both counted from 1, not wrapped), and returns how many blocks it
// acknowledges. Comparing in 16 bits is what lets block numbers roll over
// past 65535.
func ackedBlocks(blk uint16, base, next uint64) (uint64, bool) {
	delta := uint64(blk - uint16(base-1))
	return delta, delta <= next-base
}

// sendBlock sends DATA block n (counted from 1, not wrapped) and reports
// whether it is short, which makes it the last (how the end of a file of
// unknown size is found).
func (t *transfer) sendBlock(src io.ReaderAt, size int64, n uint64) (short bool, err error) {
	l, err := t.readBlock(src, size, n, t.pkt)
	if err != nil {
		return false, err
	}
	if err := t.send(t.pkt[:headerLen+l]); err != nil {
		return false, err
	}
	t.countSent(n, l)
	return l < int64(t.params.blockSize), nil
}

// readBlock fills buf with DATA block n and returns the payload length.
// A file of unknown size (-1) is read a whole block at a time; a read that
// ends early at io.EOF gives the last block.
func (t *transfer) readBlock(src io.ReaderAt, size int64, n uint64, buf []byte) (int64, error) {
	bs := int64(t.params.blockSize)
	off := int64(n-1) * bs
	l := bs
	if size >= 0 {
		l = min(bs, size-off)
	}
	putDataHeader(buf, uint16(n))
	if l > 0 {
		k, err := src.ReadAt(buf[headerLen:headerLen+l], off)
		if err != nil && !errors.Is(err, io.EOF) {
			if t.ctx.Err() != nil {
				return 0, t.abort(errStopping) // the file was closed to wake the read
			}
			return 0, t.abort(fmt.Errorf("reading block %d: %w", n, err))
		}
		if size < 0 {
			l = int64(k)
		}
	}
	return l, nil
}

// countSent counts a block's bytes the first time it is sent; resends are
// counted as retransmissions instead.
func (t *transfer) countSent(n uint64, l int64) {
	if n > t.highestSent {
		t.highestSent = n
		t.blocks.Add(1)
		t.bytes.Add(l)
	}
}

// awaitOACKAck sends the OACK of a read and waits for ACK 0.
func (t *transfer) awaitOACKAck() error {
	t.ctl = appendOACK(t.ctl[:0], t.params.oack)
	for retry := 0; ; retry++ {
		if err := t.send(t.ctl); err != nil {
			return err
		}
		if retry > 0 {
			t.retransmits.Add(1)
		}
		deadline := time.Now().Add(t.wait(retry))
		for {
			pkt, err := t.receive(deadline)
			if declinedOptions(err) {
				return errOptionsRefused
			}
			if errors.Is(err, errTimedOut) {
				if retry >= t.limits.retries {
					return t.abort(err)
				}
				break
			}
			if err != nil {
				return t.abort(err)
			}
			if blk, _, ok := parseBlockPacket(pkt); ok && opcode(pkt) == opACK && blk == 0 {
				return nil
			}
		}
	}
}

// declinedOptions reports whether err is the client's ERROR 8 answer to
// an OACK.
func declinedOptions(err error) bool {
	if err == nil {
		return false
	}
	var pe *peerError
	return errors.As(err, &pe) && pe.code == ErrCodeBadOptions
}

// serveWrite receives a file into up. With a window of W blocks it
// acknowledges every W-th block; on a gap it acknowledges the last block
// received in order so the client resends from there (RFC 7440).
func (t *transfer) serveWrite(up store.Upload, netascii bool) error {
	bs := t.params.blockSize
	window := t.params.windowSize
	if len(t.params.oack) > 0 {
		t.ctl = appendOACK(t.ctl[:0], t.params.oack)
	} else {
		t.ctl = appendAck(t.ctl[:0], 0)
	}
	if err := t.send(t.ctl); err != nil {
		return err
	}
	var (
		dec      netasciiDecoder
		scratch  []byte
		expected = uint64(1)
		inWindow int
		retries  int
		nacked   bool
		dups     int
		ackedAt  time.Time // when an ACK last went out, for duplicates
		deadline = time.Now().Add(t.wait(0))
	)
	for {
		pkt, err := t.receive(deadline)
		if errors.Is(err, errTimedOut) {
			retries++
			if retries > t.limits.retries {
				return t.abort(err)
			}
			t.retransmits.Add(1)
			if err := t.send(t.ctl); err != nil {
				return err
			}
			ackedAt = time.Now()
			deadline = ackedAt.Add(t.wait(retries))
			continue
		}
		if err != nil {
			return t.abort(err)
		}
		if opcode(pkt) != opDATA {
			continue
		}
		blk, payload, ok := parseBlockPacket(pkt)
		if !ok {
			continue
		}
		if len(payload) > bs {
			return t.sendError(ErrCodeIllegalOp, "block larger than negotiated", fmt.Errorf("client sent %d bytes in a %d-byte block", len(payload), bs))
		}
		switch delta := blk - uint16(expected); {
		case delta == 0:
			if err := t.checkDeclaredSize(int64(len(payload)), len(payload) < bs); err != nil {
				return err
			}
			data := payload
			if netascii {
				scratch = dec.decode(scratch[:0], payload)
				if len(payload) < bs {
					scratch = dec.flush(scratch)
				}
				data = scratch
			}
			if _, err := up.Write(data); err != nil {
				return t.abort(fmt.Errorf("storing block %d: %w", expected, err))
			}
			t.bytes.Add(int64(len(payload)))
			t.blocks.Add(1)
			t.progressed()
			expected++
			inWindow++
			retries, nacked, dups = 0, false, 0
			if len(payload) < bs {
				if err := up.Commit(); err != nil {
					return t.abort(fmt.Errorf("committing: %w", err))
				}
				t.lastBlock = blk
				t.markFinishing()
				t.ctl = appendAck(t.ctl[:0], blk)
				return t.send(t.ctl)
			}
			if inWindow >= window {
				inWindow = 0
				t.ctl = appendAck(t.ctl[:0], blk)
				if err := t.send(t.ctl); err != nil {
					return err
				}
			}
			ackedAt = time.Now()
			deadline = ackedAt.Add(t.wait(0))
		case delta < 0x8000:
			// A block ahead of the one expected: something was lost.
			// Acknowledge the last block in order, once per gap.
			if !nacked {
				nacked, inWindow = true, 0
				t.ctl = appendAck(t.ctl[:0], uint16(expected-1))
				if err := t.send(t.ctl); err != nil {
					return err
				}
			}
		default:
			// An old block: the client missed our ACK, or the network
			// duplicated its DATA. Answer once per window's worth of
			// duplicates so a resent window gets one ACK. In lock-step,
			// ACK a duplicate only when no ACK went out for dupAckInterval:
			// copies already queued are read and dropped, so a client that
			// answers every ACK with DATA (the Sorcerer's Apprentice, RFC
			// 1123 4.2.3.1) is not made to send each block twice, while
			// one whose ACK was really lost gets it on its retransmission.
			resend := dups%window == 0
			if window == 1 {
				resend = time.Since(ackedAt) >= dupAckInterval
			}
			if resend {
				t.ctl = appendAck(t.ctl[:0], uint16(expected-1))
				if err := t.send(t.ctl); err != nil {
					return err
				}
				ackedAt = time.Now()
			}
			dups++
		}
	}
}

// errSizeMismatch ends an upload whose length differs from the size the
// client declared with the tsize option: a client that stops short (or
// runs long) is not storing the file it meant to, so nothing is stored.
var errSizeMismatch = errors.New("upload size differs from the declared tsize")

// checkDeclaredSize refuses a block that would take an upload past its
// declared tsize, or a last block that ends it short. A declared size of 0
// is taken as unknown, as some clients send it when they do not know the
// size.
func (t *transfer) checkDeclaredSize(n int64, last bool) error {
	want := t.params.tsize
	if want <= 0 {
		return nil
	}
	got := t.bytes.Load() + n
	if got > want || (last && got != want) {
		return t.sendError(ErrCodeUndefined, fmt.Sprintf("upload is not the declared size: tsize %d", want),
			fmt.Errorf("%w: received %d bytes, declared %d", errSizeMismatch, got, want))
	}
	return nil
}

// unmapAddrPort turns an IPv4-mapped IPv6 address into plain IPv4.
func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// packetConn is what a transfer sends and receives through: its own UDP
// socket normally, or the listening socket in single-port mode.
type packetConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	SetReadDeadline(t time.Time) error
	Close() error
}

// sendBlocks sends blocks first..last (counted from 1) in as few calls as
// the batch allows. It stops after a block that comes back short, the
// last of the file, and returns its number (0 when every block was full).
// For a file whose bytes are still arriving (growing), the blocks gathered
// leave before a read that would wait, so the first block of a window is
// never held back by the ones after it.
func (t *transfer) sendBlocks(src io.ReaderAt, growing store.GrowingFile, size int64, first, last uint64) (short uint64, err error) {
	b := t.batch
	bs := int64(t.params.blockSize)
	for first <= last && short == 0 {
		n := 0
		for ; n < len(b.msgs) && first+uint64(n) <= last; n++ {
			blk := first + uint64(n)
			if n > 0 && growing != nil {
				end := int64(blk) * bs
				if size >= 0 {
					end = min(end, size)
				}
				if end > growing.Arrived() {
					break // send what is gathered, then wait for this block
				}
			}
			l, err := t.readBlock(src, size, blk, b.bufs[n])
			if err != nil {
				return 0, err
			}
			b.msgs[n].Buffers[0] = b.bufs[n][:headerLen+l]
			t.countSent(blk, l)
			if l < bs {
				short = blk
				n++
				break
			}
		}
		for sent := 0; sent < n; {
			k, err := b.w.WriteBatch(b.msgs[sent:n], 0)
			if err != nil {
				return 0, fmt.Errorf("sending to %s: %w", t.peer, err)
			}
			sent += k
		}
		first += uint64(n)
	}
	return short, nil
}
