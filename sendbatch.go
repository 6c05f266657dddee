package tftp

import (
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/caddy-tftp/tftp/store"

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
func newSendBatch(conn packetConn, peer netip.AddrPort, params transferParams) *sendBatch {
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

// sendBlocks sends blocks first..last (counted from 1) in as few calls as
// the batch allows. It stops after a block that comes back short, the
// last of the file, and returns its number (0 when every block was full).
// For a file whose bytes are still arriving, the blocks already gathered
// leave before a read that would wait, so the first block of a window is
// never held back by the ones after it.
func (t *transfer) sendBlocks(src io.ReaderAt, size int64, first, last uint64) (short uint64, err error) {
	b := t.batch
	bs := int64(t.params.blockSize)
	growing, _ := src.(store.GrowingFile)
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
