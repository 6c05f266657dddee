package tftp

// The adversarial suite ("Safe on a hostile network"): every case scripts
// raw UDP packets on loopback, asserts the exact reply (opcode, error code,
// block number) or that nothing comes back within a bounded wait, and then
// checks that a normal transfer still works. The suite ends by checking that
// goroutines and file descriptors are back near the baseline taken at its
// start.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Waits used throughout the suite: how long to wait for a reply that must
// come, and how long to listen to be sure that none comes.
const (
	advReply   = 2 * time.Second
	advSilence = 250 * time.Millisecond
)

func TestAdversarial(t *testing.T) {
	// Start and stop one config first so one-time process state (logging,
	// metrics, buffer pools) exists before the baseline is taken.
	t.Run("WarmUp", func(t *testing.T) {
		port := advStart(t)
		server := loopback4(port)
		advPut(t, server, "warm", randomBytes(t, 3000))
		advGetOK(t, server, "warm", nil)
	})
	baseG, baseFD := runtime.NumGoroutine(), advFDs()
	t.Cleanup(func() {
		advAwaitBaseline(t, "after the adversarial suite", baseG, baseFD, 0, 0, 10*time.Second)
	})

	t.Run("SamePortAfterError", advSamePortAfterError)
	t.Run("MaxTransferDuration", advMaxTransferDuration)
	t.Run("MinTransferRate", advMinTransferRate)
	t.Run("Amplification", advAmplification)
	t.Run("Malformed", advMalformed)
	t.Run("Flood", advFlood)
	t.Run("Abandoned", advAbandoned)
	t.Run("SinglePort", advSinglePort)
	t.Run("AbortedWrites", advAbortedWrites)
	t.Run("AbortedWriteByReload", advAbortedWriteByReload)
	t.Run("AbortedWriteByStop", advAbortedWriteByStop)
	t.Run("ReaderDuringOverwrite", advReaderDuringOverwrite)
}

// ---------------------------------------------------------------------------
// Helpers

// advCaddyfile is tftpCaddyfile with logging limited to errors (the suite
// provokes thousands of refusals) and a short grace period, so transfers of
// a stopped config never outlive their test by long.
func advCaddyfile(body string) string {
	cf := "{\n\tadmin off\n\tpersist_config off\n\tlog {\n\t\tlevel ERROR\n\t}\n\ttftp {\n\t\tgrace_period 200ms\n" + body + "\n\t}\n}\n"
	return string(caddyfile.Format([]byte(cf)))
}

// advStart runs one server on the wildcard address of a free port.
func advStart(t testing.TB, extra ...string) uint16 {
	t.Helper()
	port := freePort(t)
	startCaddy(t, advCaddyfile(lines(append([]string{fmt.Sprintf("listen :%d", port)}, extra...)...)))
	return port
}

// advPeer is a raw UDP socket on one loopback address.
type advPeer struct {
	t    testing.TB
	conn *net.UDPConn
	buf  []byte
}

func advDial(t testing.TB, v6 bool) *advPeer {
	t.Helper()
	network, ip := "udp4", net.IPv4(127, 0, 0, 1)
	if v6 {
		network, ip = "udp6", net.IPv6loopback
	}
	conn, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &advPeer{t: t, conn: conn, buf: make([]byte, 70000)}
}

func (p *advPeer) send(to netip.AddrPort, b []byte) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatalf("sending to %s: %v", to, err)
	}
}

func (p *advPeer) recv(wait time.Duration) ([]byte, netip.AddrPort, bool) {
	_ = p.conn.SetReadDeadline(time.Now().Add(wait))
	n, from, err := p.conn.ReadFromUDPAddrPort(p.buf)
	if err != nil {
		return nil, netip.AddrPort{}, false
	}
	return append([]byte(nil), p.buf[:n]...), unmapAddrPort(from), true
}

// expectSilence fails if any packet arrives within wait.
func (p *advPeer) expectSilence(what string, wait time.Duration) {
	p.t.Helper()
	if pkt, from, ok := p.recv(wait); ok {
		p.t.Errorf("%s: want no reply within %v, got %s from %s", what, wait, advDescribe(pkt), from)
	}
}

// expectError waits for one packet, which must be ERROR code from from (if
// valid) whose message echoes none of secrets nor anything that looks like a
// server internal. It returns the sender.
func (p *advPeer) expectError(what string, from netip.AddrPort, code ErrorCode, secrets ...string) netip.AddrPort {
	p.t.Helper()
	pkt, src, ok := p.recv(advReply)
	if !ok {
		p.t.Errorf("%s: want ERROR %d, got no reply within %v", what, code, advReply)
		return netip.AddrPort{}
	}
	got, msg, isErr := parseError(pkt)
	if !isErr || got != code {
		p.t.Errorf("%s: want ERROR %d, got %s", what, code, advDescribe(pkt))
		return src
	}
	if pkt[len(pkt)-1] != 0 {
		p.t.Errorf("%s: ERROR message not NUL-terminated: %q", what, pkt)
	}
	if from.IsValid() && src != from {
		p.t.Errorf("%s: ERROR %d came from %s, want %s", what, code, src, from)
	}
	advCheckMessage(p.t, what, msg, secrets...)
	return src
}

// expectBlock waits for a DATA or ACK packet with the given block number.
func (p *advPeer) expectBlock(what string, op, block uint16) ([]byte, netip.AddrPort) {
	p.t.Helper()
	pkt, src, ok := p.recv(advReply)
	if !ok {
		p.t.Fatalf("%s: want %s %d, got no reply within %v", what, advOpName(op), block, advReply)
	}
	if blk, _, isBlk := parseBlockPacket(pkt); opcode(pkt) != op || !isBlk || blk != block {
		p.t.Fatalf("%s: want %s %d, got %s", what, advOpName(op), block, advDescribe(pkt))
	}
	return pkt, src
}

// advCheckMessage fails if an ERROR message repeats a requested name or
// looks like it carries server internals (paths, Go errors, panics).
func advCheckMessage(t testing.TB, what, msg string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		// Short names ("f") occur in ordinary words; check distinctive ones.
		if len(s) >= 4 && strings.Contains(msg, s) {
			t.Errorf("%s: ERROR message %q echoes the requested name %q", what, msg, s)
		}
	}
	for _, leak := range []string{"/", `\`, "..", ".go", "panic", "runtime", "goroutine", "0x", "%!", "udp", "127.0.0.1", "::1", os.TempDir()} {
		if strings.Contains(msg, leak) {
			t.Errorf("%s: ERROR message %q carries server internals (%q)", what, msg, leak)
		}
	}
}

func advOpName(op uint16) string {
	switch op {
	case opRRQ:
		return "RRQ"
	case opWRQ:
		return "WRQ"
	case opDATA:
		return "DATA"
	case opACK:
		return "ACK"
	case opERROR:
		return "ERROR"
	case opOACK:
		return "OACK"
	}
	return "opcode " + strconv.Itoa(int(op))
}

// advDescribe renders a packet for failure messages.
func advDescribe(pkt []byte) string {
	switch op := opcode(pkt); {
	case len(pkt) < 2:
		return fmt.Sprintf("%d-byte packet %q", len(pkt), pkt)
	case op == opERROR:
		code, msg, _ := parseError(pkt)
		return fmt.Sprintf("ERROR %d %q", code, msg)
	case op == opDATA || op == opACK:
		blk, payload, _ := parseBlockPacket(pkt)
		return fmt.Sprintf("%s %d (%d bytes of payload)", advOpName(op), blk, len(payload))
	case op == opOACK:
		opts, _ := parseOACK(pkt)
		return "OACK " + formatOptions(opts)
	default:
		return fmt.Sprintf("%s (%d bytes)", advOpName(op), len(pkt))
	}
}

func advData(block uint16, payload []byte) []byte {
	b := make([]byte, headerLen+len(payload))
	putDataHeader(b, block)
	copy(b[headerLen:], payload)
	return b
}

// advGetOK checks that a normal get of name works (and, if want is not
// nil, returns exactly want).
func advGetOK(t testing.TB, server netip.AddrPort, name string, want []byte) {
	t.Helper()
	got, err := (&testClient{server: server}).get(name)
	if err != nil {
		t.Fatalf("normal get of %q from %s afterwards: %v", name, server, err)
	}
	if want != nil && !bytes.Equal(got, want) {
		t.Fatalf("normal get of %q from %s: got %d bytes, want %d identical bytes", name, server, len(got), len(want))
	}
}

// advGetCode checks that a get of name fails with the given ERROR code.
func advGetCode(t testing.TB, server netip.AddrPort, name string, code ErrorCode) {
	t.Helper()
	got, err := (&testClient{server: server}).get(name)
	if errorCode(err) != int(code) {
		t.Errorf("get of %q: got %d bytes, err %v; want ERROR %d", name, len(got), err, code)
	}
}

// advReadRest completes a lock-step read whose first DATA (block 1) was
// already received from tid, and returns the whole file.
func advReadRest(t testing.TB, p *advPeer, tid netip.AddrPort, first []byte) []byte {
	t.Helper()
	_, payload, _ := parseBlockPacket(first)
	out := append([]byte(nil), payload...)
	p.send(tid, appendAck(nil, 1))
	for blk := uint16(2); len(payload) == defaultBlockSize; blk++ {
		if blk > 1000 {
			t.Fatal("advReadRest: file too long for the test")
		}
		// A retransmission of the previous block (its ACK crossed it) is
		// skipped, a bounded number of times.
		for range 10 {
			pkt, _, ok := p.recv(advReply)
			if !ok {
				t.Fatalf("reading on: want DATA %d, got no reply within %v", blk, advReply)
			}
			b, pl, _ := parseBlockPacket(pkt)
			if opcode(pkt) == opDATA && b == blk-1 {
				continue
			}
			if opcode(pkt) != opDATA || b != blk {
				t.Fatalf("reading on: want DATA %d, got %s", blk, advDescribe(pkt))
			}
			payload = pl
			break
		}
		out = append(out, payload...)
		p.send(tid, appendAck(nil, blk))
	}
	return out
}

func advFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - idleSockets()
}

// advHeapInuse returns HeapInuse after two collections (the second empties
// the sync.Pool victim caches).
func advHeapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// advAwaitBaseline polls (bounded) until goroutines, open fds and, if
// heapBase is not 0, HeapInuse are back near the baseline.
func advAwaitBaseline(t testing.TB, what string, baseG, baseFD int, heapBase, heapSlack uint64, within time.Duration) {
	t.Helper()
	const slack = 10
	deadline := time.Now().Add(within)
	var g, fd int
	var heap uint64
	for {
		g, fd = runtime.NumGoroutine(), advFDs()
		ok := g <= baseG+slack && fd <= baseFD+slack
		if ok && heapBase != 0 {
			heap = advHeapInuse()
			ok = heap <= heapBase+heapSlack
		}
		if ok {
			t.Logf("%s: goroutines %d (baseline %d), fds %d (baseline %d), heap in use %d KiB (baseline %d KiB)", what, g, baseG, fd, baseFD, heap>>10, heapBase>>10)
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling a bounded deadline; there is no signal for "memory released"
	}
	var stacks bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
	s := stacks.String()
	if len(s) > 6000 {
		s = s[:6000] + "\n..."
	}
	t.Errorf("%s: not back near baseline after %v: goroutines %d (baseline %d), fds %d (baseline %d), heap in use %d KiB (baseline %d KiB, slack %d KiB)\n%s",
		what, within, g, baseG, fd, baseFD, heap>>10, heapBase>>10, heapSlack>>10, s)
}

// ---------------------------------------------------------------------------
// Access control

// ---------------------------------------------------------------------------
// Names

// advSamePortAfterError: a client that receives ERROR 1 for one request and
// at once sends another from the same port (the tftp-hpa interactive client
// keeps one socket for its session) must be answered. The ERROR is sent from
// runTransfer while the port's claim is still held; it is released only by
// the deferred unregister, so a quick next request is dropped as a
// "duplicate" and the client must wait out its own timeout.
func advSamePortAfterError(t *testing.T) {
	const tries = 1000
	port := advStart(t, "timeout 1s")
	server := loopback4(port)
	data := randomBytes(t, 100)
	advPut(t, server, "there", data)
	dropped := 0
	for range tries {
		p := advDial(t, false)
		p.send(server, appendRequest(nil, opRRQ, "missing", "octet"))
		p.expectError("RRQ of a missing file", server, ErrCodeFileNotFound, "missing")
		p.send(server, appendRequest(nil, opRRQ, "there", "octet"))
		pkt, tid, ok := p.recv(150 * time.Millisecond)
		if !ok {
			dropped++
			p.conn.Close()
			continue
		}
		if blk, _, _ := parseBlockPacket(pkt); opcode(pkt) != opDATA || blk != 1 {
			t.Fatalf("second request: got %s", advDescribe(pkt))
		}
		p.send(tid, appendAck(nil, 1))
		p.conn.Close()
	}
	if dropped > 0 {
		t.Errorf("%d of %d requests sent right after an ERROR 1 on the same port went unanswered (dropped as duplicates of the refused request, whose claim is released only after the ERROR is sent)", dropped, tries)
	}
	advGetOK(t, server, "there", data)
}

// ---------------------------------------------------------------------------
// Limits

// advRetryUntilServed retransmits an RRQ as a client would (every 100ms,
// at most 30 times) until DATA 1 arrives, then reads the file.
func advRetryUntilServed(t testing.TB, p *advPeer, server netip.AddrPort, name string) []byte {
	t.Helper()
	for range 30 {
		p.send(server, appendRequest(nil, opRRQ, name, "octet"))
		pkt, tid, ok := p.recv(100 * time.Millisecond)
		if !ok {
			continue
		}
		if blk, _, _ := parseBlockPacket(pkt); opcode(pkt) != opDATA || blk != 1 {
			t.Fatalf("retransmitted request answered with %s", advDescribe(pkt))
		}
		return advReadRest(t, p, tid, pkt)
	}
	t.Fatal("retransmitted request never served after a slot was freed")
	return nil
}

func advMaxTransferDuration(t *testing.T) {
	const limit = 400 * time.Millisecond
	port := advStart(t, "timeout 300ms", "max_transfer_duration 400ms")
	server := loopback4(port)
	data := randomBytes(t, 100*512)
	advPut(t, server, "big", data)
	small := randomBytes(t, 700)
	advPut(t, server, "small", small)

	p := advDial(t, false)
	start := time.Now()
	p.send(server, appendRequest(nil, opRRQ, "big", "octet"))
	// A slow but live client: ACKs each block 60ms after it arrives, well
	// within the 300ms timeout.
	blocks := 0
	for range 200 {
		pkt, tid, ok := p.recv(advReply)
		if !ok {
			t.Fatalf("no packet after %d blocks", blocks)
		}
		if opcode(pkt) == opERROR {
			elapsed := time.Since(start)
			code, msg, _ := parseError(pkt)
			if code != ErrCodeUndefined {
				t.Errorf("slow client cut off with %s, want ERROR 0", advDescribe(pkt))
			}
			advCheckMessage(t, "max_transfer_duration ERROR", msg, "big")
			if elapsed < limit || elapsed > limit+time.Second {
				t.Errorf("slow client cut off after %v, want soon after %v", elapsed, limit)
			}
			if blocks >= 100 {
				t.Errorf("whole file delivered (%d blocks) despite the limit", blocks)
			}
			t.Logf("cut off with %s after %v and %d blocks", advDescribe(pkt), elapsed.Round(time.Millisecond), blocks)
			p.expectSilence("after the ERROR 0", advSilence)
			advGetOK(t, server, "small", small)
			return
		}
		blk, _, _ := parseBlockPacket(pkt)
		if opcode(pkt) != opDATA {
			t.Fatalf("got %s", advDescribe(pkt))
		}
		blocks++
		timer := time.NewTimer(60 * time.Millisecond) // the client's deliberate slowness, not synchronisation
		<-timer.C
		p.send(tid, appendAck(nil, blk))
	}
	t.Fatalf("slow client never cut off (%d blocks, %v)", blocks, time.Since(start))
}

// advMinTransferRate: a client that answers just inside the timeout but
// moves less than min_transfer_rate over a window is cut off.
func advMinTransferRate(t *testing.T) {
	const rateWindow = 2 * time.Second
	port := advStart(t, "timeout 300ms", "retries 3", "min_transfer_rate 4000 2s")
	server := loopback4(port)
	data := randomBytes(t, 400*512)
	advPut(t, server, "big", data)
	p := advDial(t, false)
	start := time.Now()
	p.send(server, appendRequest(nil, opRRQ, "big", "octet"))
	// ACK each block 250ms after it arrives, just inside the 300ms timeout:
	// about 2 KB/s, half the minimum rate.
	for blocks := 0; blocks < 400; blocks++ {
		pkt, tid, ok := p.recv(advReply)
		if !ok {
			t.Fatalf("no packet after %d blocks", blocks)
		}
		if opcode(pkt) == opERROR {
			elapsed := time.Since(start)
			if code, _, _ := parseError(pkt); code != ErrCodeUndefined || elapsed < rateWindow || elapsed > rateWindow+5*time.Second {
				t.Errorf("got %s after %v, want ERROR 0 soon after %v", advDescribe(pkt), elapsed, rateWindow)
			}
			t.Logf("client at ~2 KB/s cut off with %s after %v and %d blocks", advDescribe(pkt), elapsed.Round(time.Millisecond), blocks)
			advGetOK(t, server, "big", data)
			return
		}
		blk, _, _ := parseBlockPacket(pkt)
		timer := time.NewTimer(250 * time.Millisecond)
		<-timer.C
		p.send(tid, appendAck(nil, blk))
	}
	t.Fatal("a client below min_transfer_rate was never cut off")
}

// ---------------------------------------------------------------------------
// Amplification

func advAmplification(t *testing.T) {
	const (
		timeout = 50 * time.Millisecond
		retries = 3
	)
	port := advStart(t, "timeout 50ms", "retries 3")
	server := loopback4(port)
	data := randomBytes(t, 3000)
	advPut(t, server, "f", data)

	// silent sends req (repeating it at the offsets in dups) and never
	// answers; it returns the arrival times of every packet up to and
	// including the final ERROR, which must come from one transfer ID.
	silent := func(t *testing.T, what string, req []byte, wantOp uint16, wantBlock uint16, dups ...time.Duration) {
		p := advDial(t, false)
		start := time.Now()
		p.send(server, req)
		var times []time.Duration
		var tid netip.AddrPort
		sentDups := 0
		for range 50 {
			wait := advReply
			if sentDups < len(dups) {
				wait = max(dups[sentDups]-time.Since(start), time.Millisecond)
			}
			pkt, from, ok := p.recv(wait)
			if !ok {
				if sentDups < len(dups) {
					p.send(server, req)
					sentDups++
					continue
				}
				break // silence: the server gave up without an ERROR
			}
			if !tid.IsValid() {
				tid = from
			} else if from != tid {
				t.Fatalf("%s: a second transfer answered from %s (first %s): %s", what, from, tid, advDescribe(pkt))
			}
			times = append(times, time.Since(start))
			if opcode(pkt) == opERROR {
				t.Fatalf("%s: got %s; a peer that never answered must get no ERROR, only the retries", what, advDescribe(pkt))
			}
			blk, _, _ := parseBlockPacket(pkt)
			if wantOp == opOACK {
				blk = 0
			}
			if opcode(pkt) != wantOp || blk != wantBlock {
				t.Fatalf("%s: got %s, want %s %d", what, advDescribe(pkt), advOpName(wantOp), wantBlock)
			}
		}
		p.expectSilence(what+": after the last retry", 2*advSilence)
		// 1 + retries copies of the first packet, then nothing.
		if len(times) != retries+1 {
			t.Fatalf("%s: a silent requester received %d packets (%v), want %d copies of %s and nothing else", what, len(times), times, retries+1, advOpName(wantOp))
		}
		// Gaps double: at least 50, 100, 200, 400ms. (Only lower bounds:
		// a loaded machine can delay one packet and shorten the next gap,
		// but a server without backoff cannot meet the later bounds.)
		for i := 1; i < len(times); i++ {
			gap := times[i] - times[i-1]
			want := timeout << (i - 1)
			if gap < want*8/10 {
				t.Errorf("%s: gap %d is %v, want at least %v (doubling backoff); arrivals %v", what, i, gap, want, times)
			}
		}
		if total, want := times[len(times)-1]-times[0], timeout*(1<<retries-1); total < want*9/10 {
			t.Errorf("%s: last retry after %v, want about %v (50+100+200ms)", what, total, want)
		}
		t.Logf("%s: arrivals %v", what, times)
	}
	t.Run("silent reader", func(t *testing.T) {
		silent(t, "RRQ", appendRequest(nil, opRRQ, "f", "octet"), opDATA, 1)
	})
	t.Run("silent reader with options", func(t *testing.T) {
		silent(t, "RRQ blksize", appendRequest(nil, opRRQ, "f", "octet", option{"blksize", "1024"}), opOACK, 0)
	})
	t.Run("silent writer", func(t *testing.T) {
		silent(t, "WRQ", appendRequest(nil, opWRQ, "w", "octet"), opACK, 0)
		advGetCode(t, server, "w", ErrCodeFileNotFound)
	})
	// Repeated requests from the same address and port while the transfer
	// lives do not start a second one: the packet count is unchanged.
	t.Run("duplicate RRQ", func(t *testing.T) {
		silent(t, "RRQ x5 at once, again at 20, 70, 180, 400ms", appendRequest(nil, opRRQ, "f", "octet"), opDATA, 1,
			0, 0, 0, 0, 20*time.Millisecond, 70*time.Millisecond, 180*time.Millisecond, 400*time.Millisecond)
	})
	t.Run("duplicate WRQ", func(t *testing.T) {
		silent(t, "WRQ x3, again at 100ms", appendRequest(nil, opWRQ, "w2", "octet"), opACK, 0,
			0, 0, 100*time.Millisecond)
		advGetCode(t, server, "w2", ErrCodeFileNotFound)
	})
	// A duplicate request in the middle of a live transfer is ignored and
	// the transfer completes byte-for-byte.
	t.Run("duplicate RRQ mid-transfer", func(t *testing.T) {
		p := advDial(t, false)
		p.send(server, appendRequest(nil, opRRQ, "f", "octet"))
		first, tid := p.expectBlock("RRQ", opDATA, 1)
		p.send(server, appendRequest(nil, opRRQ, "f", "octet"))
		if got := advReadRest(t, p, tid, first); !bytes.Equal(got, data) {
			t.Errorf("got %d bytes, want %d", len(got), len(data))
		}
		p.expectSilence("after the read completed", 30*time.Millisecond)
	})
	advGetOK(t, server, "f", data)
}

// ---------------------------------------------------------------------------
// Malformed packets

// advMalformedCases are datagrams sent to the listening port and the error
// code each must draw; -1 means no reply.
func advMalformedCases() []struct {
	what string
	pkt  []byte
	code int
} {
	oversizedRRQ := appendRequest(nil, opRRQ, "f", "octet")
	oversizedRRQ = append(oversizedRRQ, bytes.Repeat([]byte("k\x00v\x00"), 1000)...) // 4000+ bytes
	hugeOptions := appendRequest(nil, opRRQ, "f", "octet")
	for i := 0; len(hugeOptions) < maxRequestLen+10; i++ {
		hugeOptions = append(hugeOptions, fmt.Sprintf("opt%d\x00%d\x00", i, i)...)
	}
	return []struct {
		what string
		pkt  []byte
		code int
	}{
		{"empty datagram", []byte{}, int(ErrCodeIllegalOp)},
		{"1 byte", []byte{0}, int(ErrCodeIllegalOp)},
		{"1 byte 0x01", []byte{1}, int(ErrCodeIllegalOp)},
		{"opcode RRQ only", []byte{0, 1}, int(ErrCodeIllegalOp)},
		{"opcode WRQ only", []byte{0, 2}, int(ErrCodeIllegalOp)},
		{"RRQ name without terminator", []byte("\x00\x01pxelinux.0"), int(ErrCodeIllegalOp)},
		{"RRQ without mode", []byte("\x00\x01f\x00"), int(ErrCodeIllegalOp)},
		{"RRQ mode without terminator", []byte("\x00\x01f\x00octet"), int(ErrCodeIllegalOp)},
		{"RRQ mode mail", appendRequest(nil, opRRQ, "f", "mail"), int(ErrCodeIllegalOp)},
		{"RRQ mode binary", appendRequest(nil, opRRQ, "f", "binary"), int(ErrCodeIllegalOp)},
		{"unknown opcode 9", []byte("\x00\x09f\x00octet\x00"), int(ErrCodeIllegalOp)},
		{"opcode 0", []byte("\x00\x00f\x00octet\x00"), int(ErrCodeIllegalOp)},
		{"opcode 0xffff", []byte("\xff\xfff\x00octet\x00"), int(ErrCodeIllegalOp)},
		{"opcode 0x0100 (byte-swapped RRQ)", []byte("\x01\x00f\x00octet\x00"), int(ErrCodeIllegalOp)},
		{"OACK", appendOACK(nil, []option{{"blksize", "512"}}), int(ErrCodeUnknownTID)},
		{"bare OACK opcode", []byte{0, 6}, int(ErrCodeUnknownTID)},
		{"DATA", advData(1, []byte("x")), int(ErrCodeUnknownTID)},
		{"DATA header only", []byte{0, 3}, int(ErrCodeUnknownTID)},
		{"ACK", appendAck(nil, 1), int(ErrCodeUnknownTID)},
		{"ACK 0", appendAck(nil, 0), int(ErrCodeUnknownTID)},
		{"truncated ACK", []byte{0, 4, 0}, int(ErrCodeUnknownTID)},
		{"ERROR", appendError(nil, ErrCodeFileNotFound, "nope"), -1},
		{"ERROR opcode only", []byte{0, 5}, -1},
		{"ERROR unterminated", []byte("\x00\x05\x00\x00abc"), -1},
		{"oversized 4000-byte RRQ", oversizedRRQ, int(ErrCodeIllegalOp)},
		{"RRQ with an option list over 2048 bytes", hugeOptions, int(ErrCodeIllegalOp)},
		{"oversized 4000-byte zero datagram", make([]byte, 4000), int(ErrCodeIllegalOp)},
		{"oversized 60000-byte datagram", bytes.Repeat([]byte{0, 9}, 30000), int(ErrCodeIllegalOp)},
	}
}

func advMalformed(t *testing.T) {
	port := advStart(t)
	server := loopback4(port)
	data := randomBytes(t, 1200)
	advPut(t, server, "f", data)
	p := advDial(t, false)
	for _, c := range advMalformedCases() {
		p.send(server, c.pkt)
		if c.code < 0 {
			p.expectSilence(c.what, advSilence)
		} else {
			p.expectError(c.what, server, ErrorCode(c.code))
			p.expectSilence(c.what+" (one reply only)", 20*time.Millisecond)
		}
		advGetOK(t, server, "f", data)
	}
	// A long but legal option list (unknown options are ignored) is served.
	many := appendRequest(nil, opRRQ, "f", "octet")
	for i := 0; len(many) < maxRequestLen-20; i++ {
		many = append(many, fmt.Sprintf("x%d\x00y\x00", i)...)
	}
	many = append(many, "blksize\x00700\x00"...)
	p.send(server, many)
	pkt, tid, _ := p.recv(advReply)
	if opts, err := parseOACK(pkt); err != nil || formatOptions(opts) != "blksize=700" {
		t.Errorf("RRQ with %d bytes of options: got %s, want OACK blksize=700", len(many), advDescribe(pkt))
	} else {
		p.send(tid, appendError(nil, ErrCodeUndefined, "done"))
	}
	// The same request over the IPv6 socket family.
	p6 := advDial(t, true)
	p6.send(loopback6(port), []byte{0, 9})
	p6.expectError("unknown opcode over IPv6", loopback6(port), ErrCodeIllegalOp)
	advGetOK(t, loopback6(port), "f", data)
}

func advFlood(t *testing.T) {
	const n = 5000
	port := advStart(t)
	server := loopback4(port)
	data := randomBytes(t, 1200)
	advPut(t, server, "f", data)
	cases := advMalformedCases()
	p := advDial(t, false)
	_ = p.conn.SetReadBuffer(4 << 20)

	type tally struct {
		replies, illegal, unknownTID, other int
	}
	done := make(chan tally, 1)
	stop := make(chan struct{})
	go func() {
		var tl tally
		buf := make([]byte, 70000)
		quietUntil := time.Time{}
		for {
			select {
			case <-stop:
				if quietUntil.IsZero() {
					quietUntil = time.Now().Add(500 * time.Millisecond)
				}
			default:
			}
			_ = p.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			nr, _, err := p.conn.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				done <- tl
				return
			}
			if err != nil {
				if !quietUntil.IsZero() && time.Now().After(quietUntil) {
					done <- tl
					return
				}
				continue
			}
			tl.replies++
			code, _, ok := parseError(buf[:nr])
			switch {
			case ok && code == ErrCodeIllegalOp:
				tl.illegal++
			case ok && code == ErrCodeUnknownTID:
				tl.unknownTID++
			default:
				tl.other++
			}
		}
	}()
	stopOnce := false
	defer func() {
		if !stopOnce {
			close(stop)
		}
	}()
	start := time.Now()
	eligible := 0
	for i := range n {
		c := cases[i%len(cases)]
		if c.code >= 0 {
			eligible++
		}
		if _, err := p.conn.WriteToUDPAddrPort(c.pkt, server); err != nil {
			t.Fatalf("flood packet %d: %v", i, err)
		}
	}
	sendTime := time.Since(start)
	stopOnce = true
	close(stop)
	var tl tally
	select {
	case tl = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("flood reader did not finish")
	}
	t.Logf("sent %d bad datagrams in %v; %d replies (%d ERROR 4, %d ERROR 5, %d other) for %d that merit one", n, sendTime.Round(time.Millisecond), tl.replies, tl.illegal, tl.unknownTID, tl.other, eligible)
	if tl.replies > eligible || tl.other > 0 {
		t.Errorf("flood drew %d replies (%d not ERROR 4/5) for %d datagrams that merit one", tl.replies, tl.other, eligible)
	}
	if tl.replies == 0 {
		t.Error("the server answered none of the flood")
	}
	advGetOK(t, server, "f", data)
	advGetOK(t, loopback6(port), "f", data)
}

// ---------------------------------------------------------------------------
// Abandoned transfers

func advAbandoned(t *testing.T) {
	const (
		reads  = 200
		writes = 50
	)
	port := advStart(t, "timeout 20ms", "retries 2", "max_transfers_per_host 1000")
	server := loopback4(port)
	big := randomBytes(t, 200_000)
	advPut(t, server, "big", big)
	advGetOK(t, server, "big", big)
	heapBase := advHeapInuse()
	baseG, baseFD := runtime.NumGoroutine(), advFDs()

	// Each abandoned client waits for the server's first packet (so the
	// transfer certainly started), then never answers again. The sockets
	// stay open until every client has been started so no two clients share
	// a port (a reused port would receive an earlier transfer's packets).
	buf := make([]byte, 70000)
	var clients []*net.UDPConn
	closeClients := func() {
		for _, c := range clients {
			c.Close()
		}
		clients = nil
	}
	defer closeClients()
	dial := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		return c
	}
	first := func(c *net.UDPConn, what string) ([]byte, netip.AddrPort) {
		_ = c.SetReadDeadline(time.Now().Add(advReply))
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%s: no answer: %v", what, err)
		}
		return buf[:n], from
	}
	for i := range reads {
		c := dial()
		opts := []option{{"blksize", "65464"}}
		if i%2 == 1 {
			opts = nil
		}
		_, _ = c.WriteToUDPAddrPort(appendRequest(nil, opRRQ, "big", "octet", opts...), server)
		pkt, _ := first(c, fmt.Sprintf("abandoned read %d", i))
		if op := opcode(pkt); op != opOACK && op != opDATA {
			t.Fatalf("abandoned read %d: got %s", i, advDescribe(pkt))
		}
	}
	block := randomBytes(t, 8192)
	for i := range writes {
		c := dial()
		_, _ = c.WriteToUDPAddrPort(appendRequest(nil, opWRQ, fmt.Sprintf("aw-%d", i), "octet", option{"blksize", "8192"}), server)
		pkt, tid := first(c, fmt.Sprintf("abandoned write %d", i))
		if opcode(pkt) != opOACK {
			t.Fatalf("abandoned write %d: got %s", i, advDescribe(pkt))
		}
		for blk := uint16(1); blk <= uint16(1+i%2); blk++ {
			_, _ = c.WriteToUDPAddrPort(advData(blk, block), tid)
			pkt, _ = first(c, fmt.Sprintf("abandoned write %d block %d", i, blk))
			if b, _, _ := parseBlockPacket(pkt); opcode(pkt) != opACK || b != blk {
				t.Fatalf("abandoned write %d: got %s, want ACK %d", i, advDescribe(pkt), blk)
			}
		}
	}
	closeClients()
	advAwaitBaseline(t, "after 200 abandoned reads and 50 abandoned writes", baseG, baseFD, heapBase, 4<<20, 10*time.Second)
	// The baseline allows a few goroutines of slack, so on a loaded
	// machine the last abandoned transfers may still be running out their
	// retries; give them a bounded while to unregister.
	for deadline := time.Now().Add(5 * time.Second); advActiveOn(port) != 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond) // polling a bounded deadline
	}
	if n := advActiveOn(port); n != 0 {
		t.Errorf("%d transfers still registered on the listener", n)
	}
	// Nothing half-written became visible.
	for i := range writes {
		p := advDial(t, false)
		name := fmt.Sprintf("aw-%d", i)
		p.send(server, appendRequest(nil, opRRQ, name, "octet"))
		p.expectError("abandoned upload "+name, server, ErrCodeFileNotFound, name)
	}
	advGetOK(t, server, "big", big)
}

// advActiveOn counts the transfers registered on the listener of port.
func advActiveOn(port uint16) int {
	n := 0
	suffix := ":" + strconv.Itoa(int(port))
	for _, at := range ActiveTransfers() {
		if strings.HasSuffix(at.Listen, suffix) {
			n++
		}
	}
	return n
}

// advSinglePort repeats the amplification, duplicate-request, stranger and
// abandonment cases in single-port mode, where every transfer shares the
// listening socket and is told apart by the client's address.
func advSinglePort(t *testing.T) {
	port := advStart(t, "single_port", "timeout 50ms", "retries 3", "max_transfers_per_host 1000")
	server := loopback4(port)
	data := randomBytes(t, 3000)
	if err := (&testClient{server: server}).put("f", data); err != nil {
		t.Fatal(err)
	}

	// An upload with blocks larger than the listener's 2049-byte request
	// buffer (listener.go serve: make([]byte, maxRequestLen+1)) must arrive
	// whole or fail; it must never be committed truncated.
	t.Run("large-block upload", func(t *testing.T) {
		for _, size := range []int{3000, 20000} {
			name := fmt.Sprintf("large-%d", size)
			want := randomBytes(t, size)
			p := advDial(t, false)
			p.send(server, appendRequest(nil, opWRQ, name, "octet", option{"blksize", "8192"}))
			pkt, _, ok := p.recv(advReply)
			if opts, err := parseOACK(pkt); !ok || err != nil || formatOptions(opts) != "blksize=8192" {
				t.Fatalf("WRQ blksize 8192: got %s", advDescribe(pkt))
			}
			first := want[:min(size, 8192)]
			p.send(server, advData(1, first))
			reply, _, _ := p.recv(advReply)
			got, err := (&testClient{server: server}).get(name)
			if err == nil && !bytes.Equal(got, want) {
				t.Errorf("single-port WRQ blksize 8192: sent DATA 1 with %d of %d bytes, server answered %s, and %q is now stored with %d bytes: the listener reads every datagram into a %d-byte buffer, so the block was cut to %d bytes, taken as the final short block, and the truncated file committed",
					len(first), size, advDescribe(reply), name, len(got), maxRequestLen+1, maxRequestLen+1-headerLen)
			}
			if size > 8192 {
				p.send(server, appendError(nil, ErrCodeUndefined, "bye"))
			}
		}
	})

	t.Run("silent reader with duplicate requests", func(t *testing.T) {
		p := advDial(t, false)
		for range 3 {
			p.send(server, appendRequest(nil, opRRQ, "f", "octet"))
		}
		var got []string
		for range 20 {
			pkt, from, ok := p.recv(advReply)
			if !ok {
				break // the server gave up silently
			}
			if from != server {
				t.Errorf("single-port reply from %s, want the listening address %s", from, server)
			}
			got = append(got, advDescribe(pkt))
			if opcode(pkt) == opERROR {
				break
			}
		}
		want := []string{"DATA 1 (512 bytes of payload)", "DATA 1 (512 bytes of payload)", "DATA 1 (512 bytes of payload)", "DATA 1 (512 bytes of payload)"}
		if strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Errorf("silent single-port reader received %v, want %v", got, want)
		}
		p.expectSilence("after the last retry", 2*advSilence)
	})
	t.Run("stranger and malformed packets during a transfer", func(t *testing.T) {
		p, stranger := advDial(t, false), advDial(t, false)
		p.send(server, appendRequest(nil, opRRQ, "f", "octet"))
		first, tid := p.expectBlock("RRQ", opDATA, 1)
		if tid != server {
			t.Fatalf("single-port transfer answered from %s", tid)
		}
		stranger.send(server, appendAck(nil, 1))
		stranger.expectError("stranger's ACK on the shared port", server, ErrCodeUnknownTID)
		// The client's own junk is fed to its transfer, which ignores it.
		p.send(server, []byte{0, 9, 1, 2})
		p.send(server, []byte{0})
		if got := advReadRest(t, p, tid, first); !bytes.Equal(got, data) {
			t.Errorf("got %d bytes, want %d", len(got), len(data))
		}
	})
	t.Run("abandoned", func(t *testing.T) {
		baseG, baseFD := runtime.NumGoroutine(), advFDs()
		var peers []*net.UDPConn
		buf := make([]byte, 2000)
		for i := range 100 {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			peers = append(peers, c)
			op := opRRQ
			if i%4 == 3 {
				op = opWRQ
			}
			_, _ = c.WriteToUDPAddrPort(appendRequest(nil, op, fmt.Sprintf("sp-%d", i), "octet"), server)
			_ = c.SetReadDeadline(time.Now().Add(advReply))
			if op == opRRQ {
				_, _ = c.WriteToUDPAddrPort(appendRequest(nil, op, "f", "octet"), server)
			}
			if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
				t.Fatalf("client %d: no answer", i)
			}
		}
		for _, c := range peers {
			c.Close()
		}
		advAwaitBaseline(t, "after 100 abandoned single-port transfers", baseG, baseFD, 0, 0, 10*time.Second)
		if n := advActiveOn(port); n != 0 {
			t.Errorf("%d single-port transfers still registered", n)
		}
		for i := 3; i < 100; i += 4 {
			advGetCode(t, server, fmt.Sprintf("sp-%d", i), ErrCodeFileNotFound)
		}
	})
	advGetOK(t, server, "f", data)
}

// ---------------------------------------------------------------------------
// Aborted writes and concurrent readers

func advAbortedWrites(t *testing.T) {
	port := advStart(t, "timeout 30ms", "retries 2")
	server := loopback4(port)
	v1 := randomBytes(t, 2000)

	t.Run("client ERROR mid-way", func(t *testing.T) {
		for _, name := range []string{"doc-err", "new-err"} {
			if name == "doc-err" {
				advPut(t, server, name, v1)
			}
			p := advDial(t, false)
			p.send(server, appendRequest(nil, opWRQ, name, "octet"))
			_, tid := p.expectBlock("WRQ", opACK, 0)
			for blk := uint16(1); blk <= 2; blk++ {
				p.send(tid, advData(blk, randomBytes(t, 512)))
				p.expectBlock("DATA", opACK, blk)
			}
			p.send(tid, appendError(nil, ErrCodeUndefined, "client aborted"))
			p.expectSilence("client ERROR mid-upload (an ERROR is never answered)", advSilence)
		}
		advGetOK(t, server, "doc-err", v1)
		advGetCode(t, server, "new-err", ErrCodeFileNotFound)
	})
	t.Run("client timeout mid-way", func(t *testing.T) {
		advPut(t, server, "doc-to", v1)
		p := advDial(t, false)
		p.send(server, appendRequest(nil, opWRQ, "doc-to", "octet"))
		_, tid := p.expectBlock("WRQ", opACK, 0)
		p.send(tid, advData(1, randomBytes(t, 512)))
		p.expectBlock("DATA 1", opACK, 1)
		// The client vanishes: ACK 1 is repeated `retries` times, then the
		// server gives up silently and the upload is discarded.
		p.expectBlock("retransmitted ACK", opACK, 1)
		p.expectBlock("retransmitted ACK", opACK, 1)
		p.expectSilence("after the last retry", advSilence)
		advGetOK(t, server, "doc-to", v1)
	})
	t.Run("oversized block mid-way", func(t *testing.T) {
		advPut(t, server, "doc-big", v1)
		p := advDial(t, false)
		p.send(server, appendRequest(nil, opWRQ, "doc-big", "octet"))
		_, tid := p.expectBlock("WRQ", opACK, 0)
		p.send(tid, advData(1, randomBytes(t, 512)))
		p.expectBlock("DATA 1", opACK, 1)
		p.send(tid, advData(2, randomBytes(t, 600)))
		p.expectError("600-byte block in a 512-byte transfer", tid, ErrCodeIllegalOp, "doc-big")
		advGetOK(t, server, "doc-big", v1)
	})
	t.Run("stranger injects DATA", func(t *testing.T) {
		advPut(t, server, "doc-tid", v1)
		p, stranger := advDial(t, false), advDial(t, false)
		p.send(server, appendRequest(nil, opWRQ, "doc-tid", "octet"))
		_, tid := p.expectBlock("WRQ", opACK, 0)
		stranger.send(tid, advData(1, []byte("injected")))
		stranger.expectError("stranger's DATA", tid, ErrCodeUnknownTID)
		v2 := randomBytes(t, 700)
		p.send(tid, advData(1, v2[:512]))
		p.expectBlock("DATA 1", opACK, 1)
		p.send(tid, advData(2, v2[512:]))
		p.expectBlock("DATA 2", opACK, 2)
		advGetOK(t, server, "doc-tid", v2)
	})
}

// advAbortedWriteByReload: an upload cut off when a reload's grace period
// ends leaves the previous version.
func advAbortedWriteByReload(t *testing.T) {
	port := freePort(t)
	cfg := func(timeout string) string {
		return strings.Replace(advCaddyfile(lines(fmt.Sprintf("listen :%d", port), "timeout "+timeout)), "grace_period 200ms", "grace_period 150ms", 1)
	}
	startCaddy(t, cfg("1s"))
	server := loopback4(port)
	v1 := randomBytes(t, 2000)
	advPut(t, server, "doc", v1)
	p := advDial(t, false)
	p.send(server, appendRequest(nil, opWRQ, "doc", "octet"))
	_, tid := p.expectBlock("WRQ", opACK, 0)
	p.send(tid, advData(1, randomBytes(t, 512)))
	p.expectBlock("DATA 1", opACK, 1)
	start := time.Now()
	if err := reloadCaddy(t, cfg("900ms")); err != nil {
		t.Fatalf("reload: %v", err)
	}
	p.expectError("upload when the grace period ends", tid, ErrCodeUndefined, "doc")
	if d := time.Since(start); d > time.Second {
		t.Errorf("ERROR 0 came %v after the reload, want about the 150ms grace period", d)
	}
	p.send(tid, advData(2, randomBytes(t, 100)))
	p.expectSilence("DATA to the ended transfer", advSilence)
	advGetOK(t, server, "doc", v1)
}

// advAbortedWriteByStop: caddy.Stop() mid-upload ends the transfer with
// ERROR 0 after the grace period and commits nothing.
func advAbortedWriteByStop(t *testing.T) {
	port := freePort(t)
	startCaddy(t, advCaddyfile(lines(fmt.Sprintf("listen :%d", port), "timeout 1s")))
	server := loopback4(port)
	v1 := randomBytes(t, 2000)
	advPut(t, server, "doc", v1)
	p := advDial(t, false)
	p.send(server, appendRequest(nil, opWRQ, "doc", "octet"))
	_, tid := p.expectBlock("WRQ", opACK, 0)
	p.send(tid, advData(1, randomBytes(t, 512)))
	p.expectBlock("DATA 1", opACK, 1)
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	p.expectError("upload after caddy.Stop() and the grace period", tid, ErrCodeUndefined, "doc")
	p.send(tid, advData(2, randomBytes(t, 100)))
	p.expectSilence("DATA to the stopped transfer", advSilence)
	// The listening socket is closed: requests go unanswered.
	p.send(server, appendRequest(nil, opRRQ, "doc", "octet"))
	p.expectSilence("RRQ to a stopped server", advSilence)
	// A memory store is freed with the last config using it, so a restart
	// starts empty; above all, no truncated "doc" appears.
	startCaddy(t, advCaddyfile(lines(fmt.Sprintf("listen :%d", port))))
	advGetCode(t, server, "doc", ErrCodeFileNotFound)
	advPut(t, server, "doc", v1)
	advGetOK(t, server, "doc", v1)
}

// advReaderDuringOverwrite: a reader that started before an overwrite gets
// the old bytes in full.
func advReaderDuringOverwrite(t *testing.T) {
	port := advStart(t, "timeout 2s")
	server := loopback4(port)
	old, replacement := randomBytes(t, 10*512+77), randomBytes(t, 3*512+5)
	advPut(t, server, "img", old)

	paused, release := make(chan struct{}), make(chan struct{})
	reader := &testClient{server: server, dropIn: func(op, blk uint16, n int) bool {
		if op == opDATA && blk == 3 && n == 0 {
			close(paused)
			<-release
		}
		return false
	}}
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		b, err := reader.get("img")
		done <- result{b, err}
	}()
	select {
	case <-paused:
	case r := <-done:
		t.Fatalf("reader finished before pausing: %v", r.err)
	case <-time.After(5 * time.Second):
		t.Fatal("reader never reached block 3")
	}
	advPut(t, server, "img", replacement)
	advGetOK(t, server, "img", replacement)
	close(release)
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("paused reader never finished")
	}
	if r.err != nil {
		t.Fatalf("paused reader: %v", r.err)
	}
	if !bytes.Equal(r.data, old) {
		t.Errorf("reader that started before the overwrite got %d bytes, want the old %d bytes (first difference at %d)", len(r.data), len(old), advFirstDiff(r.data, old))
	}
	advGetOK(t, server, "img", replacement)
}

func advFirstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// advPut uploads a file with the test client (large blocks and a window,
// so seeding is quick).
func advPut(t testing.TB, server netip.AddrPort, name string, data []byte) {
	t.Helper()
	c := &testClient{server: server, options: []option{{"blksize", "8192"}, {"windowsize", "8"}}}
	if err := c.put(name, data); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}
