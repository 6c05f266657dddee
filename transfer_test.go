package tftp

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// rawConn is a bare UDP socket for tests that script packets by hand.
type rawConn struct {
	t    testing.TB
	conn *net.UDPConn
	buf  []byte
}

func dialRaw(t testing.TB) *rawConn {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawConn{t: t, conn: conn, buf: make([]byte, 70000)}
}

func (r *rawConn) send(to netip.AddrPort, b []byte) {
	r.t.Helper()
	if _, err := r.conn.WriteToUDPAddrPort(b, to); err != nil {
		r.t.Fatal(err)
	}
}

// recv waits for one packet; ok is false on timeout.
func (r *rawConn) recv(wait time.Duration) (pkt []byte, from netip.AddrPort, ok bool) {
	_ = r.conn.SetReadDeadline(time.Now().Add(wait))
	n, from, err := r.conn.ReadFromUDPAddrPort(r.buf)
	if err != nil {
		return nil, netip.AddrPort{}, false
	}
	return append([]byte(nil), r.buf[:n]...), unmapAddrPort(from), true
}

func (r *rawConn) mustRecv(wait time.Duration) ([]byte, netip.AddrPort) {
	r.t.Helper()
	pkt, from, ok := r.recv(wait)
	if !ok {
		r.t.Fatal("no packet from the server")
	}
	return pkt, from
}

func putFile(t testing.TB, server netip.AddrPort, name string, data []byte) {
	t.Helper()
	c := &testClient{server: server, options: []option{{"blksize", "8192"}, {"windowsize", "8"}}}
	if err := c.put(name, data); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}

func TestWindowAndBlockSizes(t *testing.T) {
	port := startDefaultServer(t)
	server := loopback4(port)
	data := randomBytes(t, 300_000)
	for _, bs := range []int{8, 512, 1428, 1468, 8192, 65464} {
		for _, w := range []int{1, 4, 16, 64} {
			t.Run(fmt.Sprintf("blksize%d/window%d", bs, w), func(t *testing.T) {
				name := fmt.Sprintf("w%d-b%d", w, bs)
				opts := []option{{"blksize", strconv.Itoa(bs)}, {"windowsize", strconv.Itoa(w)}}
				up := &testClient{server: server, options: opts}
				if err := up.put(name, data); err != nil {
					t.Fatalf("put: %v", err)
				}
				down := &testClient{server: server, options: opts}
				got, err := down.get(name)
				if err != nil {
					t.Fatalf("get: %v", err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("got %d bytes, want %d identical", len(got), len(data))
				}
				if down.stats.blockSize != bs || down.stats.window != w {
					t.Fatalf("negotiated blksize %d window %d", down.stats.blockSize, down.stats.window)
				}
				if want := len(data)/bs + 1; down.stats.dataIn != want {
					t.Errorf("server sent %d DATA packets for %d blocks", down.stats.dataIn, want)
				}
			})
		}
	}
}

// TestLoss drops chosen DATA and ACK packets in both directions; transfers
// must still complete byte-for-byte and the server must not flood.
func TestLoss(t *testing.T) {
	port := startDefaultServer(t, "timeout 50ms")
	server := loopback4(port)
	data := randomBytes(t, 200*512+100) // 201 blocks
	blocks := len(data)/512 + 1
	dropFirst := func(blocks ...uint16) func(op, blk uint16, n int) bool {
		return func(op, blk uint16, n int) bool {
			if n > 0 {
				return false
			}
			for _, b := range blocks {
				if blk == b && (op == opDATA || op == opACK) {
					return true
				}
			}
			return false
		}
	}
	lost := []uint16{1, 2, 50, 51, 100, 150, 199, 200, 201}
	for _, w := range []int{1, 16} {
		opts := []option{{"windowsize", strconv.Itoa(w)}}
		t.Run(fmt.Sprintf("window%d/get-lost-data", w), func(t *testing.T) {
			putFile(t, server, "loss-src", data)
			c := &testClient{server: server, options: opts, timeout: 40 * time.Millisecond, dropIn: dropFirst(lost...)}
			got, err := c.get("loss-src")
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("get: %v (%d bytes)", err, len(got))
			}
			// Every lost block is resent, plus at most a window each.
			if limit := blocks + len(lost)*(w+1) + 4; c.stats.dataIn > limit {
				t.Errorf("server sent %d DATA packets for %d blocks (limit %d)", c.stats.dataIn, blocks, limit)
			}
		})
		t.Run(fmt.Sprintf("window%d/get-lost-ack", w), func(t *testing.T) {
			putFile(t, server, "loss-src", data)
			c := &testClient{server: server, options: opts, timeout: 40 * time.Millisecond, dropOut: dropFirst(0, 16, 32, 48, 64, 200)}
			got, err := c.get("loss-src")
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("get: %v (%d bytes)", err, len(got))
			}
			if limit := blocks + 6*(w+1) + 4; c.stats.dataIn > limit {
				t.Errorf("server sent %d DATA packets for %d blocks (limit %d)", c.stats.dataIn, blocks, limit)
			}
		})
		t.Run(fmt.Sprintf("window%d/put-lost-data", w), func(t *testing.T) {
			name := fmt.Sprintf("loss-put-data-%d", w)
			c := &testClient{server: server, options: opts, timeout: 40 * time.Millisecond, dropOut: dropFirst(lost...)}
			if err := c.put(name, data); err != nil {
				t.Fatalf("put: %v", err)
			}
			got, err := (&testClient{server: server}).get(name)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("get back: %v (%d bytes)", err, len(got))
			}
		})
		t.Run(fmt.Sprintf("window%d/put-lost-ack", w), func(t *testing.T) {
			name := fmt.Sprintf("loss-put-ack-%d", w)
			c := &testClient{server: server, options: opts, timeout: 40 * time.Millisecond, dropIn: dropFirst(0, 16, 32, 100, 201)}
			if err := c.put(name, data); err != nil {
				t.Fatalf("put: %v", err)
			}
			got, err := (&testClient{server: server}).get(name)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("get back: %v (%d bytes)", err, len(got))
			}
		})
	}
}

// TestRollover moves a file of more than 65535 blocks both ways; small
// blocks keep it quick.
func TestRollover(t *testing.T) {
	port := startDefaultServer(t)
	server := loopback4(port)
	data := randomBytes(t, 70000*16+5) // 70001 blocks of 16 bytes
	opts := []option{{"blksize", "16"}, {"windowsize", "32"}}
	for _, w := range []string{"1", "32"} {
		opts[1].value = w
		name := "rollover-" + w
		if err := (&testClient{server: server, options: opts}).put(name, data); err != nil {
			t.Fatalf("window %s put: %v", w, err)
		}
		c := &testClient{server: server, options: opts}
		got, err := c.get(name)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("window %s get: %v (%d of %d bytes)", w, err, len(got), len(data))
		}
	}
}

func TestLargeWindowedTransfer(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB transfer skipped in -short mode")
	}
	port := startDefaultServer(t)
	server := loopback4(port)
	data := randomBytes(t, 64<<20)
	opts := []option{{"blksize", "1468"}, {"windowsize", "16"}}
	if err := (&testClient{server: server, options: opts}).put("big.img", data); err != nil {
		t.Fatalf("put: %v", err)
	}
	got, err := (&testClient{server: server, options: opts}).get("big.img")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get: %v (%d of %d bytes)", err, len(got), len(data))
	}
}

// TestUEFIProbe plays EDK2's size probe: tsize and blksize, ERROR 8 after
// the OACK, then a fresh request from a new port.
func TestUEFIProbe(t *testing.T) {
	port := startDefaultServer(t)
	server := loopback4(port)
	data := randomBytes(t, 5<<20)
	putFile(t, server, "bootx64.efi", data)

	probe := dialRaw(t)
	probe.send(server, appendRequest(nil, opRRQ, "bootx64.efi", "octet", option{"tsize", "0"}, option{"blksize", "1468"}))
	pkt, tid := probe.mustRecv(2 * time.Second)
	opts, err := parseOACK(pkt)
	if err != nil {
		t.Fatalf("expected an OACK, got %v: %v", pkt, err)
	}
	if formatOptions(opts) != fmt.Sprintf("tsize=%d blksize=1468", len(data)) {
		t.Fatalf("OACK %s", formatOptions(opts))
	}
	probe.send(tid, appendError(nil, ErrCodeBadOptions, "User aborted the transfer"))
	// The server must end quietly: no DATA, no ERROR back.
	if pkt, _, ok := probe.recv(300 * time.Millisecond); ok {
		t.Fatalf("server answered the ERROR 8 with %v", pkt)
	}
	c := &testClient{server: server, options: []option{{"blksize", "1468"}, {"windowsize", "4"}}}
	got, err := c.get("bootx64.efi")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("second request: %v", err)
	}
}

// TestReadWaitsForAck0 checks that after an OACK no DATA flows until the
// client acknowledges it with ACK 0.
func TestReadWaitsForAck0(t *testing.T) {
	port := startDefaultServer(t, "timeout 200ms")
	server := loopback4(port)
	putFile(t, server, "f", randomBytes(t, 2000))
	r := dialRaw(t)
	r.send(server, appendRequest(nil, opRRQ, "f", "octet", option{"blksize", "1024"}))
	pkt, tid := r.mustRecv(time.Second)
	if opcode(pkt) != opOACK {
		t.Fatalf("want OACK, got %v", pkt)
	}
	// Without ACK 0 the server may only repeat the OACK.
	if pkt, _, ok := r.recv(350 * time.Millisecond); ok && opcode(pkt) != opOACK {
		t.Fatalf("server sent %v before ACK 0", pkt)
	}
	r.send(tid, appendAck(nil, 0))
	for {
		pkt, _ = r.mustRecv(time.Second)
		if opcode(pkt) == opDATA {
			break
		}
	}
	if blk, payload, _ := parseBlockPacket(pkt); blk != 1 || len(payload) != 1024 {
		t.Fatalf("first DATA: block %d, %d bytes", blk, len(payload))
	}
}

// TestWriteOACKThenData checks that a write with options is answered by an
// OACK that DATA 1 acknowledges, and that a declared size over the limit is
// refused with ERROR 3 before any data flows.
func TestWriteOACKAndTsizeLimit(t *testing.T) {
	port := startDefaultServer(t, "store default {", "max_file_size 10000", "}")
	server := loopback4(port)
	r := dialRaw(t)
	r.send(server, appendRequest(nil, opWRQ, "too-big", "octet", option{"tsize", "10001"}))
	pkt, _ := r.mustRecv(time.Second)
	if code, _, ok := parseError(pkt); !ok || code != ErrCodeDiskFull {
		t.Fatalf("want ERROR 3 for an over-limit tsize, got %v", pkt)
	}
	// Without tsize the limit is enforced as data arrives.
	err := (&testClient{server: server}).put("too-big", make([]byte, 10001))
	if errorCode(err) != int(ErrCodeDiskFull) {
		t.Fatalf("put over the limit: %v, want ERROR 3", err)
	}
	if _, err := (&testClient{server: server}).get("too-big"); errorCode(err) != int(ErrCodeFileNotFound) {
		t.Fatalf("a refused upload left something behind: %v", err)
	}

	r.send(server, appendRequest(nil, opWRQ, "ok", "octet", option{"tsize", "3"}, option{"blksize", "600"}))
	pkt, tid := r.mustRecv(time.Second)
	if opts, err := parseOACK(pkt); err != nil || formatOptions(opts) != "tsize=3 blksize=600" {
		t.Fatalf("want OACK tsize=3 blksize=600, got %v", pkt)
	}
	d := []byte{0, 3, 0, 1, 'a', 'b', 'c'}
	r.send(tid, d)
	pkt, _ = r.mustRecv(time.Second)
	if blk, _, ok := parseBlockPacket(pkt); !ok || opcode(pkt) != opACK || blk != 1 {
		t.Fatalf("want ACK 1, got %v", pkt)
	}
}

func TestModes(t *testing.T) {
	port := startDefaultServer(t)
	server := loopback4(port)
	r := dialRaw(t)
	for mode, want := range map[string]ErrorCode{"mail": ErrCodeIllegalOp, "binary": ErrCodeIllegalOp, "en_US.UTF-8": ErrCodeIllegalOp} {
		r.send(server, appendRequest(nil, opRRQ, "f", mode))
		pkt, _ := r.mustRecv(time.Second)
		if code, _, ok := parseError(pkt); !ok || code != want {
			t.Errorf("mode %q: got %v, want ERROR %d", mode, pkt, want)
		}
	}
	// Mode names are case-insensitive; netascii translates line ends.
	text := []byte("one\ntwo\r\nthree\rfour\n")
	up := &testClient{server: server, mode: "NetASCII"}
	if err := up.put("text.txt", netasciiEncode(text)); err != nil {
		t.Fatal(err)
	}
	stored, err := (&testClient{server: server, mode: "OCTET"}).get("text.txt")
	if err != nil || !bytes.Equal(stored, text) {
		t.Fatalf("stored form %q, want %q (%v)", stored, text, err)
	}
	c := &testClient{server: server, mode: "netascii", options: []option{{"tsize", "0"}}}
	wire, err := c.get("text.txt")
	if err != nil || !bytes.Equal(wire, netasciiEncode(text)) {
		t.Fatalf("netascii get %q (%v)", wire, err)
	}
	if formatOptions(c.stats.oack) != "tsize="+strconv.Itoa(len(netasciiEncode(text))) {
		t.Errorf("netascii tsize: %s", formatOptions(c.stats.oack))
	}
}

// TestWrongTID checks that a stranger writing to a transfer's port gets
// ERROR 5 and the transfer carries on.
func TestWrongTID(t *testing.T) {
	port := startDefaultServer(t)
	server := loopback4(port)
	data := randomBytes(t, 1500)
	putFile(t, server, "f", data)
	r := dialRaw(t)
	r.send(server, appendRequest(nil, opRRQ, "f", "octet"))
	pkt, tid := r.mustRecv(time.Second)
	if blk, _, _ := parseBlockPacket(pkt); opcode(pkt) != opDATA || blk != 1 {
		t.Fatalf("want DATA 1, got %v", pkt)
	}
	stranger := dialRaw(t)
	stranger.send(tid, appendAck(nil, 1))
	pkt, from := stranger.mustRecv(time.Second)
	if code, _, ok := parseError(pkt); !ok || code != ErrCodeUnknownTID || from != tid {
		t.Fatalf("stranger got %v from %s, want ERROR 5 from %s", pkt, from, tid)
	}
	var got []byte
	r.send(tid, appendAck(nil, 1))
	for blk := uint16(2); ; blk++ {
		pkt, _ = r.mustRecv(time.Second)
		b, payload, _ := parseBlockPacket(pkt)
		if opcode(pkt) != opDATA || b != blk {
			t.Fatalf("want DATA %d, got %v", blk, pkt[:4])
		}
		got = append(got, payload...)
		r.send(tid, appendAck(nil, blk))
		if len(payload) < 512 {
			break
		}
	}
	if !bytes.Equal(got, data[512:]) {
		t.Fatal("transfer disturbed by the stranger")
	}
}

// TestDuplicateAckNoResend: in lock-step a duplicate ACK must not trigger
// a resend (the Sorcerer's Apprentice bug, RFC 1123 4.2.3.1).
func TestDuplicateAckNoResend(t *testing.T) {
	port := startDefaultServer(t, "timeout 2s")
	server := loopback4(port)
	putFile(t, server, "f", randomBytes(t, 3000))
	r := dialRaw(t)
	r.send(server, appendRequest(nil, opRRQ, "f", "octet"))
	_, tid := r.mustRecv(time.Second)
	r.send(tid, appendAck(nil, 1))
	pkt, _ := r.mustRecv(time.Second)
	if blk, _, _ := parseBlockPacket(pkt); blk != 2 {
		t.Fatalf("want DATA 2, got %v", pkt[:4])
	}
	r.send(tid, appendAck(nil, 1)) // duplicate
	if pkt, _, ok := r.recv(500 * time.Millisecond); ok {
		t.Fatalf("duplicate ACK answered with %v", pkt[:4])
	}
}

// TestRetransmitBounded: a client that never answers receives the first
// packet plus the configured retries and nothing more.
func TestRetransmitBounded(t *testing.T) {
	port := startDefaultServer(t, "timeout 20ms", "retries 3")
	server := loopback4(port)
	putFile(t, server, "f", randomBytes(t, 3000))
	r := dialRaw(t)
	r.send(server, appendRequest(nil, opRRQ, "f", "octet"))
	var data, errs int
	for {
		pkt, _, ok := r.recv(2 * time.Second)
		if !ok {
			break
		}
		switch opcode(pkt) {
		case opDATA:
			data++
		case opERROR:
			errs++
		}
		if errs > 0 {
			break
		}
	}
	if data != 4 || errs != 0 {
		t.Fatalf("got %d DATA and %d ERROR packets, want 4 and 0", data, errs)
	}
}

// TestRepliesFromAddressContacted: a server listening on the wildcard
// address answers from the address the client sent to, both for a
// transfer (its own socket) and for an error (the listening socket).
func TestRepliesFromAddressContacted(t *testing.T) {
	port := startDefaultServer(t)
	putFile(t, loopback4(port), "f", randomBytes(t, 100))
	second := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port)
	r := dialRaw(t)

	r.send(second, appendRequest(nil, opRRQ, "f", "octet"))
	pkt, from := r.mustRecv(time.Second)
	if opcode(pkt) != opDATA || from.Addr() != second.Addr() || from.Port() == port {
		t.Fatalf("DATA 1 came as %v from %s, want DATA from %s on a new port", pkt[:2], from, second.Addr())
	}
	r.send(from, appendAck(nil, 1))

	r.send(second, appendRequest(nil, opRRQ, "missing", "octet"))
	pkt, from = r.mustRecv(time.Second)
	if code, _, ok := parseError(pkt); !ok || code != ErrCodeFileNotFound || from != second {
		t.Fatalf("got %v from %s, want ERROR 1 from %s", pkt, from, second)
	}
}
