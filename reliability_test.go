package tftp

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
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
