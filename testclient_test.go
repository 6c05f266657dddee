package tftp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// testClient is the project's own TFTP client for tests: it speaks every
// option the server does and can drop chosen packets to simulate loss.
type testClient struct {
	server  netip.AddrPort
	mode    string   // "octet" unless set
	options []option // sent in the request as given
	timeout time.Duration
	retries int

	// dropIn drops a packet received from the server before the client
	// sees it; dropOut drops a packet the client is about to send. n counts
	// packets of that opcode and block seen so far (0 for the first).
	dropIn  func(op, block uint16, n int) bool
	dropOut func(op, block uint16, n int) bool

	stats clientStats
}

// clientStats counts what crossed the wire.
type clientStats struct {
	dataIn    int // DATA packets received (before drops)
	dataOut   int // DATA packets sent (including dropped)
	oack      []option
	blockSize int
	window    int
}

// serverError is an ERROR packet the server sent.
type serverError struct {
	code ErrorCode
	msg  string
}

func (e *serverError) Error() string { return fmt.Sprintf("server error %d: %s", e.code, e.msg) }

// errorCode returns the TFTP error code of err, or -1.
func errorCode(err error) int {
	var se *serverError
	if errors.As(err, &se) {
		return int(se.code)
	}
	return -1
}

type packetKey struct{ op, block uint16 }

type clientConn struct {
	c     *testClient
	conn  *net.UDPConn
	peer  netip.AddrPort // the server's transfer ID once known
	seen  map[packetKey]int
	sent  map[packetKey]int
	rbuf  []byte
	start time.Time
}

func (c *testClient) dial() (*clientConn, error) {
	network := "udp4"
	if c.server.Addr().Is6() {
		network = "udp6"
	}
	conn, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, err
	}
	// Windows of large blocks overflow the default receive buffer.
	_ = conn.SetReadBuffer(4 << 20)
	if c.timeout == 0 {
		c.timeout = 500 * time.Millisecond
	}
	if c.retries == 0 {
		c.retries = 8
	}
	if c.mode == "" {
		c.mode = "octet"
	}
	c.stats = clientStats{blockSize: defaultBlockSize, window: 1}
	return &clientConn{c: c, conn: conn, seen: map[packetKey]int{}, sent: map[packetKey]int{}, rbuf: make([]byte, 70000), start: time.Now()}, nil
}

func (cc *clientConn) send(b []byte, to netip.AddrPort) error {
	op, blk := opcode(b), uint16(0)
	if len(b) >= 4 && (op == opDATA || op == opACK) {
		blk, _, _ = parseBlockPacket(b)
	}
	k := packetKey{op, blk}
	n := cc.sent[k]
	cc.sent[k] = n + 1
	if op == opDATA {
		cc.c.stats.dataOut++
	}
	if cc.c.dropOut != nil && cc.c.dropOut(op, blk, n) {
		return nil
	}
	_, err := cc.conn.WriteToUDPAddrPort(b, to)
	return err
}

// recv returns the next packet from the server that is not dropped, or a
// timeout error.
func (cc *clientConn) recv(wait time.Duration) ([]byte, error) {
	deadline := time.Now().Add(wait)
	for {
		_ = cc.conn.SetReadDeadline(deadline)
		n, from, err := cc.conn.ReadFromUDPAddrPort(cc.rbuf)
		if err != nil {
			return nil, err
		}
		from = unmapAddrPort(from)
		if cc.peer.IsValid() && from != cc.peer {
			continue
		}
		pkt := cc.rbuf[:n]
		op, blk := opcode(pkt), uint16(0)
		if op == opDATA || op == opACK {
			blk, _, _ = parseBlockPacket(pkt)
		}
		if op == opDATA {
			cc.c.stats.dataIn++
		}
		k := packetKey{op, blk}
		seen := cc.seen[k]
		cc.seen[k] = seen + 1
		if cc.c.dropIn != nil && cc.c.dropIn(op, blk, seen) {
			continue
		}
		if !cc.peer.IsValid() {
			cc.peer = from
		}
		if op == opERROR {
			code, msg, _ := parseError(pkt)
			return nil, &serverError{code, msg}
		}
		return pkt, nil
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// applyOACK takes the negotiated values from an OACK.
func (c *testClient) applyOACK(pkt []byte) error {
	opts, err := parseOACK(pkt)
	if err != nil {
		return err
	}
	c.stats.oack = opts
	for _, o := range opts {
		switch o.name {
		case "blksize":
			c.stats.blockSize, _ = strconv.Atoi(o.value)
		case "windowsize":
			c.stats.window, _ = strconv.Atoi(o.value)
		}
	}
	return nil
}

// get reads a file.
func (c *testClient) get(name string) ([]byte, error) {
	cc, err := c.dial()
	if err != nil {
		return nil, err
	}
	defer cc.conn.Close()
	req := appendRequest(nil, opRRQ, name, c.mode, c.options...)
	var (
		out      bytes.Buffer
		expected = uint64(1)
		inWindow int
		last     []byte // last packet sent, resent on timeout
		nacked   bool
		retries  int
	)
	if err := cc.send(req, c.server); err != nil {
		return nil, err
	}
	last = req
	for {
		pkt, err := cc.recv(c.timeout)
		if isTimeout(err) {
			retries++
			if retries > c.retries {
				return out.Bytes(), fmt.Errorf("get %s: timed out", name)
			}
			to := c.server
			if cc.peer.IsValid() {
				to = cc.peer
			}
			if err := cc.send(last, to); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return out.Bytes(), err
		}
		retries = 0
		switch opcode(pkt) {
		case opOACK:
			if expected != 1 {
				continue
			}
			if err := c.applyOACK(pkt); err != nil {
				return nil, err
			}
			last = appendAck(nil, 0)
			if err := cc.send(last, cc.peer); err != nil {
				return nil, err
			}
		case opDATA:
			blk, payload, _ := parseBlockPacket(pkt)
			bs := c.stats.blockSize
			switch delta := blk - uint16(expected); {
			case delta == 0:
				out.Write(payload)
				expected++
				inWindow++
				nacked = false
				if len(payload) < bs {
					last = appendAck(nil, blk)
					return out.Bytes(), cc.send(last, cc.peer)
				}
				if inWindow >= c.stats.window {
					inWindow = 0
					last = appendAck(nil, blk)
					if err := cc.send(last, cc.peer); err != nil {
						return nil, err
					}
				}
			case delta < 0x8000:
				if !nacked {
					nacked, inWindow = true, 0
					last = appendAck(nil, uint16(expected-1))
					if err := cc.send(last, cc.peer); err != nil {
						return nil, err
					}
				}
			default:
				if c.stats.window == 1 {
					// Our ACK was lost; the server resent the block.
					if err := cc.send(appendAck(nil, uint16(expected-1)), cc.peer); err != nil {
						return nil, err
					}
				}
			}
		}
	}
}

// put writes a file.
func (c *testClient) put(name string, data []byte) error {
	cc, err := c.dial()
	if err != nil {
		return err
	}
	defer cc.conn.Close()
	req := appendRequest(nil, opWRQ, name, c.mode, c.options...)
	if err := cc.send(req, c.server); err != nil {
		return err
	}
	// Wait for ACK 0 or an OACK.
	for retries := 0; ; {
		pkt, err := cc.recv(c.timeout)
		if isTimeout(err) {
			if retries++; retries > c.retries {
				return fmt.Errorf("put %s: no answer to request", name)
			}
			if err := cc.send(req, c.server); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if opcode(pkt) == opOACK {
			if err := c.applyOACK(pkt); err != nil {
				return err
			}
			break
		}
		if blk, _, ok := parseBlockPacket(pkt); ok && opcode(pkt) == opACK && blk == 0 {
			break
		}
	}
	bs := c.stats.blockSize
	window := uint64(c.stats.window)
	lastBlock := uint64(len(data)/bs) + 1
	base, next := uint64(1), uint64(1)
	retries := 0
	pkt := make([]byte, headerLen+bs)
	for base <= lastBlock {
		for next < base+window && next <= lastBlock {
			off := int(next-1) * bs
			end := min(off+bs, len(data))
			p := pkt[:headerLen+end-off]
			putDataHeader(p, uint16(next))
			copy(p[headerLen:], data[off:end])
			if err := cc.send(p, cc.peer); err != nil {
				return err
			}
			next++
		}
		in, err := cc.recv(c.timeout)
		if isTimeout(err) {
			if retries++; retries > c.retries {
				return fmt.Errorf("put %s: timed out at block %d", name, base)
			}
			next = base
			continue
		}
		if err != nil {
			return err
		}
		if opcode(in) != opACK {
			continue
		}
		blk, _, _ := parseBlockPacket(in)
		delta, ok := ackedBlocks(blk, base, next)
		if !ok || delta == 0 {
			continue
		}
		retries = 0
		base += delta
		next = base
	}
	return nil
}
