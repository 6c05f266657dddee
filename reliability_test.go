package tftp

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Tests of the promises in the README's reliability section: nothing a
// client or a neighbour does leaves a device unbootable.

// TestReliabilityLongNames checks that names over the length limit are
// refused like every other name that cannot be served: ERROR 2 when they
// climb above the root, ERROR 0 "file name too long" otherwise; never
// ERROR 4, which clients report as a protocol fault of the server.
func TestReliabilityLongNames(t *testing.T) {
	port := advStart(t)
	server := loopback4(port)
	nested := strings.Repeat("folder/", 200) + "file"
	cases := []struct {
		what string
		op   uint16
		name string
		code ErrorCode
	}{
		{"1500 bytes of ../", opRRQ, strings.Repeat("../", 500) + "etc/passwd", ErrCodeAccessViolated},
		{"1500 bytes of ..\\", opRRQ, strings.Repeat(`..\`, 500) + "x", ErrCodeAccessViolated},
		{"a name past the request limit made of ../", opRRQ, strings.Repeat("../", 1000), ErrCodeAccessViolated},
		{"a write of 1500 bytes of ../", opWRQ, strings.Repeat("../", 500) + "evil", ErrCodeAccessViolated},
		{"deeply nested folders", opRRQ, nested, ErrCodeUndefined},
		{"deeply nested folders (write)", opWRQ, nested, ErrCodeUndefined},
		{"a name past the request limit", opRRQ, strings.Repeat("d/", 1500), ErrCodeUndefined},
		{"nested folders climbing out", opRRQ, strings.Repeat("a/", 300) + strings.Repeat("../", 301), ErrCodeAccessViolated},
	}
	for _, c := range cases {
		p := advDial(t, false)
		what := fmt.Sprintf("%s %s (%d bytes)", advOpName(c.op), c.what, len(c.name))
		p.send(server, appendRequest(nil, c.op, c.name, "octet"))
		pkt, _, ok := p.recv(advReply)
		if !ok {
			t.Errorf("%s: no answer", what)
			continue
		}
		code, msg, _ := parseError(pkt)
		if opcode(pkt) != opERROR || code != c.code {
			t.Errorf("%s: got %s, want ERROR %d", what, advDescribe(pkt), c.code)
			continue
		}
		if c.code == ErrCodeUndefined && !strings.Contains(msg, "too long") {
			t.Errorf("%s: ERROR 0 %q does not say the name is too long", what, msg)
		}
	}
}

// TestReliabilityDeclaredSize checks that an upload whose length differs
// from the tsize it declared is refused with an ERROR instead of a final
// ACK, and that the previous version of the file stays in place.
func TestReliabilityDeclaredSize(t *testing.T) {
	port := advStart(t)
	server := loopback4(port)
	old := randomBytes(t, 2000)
	advPut(t, server, "boot.img", old)
	body := randomBytes(t, 3000)
	cases := []struct {
		what     string
		declared int
		send     int
	}{
		{"shorter than declared", 5000, 3000},
		{"stopping at a block boundary short of the declared size", 2048, 1024},
		{"longer than declared", 1000, 3000},
	}
	for _, c := range cases {
		p := advDial(t, false)
		p.send(server, appendRequest(nil, opWRQ, "boot.img", "octet", option{"tsize", strconv.Itoa(c.declared)}))
		pkt, tid, ok := p.recv(advReply)
		if !ok || opcode(pkt) != opOACK {
			t.Fatalf("%s: request answered with %s, want OACK", c.what, advDescribe(pkt))
		}
		var last []byte
		for off, blk := 0, uint16(1); ; blk++ {
			end := min(off+defaultBlockSize, c.send)
			p.send(tid, advData(blk, body[off:end]))
			pkt, _, ok = p.recv(advReply)
			if !ok {
				t.Fatalf("%s: no answer to DATA %d", c.what, blk)
			}
			last = pkt
			if opcode(pkt) != opACK || end-off < defaultBlockSize {
				break
			}
			off = end
		}
		if code, msg, _ := parseError(last); opcode(last) != opERROR || code != ErrCodeUndefined || !strings.Contains(msg, "tsize") {
			t.Errorf("%s (declared %d, sent %d): last answer %s, want ERROR 0 naming tsize", c.what, c.declared, c.send, advDescribe(last))
		}
		advGetOK(t, server, "boot.img", old)
	}
	// An upload of the declared size is stored.
	c := &testClient{server: server, options: []option{{"tsize", strconv.Itoa(len(body))}}}
	if err := c.put("boot.img", body); err != nil {
		t.Fatalf("upload of the declared size: %v", err)
	}
	got, err := (&testClient{server: server}).get("boot.img")
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("after an upload of the declared size: got %d bytes, err %v", len(got), err)
	}
}

// relDropped returns caddy_tftp_requests_dropped_total summed over servers
// for one reason.
func relDropped(t testing.TB, reason string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(metricRequestsDropped); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// TestReliabilityEviction reproduces a device that crashed and rebooted in
// a loop: 200 reads and 50 writes abandoned mid-transfer from one address,
// with the default limits (and a 200 ms timeout to keep the test short:
// the abandoned transfers would hold their slots for 9.4 s). The next fresh reads from that address must be
// served within a few of the client's retries (each evicting the host's
// longest-stalled transfer), while a slow transfer of the same host that
// keeps making progress is never evicted. A request over the limit when
// nothing of the host is stalled stays unanswered and is counted as
// limit_host.
func TestReliabilityEviction(t *testing.T) {
	port := advStart(t, "timeout 200ms")
	server := loopback4(port)
	data := randomBytes(t, 1500)
	advPut(t, server, "kernel", data)
	slowData := randomBytes(t, 30*defaultBlockSize+7)
	advPut(t, server, "slow", slowData)

	// A slow but live reader: it ACKs each block 50 ms after it arrives,
	// well within the server's 200 ms timeout, so it never stalls; it
	// holds its slot for about 1.5 s, longer than the fresh reads below
	// may wait.
	slow := advDial(t, false)
	slow.send(server, appendRequest(nil, opRRQ, "slow", "octet"))
	first, slowTID := slow.expectBlock("slow reader", opDATA, 1)
	slowDone := make(chan []byte, 1)
	go func() {
		var got []byte
		pkt := first
		for range 100 {
			blk, payload, _ := parseBlockPacket(pkt)
			if opcode(pkt) != opDATA {
				break
			}
			if int(blk) == len(got)/defaultBlockSize+1 {
				got = append(got, payload...)
			}
			time.Sleep(50 * time.Millisecond) // the client's pace, not synchronisation
			_, _ = slow.conn.WriteToUDPAddrPort(appendAck(nil, blk), slowTID)
			if len(payload) < defaultBlockSize {
				break
			}
			var ok bool
			if pkt, _, ok = slow.recv(2 * time.Second); !ok {
				break
			}
		}
		slowDone <- got
	}()

	// 200 reads and 50 writes abandoned after the server's first packet
	// (or never answered, once the host is at its limit).
	var dead []*net.UDPConn
	defer func() {
		for _, c := range dead {
			c.Close()
		}
	}()
	for i := range 250 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		dead = append(dead, c)
		req := appendRequest(nil, opRRQ, "kernel", "octet")
		if i >= 200 {
			req = appendRequest(nil, opWRQ, fmt.Sprintf("up-%d", i), "octet")
		}
		if _, err := c.WriteToUDPAddrPort(req, server); err != nil {
			t.Fatal(err)
		}
	}
	// The host is now at its limit and nothing of it has stalled yet: a
	// request is left unanswered and counted as limit_host.
	before := relDropped(t, "limit_host")
	p := advDial(t, false)
	p.send(server, appendRequest(nil, opRRQ, "kernel", "octet"))
	p.expectSilence("a request while the host is at its limit and none of its transfers is stalled", advSilence)
	if got := relDropped(t, "limit_host") - before; got < 1 {
		t.Errorf("requests_dropped_total{reason=limit_host} grew by %v, want at least 1", got)
	}

	// Five fresh reads, each retrying every 100 ms as a client would,
	// must each be served within 0.6 s: the abandoned transfers stall after
	// the first 200 ms timeout and would otherwise hold the host's slots
	// until their retries run out.
	start := time.Now()
	for i := range 5 {
		p := advDial(t, false)
		var served bool
		for try := 0; try < 6 && !served; try++ {
			p.send(server, appendRequest(nil, opRRQ, "kernel", "octet"))
			pkt, tid, ok := p.recv(100 * time.Millisecond)
			if !ok {
				continue
			}
			if blk, _, _ := parseBlockPacket(pkt); opcode(pkt) != opDATA || blk != 1 {
				t.Fatalf("fresh read %d answered with %s", i, advDescribe(pkt))
			}
			if got := advReadRest(t, p, tid, pkt); !bytes.Equal(got, data) {
				t.Fatalf("fresh read %d: got %d bytes, want %d", i, len(got), len(data))
			}
			served = true
		}
		if !served {
			t.Fatalf("fresh read %d from a host whose abandoned transfers fill max_transfers_per_host got no answer within 0.6 s", i)
		}
	}
	t.Logf("5 fresh reads served %v after the abandoned ones", time.Since(start).Round(time.Millisecond))
	select {
	case got := <-slowDone:
		if !bytes.Equal(got, slowData) {
			t.Errorf("the slow reader that kept making progress got %d of %d bytes: it was evicted", len(got), len(slowData))
		}
	case <-time.After(15 * time.Second):
		t.Error("the slow reader did not finish")
	}
}

// TestReliabilityDuplicateDataAcks checks the upload side of the
// Sorcerer's Apprentice: five back-to-back copies of a DATA block get at
// most two ACKs within 0.8 s, and a copy sent later (a client whose ACK
// was really lost, retransmitting) still gets its ACK.
func TestReliabilityDuplicateDataAcks(t *testing.T) {
	port := advStart(t)
	server := loopback4(port)
	p := advDial(t, false)
	p.send(server, appendRequest(nil, opWRQ, "dup", "octet"))
	_, tid := p.expectBlock("WRQ", opACK, 0)
	block := randomBytes(t, defaultBlockSize)
	for range 5 {
		p.send(tid, advData(1, block))
	}
	acks := 0
	for end := time.Now().Add(800 * time.Millisecond); time.Now().Before(end); {
		pkt, _, ok := p.recv(time.Until(end))
		if !ok {
			break
		}
		if blk, _, _ := parseBlockPacket(pkt); opcode(pkt) != opACK || blk != 1 {
			t.Fatalf("got %s, want ACK 1", advDescribe(pkt))
		}
		acks++
	}
	if acks == 0 || acks > 2 {
		t.Errorf("five back-to-back copies of DATA 1 got %d ACKs within 0.8 s, want 1 or 2", acks)
	}
	// The client's own retransmission, after its timeout, is answered.
	p.send(tid, advData(1, block))
	p.expectBlock("DATA 1 retransmitted after 0.8 s", opACK, 1)
	p.send(tid, advData(2, block[:10]))
	p.expectBlock("last DATA", opACK, 2)
	advGetOK(t, server, "dup", append(bytes.Clone(block), block[:10]...))
}

// TestReliabilityDally checks the end of an upload, with and without
// single_port: once the final ACK is sent the upload holds no transfer
// slot (a new request of a host at max_transfers_per_host 1 is served at
// once), a retransmission of the last DATA block later than the old one
// timeout (200 ms here) still gets its ACK (five copies get one), and after
// the dally nothing answers it. The dally is shortened to 700 ms here; the
// default, 30 s, is checked to cover atftp's retransmissions at 5, 10 and
// 15 s.
func TestReliabilityDally(t *testing.T) {
	if dallyDuration < 15*time.Second {
		t.Errorf("default dally %v: a client retransmitting its last DATA 12 s or 15 s after the end would not get its ACK", dallyDuration)
	}
	saved := dallyDuration
	dallyDuration = 700 * time.Millisecond
	t.Cleanup(func() { dallyDuration = saved })
	for _, singlePort := range []bool{false, true} {
		t.Run(fmt.Sprintf("single_port=%v", singlePort), func(t *testing.T) {
			extra := []string{"max_transfers_per_host 1", "timeout 200ms"}
			if singlePort {
				extra = append(extra, "single_port")
			}
			port := advStart(t, extra...)
			server := loopback4(port)
			p := advDial(t, false)
			p.send(server, appendRequest(nil, opWRQ, "up", "octet"))
			_, tid := p.expectBlock("WRQ", opACK, 0)
			body := randomBytes(t, defaultBlockSize+20)
			p.send(tid, advData(1, body[:defaultBlockSize]))
			p.expectBlock("DATA 1", opACK, 1)
			last := advData(2, body[defaultBlockSize:])
			p.send(tid, last)
			p.expectBlock("last DATA", opACK, 2)
			end := time.Now()

			// Not counted against the limits while dallying.
			for deadline := time.Now().Add(150 * time.Millisecond); advActiveOn(port) != 0; {
				if time.Now().After(deadline) {
					t.Fatalf("%d transfers still registered after the final ACK", advActiveOn(port))
				}
				time.Sleep(10 * time.Millisecond) // polling a bounded deadline
			}
			advGetOK(t, server, "up", body)

			// The final ACK was lost; the client retransmits, later than
			// one timeout (200 ms) after the end.
			time.Sleep(time.Until(end.Add(400 * time.Millisecond))) // the client's retransmission time
			for range 5 {
				p.send(tid, last)
			}
			p.expectBlock("last DATA retransmitted 400 ms after the end", opACK, 2)
			p.expectSilence("four more copies of the last DATA", 150*time.Millisecond)

			// After the dally, the end of the upload is forgotten.
			time.Sleep(time.Until(end.Add(dallyDuration + 200*time.Millisecond))) // past the dally
			p.send(tid, last)
			if pkt, _, ok := p.recv(advSilence); ok && opcode(pkt) == opACK {
				t.Errorf("last DATA after the dally got %s", advDescribe(pkt))
			}
		})
	}
}

// TestReliabilityRetransmitSchedule measures the lock-step backoff from
// outside, with timeout 30ms: to a silent client the first DATA is sent
// again after 1, 2, 4, 8 and 16 timeouts, and the transfer ends silently
// 16 timeouts after the last copy (47 timeouts in all). The README states
// the same schedule for the default timeout of 1 s.
func TestReliabilityRetransmitSchedule(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(readme)), " ")
	for _, want := range []string{"after 1, 2, 4, 8 and 16 s", "at 1, 3, 7, 15 and 31 s", "ends at 47 s"} {
		if !strings.Contains(text, want) {
			t.Errorf("README does not state the retransmission schedule %q", want)
		}
	}
	const unit = 30 * time.Millisecond
	port := advStart(t, "timeout 30ms", "retries 5")
	server := loopback4(port)
	advPut(t, server, "f", randomBytes(t, 2000))
	p := advDial(t, false)
	start := time.Now()
	p.send(server, appendRequest(nil, opRRQ, "f", "octet"))
	var at []time.Duration
	for len(at) < 6 {
		pkt, _, ok := p.recv(40 * unit)
		if !ok {
			break
		}
		if blk, _, _ := parseBlockPacket(pkt); opcode(pkt) != opDATA || blk != 1 {
			t.Fatalf("got %s, want DATA 1", advDescribe(pkt))
		}
		at = append(at, time.Since(start))
	}
	want := []int{1, 2, 4, 8, 16}
	if len(at) != len(want)+1 {
		t.Fatalf("DATA 1 sent %d times at %v, want %d times", len(at), at, len(want)+1)
	}
	lastCopy := at[len(at)-1]
	for i, w := range want {
		gap := at[i+1] - at[i]
		if lo, hi := time.Duration(w)*unit*9/10, time.Duration(w)*unit+150*time.Millisecond; gap < lo || gap > hi {
			t.Errorf("wait before copy %d: %v, want about %v (sent at %v)", i+2, gap, time.Duration(w)*unit, at)
		}
	}
	for deadline := time.Now().Add(40 * unit); advActiveOn(port) != 0; {
		if time.Now().After(deadline) {
			t.Fatal("transfer still registered 40 timeouts after its last copy")
		}
		time.Sleep(5 * time.Millisecond) // polling a bounded deadline
	}
	ended := time.Since(start) - lastCopy
	if lo, hi := 16*unit*9/10, 16*unit+200*time.Millisecond; ended < lo || ended > hi {
		t.Errorf("transfer ended %v after its last copy, want about %v", ended, 16*unit)
	}
	p.expectSilence("after the transfer was abandoned", advSilence)
}
