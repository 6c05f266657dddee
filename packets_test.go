package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func TestParseRequestRoundTrip(t *testing.T) {
	opts := []option{{"blksize", "1468"}, {"tsize", "0"}, {"windowsize", "8"}}
	for _, op := range []uint16{opRRQ, opWRQ} {
		pkt := appendRequest(nil, op, "pxelinux.cfg/default", "octet", opts...)
		req, err := parseRequest(pkt)
		if err != nil {
			t.Fatalf("op %d: %v", op, err)
		}
		if req.op != op || req.filename != "pxelinux.cfg/default" || req.mode != "octet" {
			t.Fatalf("op %d: parsed %+v", op, req)
		}
		if len(req.options) != len(opts) {
			t.Fatalf("options: got %v, want %v", req.options, opts)
		}
		for i := range opts {
			if req.options[i] != opts[i] {
				t.Errorf("option %d: got %v, want %v", i, req.options[i], opts[i])
			}
		}
	}
}

func TestParseRequestNormalisesCase(t *testing.T) {
	pkt := appendRequest(nil, opRRQ, "File.BIN", "NetASCII", option{"BlkSize", "1024"}, option{"TSIZE", "0"})
	req, err := parseRequest(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if req.filename != "File.BIN" {
		t.Errorf("file name case must be kept, got %q", req.filename)
	}
	if req.mode != "netascii" {
		t.Errorf("mode %q, want netascii", req.mode)
	}
	if v, ok := req.option("blksize"); !ok || v != "1024" {
		t.Errorf("blksize lookup: %q %v", v, ok)
	}
	if _, ok := req.option("tsize"); !ok {
		t.Error("tsize lookup failed")
	}
}

func TestParseRequestMalformed(t *testing.T) {
	long := strings.Repeat("a", maxNameLen+1)
	cases := map[string]struct {
		pkt  []byte
		want error
	}{
		"empty":            {nil, errShortPacket},
		"one byte":         {[]byte{0}, errShortPacket},
		"opcode only":      {[]byte{0, 1}, errNotTerminated},
		"data opcode":      {[]byte{0, 3, 0, 1}, errBadOpcode},
		"unknown opcode":   {[]byte{0, 9, 'a', 0, 'o', 0}, errBadOpcode},
		"no name nul":      {[]byte{0, 1, 'a', 'b'}, errNotTerminated},
		"empty name":       {[]byte{0, 1, 0, 'o', 'c', 't', 'e', 't', 0}, errEmptyName},
		"no mode":          {[]byte{0, 1, 'a', 0}, errNotTerminated},
		"mode without nul": {[]byte{0, 1, 'a', 0, 'o', 'c'}, errNotTerminated},
		"name too long":    {appendRequest(nil, opRRQ, long, "octet"), errNameTooLong},
		"too long":         {append(appendRequest(nil, opRRQ, "a", "octet"), make([]byte, maxRequestLen)...), errRequestLong},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parseRequest(c.pkt)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestParseRequestToleratesDanglingOption(t *testing.T) {
	// An option name without a value (or a trailing NUL pad) is ignored.
	pkt := append(appendRequest(nil, opRRQ, "f", "octet", option{"blksize", "1024"}), "tsize"...)
	pkt = append(pkt, 0)
	req, err := parseRequest(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if len(req.options) != 1 || req.options[0].name != "blksize" {
		t.Fatalf("options %v", req.options)
	}
}

func TestEncodePackets(t *testing.T) {
	if got := appendAck(nil, 0xabcd); !bytes.Equal(got, []byte{0, 4, 0xab, 0xcd}) {
		t.Errorf("ack: %v", got)
	}
	e := appendError(nil, ErrCodeFileNotFound, "file not found")
	code, msg, ok := parseError(e)
	if !ok || code != ErrCodeFileNotFound || msg != "file not found" || e[len(e)-1] != 0 {
		t.Errorf("error: %v %q %v", code, msg, ok)
	}
	oack := appendOACK(nil, []option{{"blksize", "1468"}, {"tsize", "99"}})
	opts, err := parseOACK(oack)
	if err != nil || len(opts) != 2 || opts[1].value != "99" {
		t.Errorf("oack: %v %v", opts, err)
	}
	d := make([]byte, 8)
	putDataHeader(d, 7)
	if blk, payload, ok := parseBlockPacket(d); !ok || blk != 7 || len(payload) != 4 || opcode(d) != opDATA {
		t.Errorf("data: %d %v %v", blk, payload, ok)
	}
	if _, _, ok := parseBlockPacket([]byte{0, 4, 1}); ok {
		t.Error("a 3-byte ACK must not parse")
	}
	if _, _, ok := parseError([]byte{0, 5, 0}); ok {
		t.Error("a 3-byte ERROR must not parse")
	}
}

// FuzzParseRequest checks that no datagram panics the request parser and
// that whatever parses re-encodes to an equivalent request.
func FuzzParseRequest(f *testing.F) {
	f.Add(appendRequest(nil, opRRQ, "pxelinux.0", "octet", option{"tsize", "0"}, option{"blksize", "1468"}))
	f.Add(appendRequest(nil, opWRQ, "dir/file", "netascii"))
	f.Add([]byte{0, 1, 0, 0})
	f.Add([]byte{0, 2, 'a', 0, 'o', 0, 'x', 0})
	f.Add([]byte{0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := parseRequest(b)
		if err != nil {
			return
		}
		if req.op != opRRQ && req.op != opWRQ {
			t.Fatalf("parsed opcode %d", req.op)
		}
		if req.filename == "" || strings.IndexByte(req.filename, 0) >= 0 {
			t.Fatalf("bad file name %q", req.filename)
		}
		again, err := parseRequest(appendRequest(nil, req.op, req.filename, req.mode, req.options...))
		if err != nil {
			t.Fatalf("re-encoded request does not parse: %v", err)
		}
		if again.filename != req.filename || again.mode != req.mode || len(again.options) != len(req.options) {
			t.Fatalf("round trip changed the request: %+v vs %+v", again, req)
		}
	})
}

// FuzzPacketParsers feeds arbitrary bytes to every parser of packets a
// transfer receives.
func FuzzPacketParsers(f *testing.F) {
	f.Add(appendAck(nil, 1))
	f.Add(appendError(nil, ErrCodeBadOptions, "User aborted the transfer"))
	f.Add(appendOACK(nil, []option{{"blksize", "512"}}))
	f.Add([]byte{0, 3, 0, 1, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		if blk, payload, ok := parseBlockPacket(b); ok {
			if len(payload) != len(b)-headerLen || blk != binary.BigEndian.Uint16(b[2:]) {
				t.Fatal("block packet misparsed")
			}
		}
		if _, msg, ok := parseError(b); ok && strings.IndexByte(msg, 0) >= 0 {
			t.Fatal("error message keeps its terminator")
		}
		_, _ = parseOACK(b)
		_ = opcode(b)
	})
}
