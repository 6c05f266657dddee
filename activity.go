package tftp

import (
	"net/netip"
	"sort"
	"sync/atomic"
	"time"
)

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
	// finishing is set once a read has sent its last block or a write has
	// received its last one: a request from the same address and port after
	// that comes from a client that reused its port, not a repeat.
	finishing atomic.Bool

	// inbox receives the client's packets in single-port mode; nil when
	// the transfer has a socket of its own.
	inbox *muxConn
}

// TransferInfo describes a transfer in progress, for the admin API.
type TransferInfo struct {
	Server    string `json:"server"`
	Listen    string `json:"listen"`
	Remote    string `json:"remote"`
	File      string `json:"file"`
	Direction string `json:"direction"`
	Mode      string `json:"mode"`
	Bytes     int64  `json:"bytes"`
	// Size is the file's size where it is known: a read's file size (its
	// netascii size for a netascii read) or the size a write declared with
	// the tsize option. It is -1 when unknown.
	Size       int64     `json:"size"`
	BlockSize  int       `json:"block_size"`
	WindowSize int       `json:"window_size"`
	Start      time.Time `json:"start"`
}

// ActiveTransfers lists the transfers in progress on every listener of the
// process, oldest first. Transfers that started under an older config are
// included: they run on until they finish or their grace period ends.
func ActiveTransfers() []TransferInfo {
	var out []TransferInfo
	listeners.Range(func(_, v any) bool {
		l := v.(*listener)
		l.mu.Lock()
		for _, at := range l.active {
			info := TransferInfo{
				Server:     at.server,
				Listen:     l.addr.String(),
				Remote:     unmapAddrPort(at.remote).String(),
				File:       at.file,
				Direction:  at.direction,
				Mode:       at.mode,
				BlockSize:  defaultBlockSize,
				WindowSize: 1,
				Size:       -1,
				Start:      at.start,
			}
			if t := at.xfer.Load(); t != nil {
				info.Bytes = t.bytes.Load()
				info.Size = t.size
				info.BlockSize = t.params.blockSize
				info.WindowSize = t.params.windowSize
			}
			out = append(out, info)
		}
		l.mu.Unlock()
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}
