package tftp

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// maxBatchBytes bounds the memory a window's batch of DATA packets uses.
const maxBatchBytes = 256 << 10

// batchWriter sends several datagrams in one system call (sendmmsg on
// Linux). ipv4.Message and ipv6.Message are the same type.
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// sendBatch holds the packets of one window so they leave in one call
// instead of one call per block.
type sendBatch struct {
	w    batchWriter
	msgs []ipv4.Message
	bufs [][]byte
	mem  *[]byte
}

// newSendBatch prepares batching for a windowed read on its own socket; it
// returns nil where batching does not apply.
func newSendBatch(conn datagramWriter, peer netip.AddrPort, params transferParams) *sendBatch {
	udp, ok := conn.(*net.UDPConn)
	if !ok || params.windowSize < 2 {
		return nil
	}
	pktLen := headerLen + params.blockSize
	n := min(params.windowSize, maxBatchBytes/pktLen)
	if n < 2 {
		return nil
	}
	b := &sendBatch{msgs: make([]ipv4.Message, n), bufs: make([][]byte, n)}
	addr := net.UDPAddrFromAddrPort(peer)
	if peer.Addr().Is4() {
		b.w = ipv4.NewPacketConn(udp)
	} else {
		b.w = ipv6.NewPacketConn(udp)
	}
	b.mem = getBuffer(n * pktLen)
	for i := range b.msgs {
		b.bufs[i] = (*b.mem)[i*pktLen : (i+1)*pktLen : (i+1)*pktLen]
		b.msgs[i] = ipv4.Message{Buffers: [][]byte{nil}, Addr: addr}
	}
	return b
}

func (b *sendBatch) release() {
	if b != nil {
		putBuffer(b.mem)
		b.mem = nil
	}
}

// datagramWriter is the connection a batch falls back to when it cannot
// use sendmmsg (single-port transfers, other systems).
type datagramWriter interface {
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}
