package tftp

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// A request as the listener hands it to the server: who sent it, where it
// arrived, and the listener's services for it, reached through the
// requestPort interface so that nothing downstream of the listener names
// it. Also the listener's record of an accepted request (activeTransfer).

// activeTransfer is the listener's record of a transfer in progress. It is
// created when a request is accepted, before the transfer has a socket, and
// lives in the listener so it survives config reloads.
type activeTransfer struct {
	server    string
	file      string
	direction string
	mode      string
	remote    netip.AddrPort // as received: may be IPv4-mapped
	start     time.Time
	xfer      atomic.Pointer[transfer]
	// finished is set when the exchange with the client is over, so a new
	// request from the same address and port is not taken for a duplicate
	// while the transfer is still logging or dallying.
	finished atomic.Bool

	// inbox receives the client's packets in single-port mode; nil when
	// the transfer has a socket of its own.
	inbox inboxConn
}

// finishing reports whether the transfer has moved its last block: a
// request from the same address and port after that comes from a client
// that reused its port, not a repeat.
func (at *activeTransfer) finishing() bool {
	t := at.xfer.Load()
	return t != nil && t.finishing.Load()
}

// claimLimits bound the transfers a listener accepts; zero means no limit.
type claimLimits struct {
	total   int
	perHost int
}

// claimResult says why a request was or was not accepted.
type claimResult int

const (
	claimed claimResult = iota
	claimDuplicate
	claimOverTotal
	claimOverHost
)

// inbound is one request datagram as the listener received it.
type inbound struct {
	pkt    []byte         // valid only while the server handles it inline
	remote netip.AddrPort // as received: may be IPv4-mapped
	local  netip.Addr     // the address the client contacted
	port   requestPort    // the listener it arrived on
}

// reply answers the request from the address the client contacted.
func (in *inbound) reply(b []byte) { in.port.reply(b, in.remote, in.local) }

// requestPort is what a request may ask of the listener it arrived on.
type requestPort interface {
	// reply sends b to remote from the listening socket, with local as
	// the source address.
	reply(b []byte, remote netip.AddrPort, local netip.Addr)
	// claim registers a transfer for its client address within limits;
	// a stalled transfer of the same host may be evicted to make room.
	claim(at *activeTransfer, limits claimLimits) (result claimResult, victim *activeTransfer)
	// unclaim ends what claim started.
	unclaim(at *activeTransfer)
	// inbox returns a single-port transfer's connection, which the
	// listener feeds with the client's packets once claimed.
	inbox(remote netip.AddrPort, local netip.Addr) inboxConn
	// transferSocket returns a socket on an ephemeral port of local for
	// a transfer with peer, from the listener's idle ones when it can.
	transferSocket(local netip.Addr, peer netip.AddrPort, params transferParams) (*net.UDPConn, error)
	// recycleSocket hands back a socket transferSocket gave out, once its
	// transfer with peer has ended.
	recycleSocket(local netip.Addr, conn *net.UDPConn, peer netip.AddrPort)
	// addDally keeps answering the last DATA block of a single-port
	// upload that has ended, for d.
	addDally(remote netip.AddrPort, local netip.Addr, block uint16, d time.Duration)
}

// inboxConn is a single-port transfer's connection over the listening
// socket.
type inboxConn interface {
	packetConn
	// deliver queues a packet from the client.
	deliver(pkt []byte)
}
