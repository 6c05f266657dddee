package tftp

import (
	"fmt"
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
