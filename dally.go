package tftp

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// dallyDuration is how long the end of an upload is remembered after its
// final ACK: a client whose final ACK was lost resends its last DATA block
// (atftp after 5, 10 and 15 s, curl later) and gets the ACK again instead of
// reporting a failure for a file that was stored (RFC 1350 section 6, RFC
// 1123 4.2.3.1). A dallying upload holds no buffer and no transfer slot.
// Servers read it when they are provisioned.
var dallyDuration = 30 * time.Second

// maxDallies bounds the uploads that dally at once in the process (and, in
// single-port mode, on each listener), so a storm of short uploads cannot
// pile up sockets: past it, an upload ends without dallying, as it would
// with most servers.
const maxDallies = 4096

// dallying counts the sockets held by startDally.
var dallying atomic.Int64

// startDally answers, for d, retransmissions of the last DATA
// block of a finished upload on its own socket, then closes the socket. It
// keeps only the socket and a small goroutine; the transfer's buffers and
// its claim are already released. At most one ACK goes out per
// dupAckInterval. It ends early when ctx (the transfers' context of the
// server) ends.
func startDally(ctx context.Context, conn *net.UDPConn, peer netip.AddrPort, block uint16, d time.Duration) {
	if dallying.Add(1) > maxDallies {
		dallying.Add(-1)
		_ = conn.Close()
		return
	}
	until := time.Now().Add(d)
	go func() {
		defer dallying.Add(-1)
		defer conn.Close()
		_ = conn.SetReadDeadline(until)
		stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
		defer stop()
		var ack, buf [headerLen]byte
		appendAck(ack[:0], block)
		var last time.Time
		for {
			// Only the header is read; the rest of a datagram is dropped.
			n, from, err := conn.ReadFromUDPAddrPort(buf[:])
			if err != nil {
				return
			}
			if n < headerLen || unmapAddrPort(from) != peer || opcode(buf[:n]) != opDATA {
				continue
			}
			if blk, _, _ := parseBlockPacket(buf[:n]); blk != block {
				continue
			}
			if now := time.Now(); now.Sub(last) >= dupAckInterval {
				last = now
				_, _ = conn.WriteToUDPAddrPort(ack[:], peer)
			}
		}
	}()
}
