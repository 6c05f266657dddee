package tftp

import (
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
)

// Tests of the memory store's limits over the wire.

func TestMemStoreSizeLimits(t *testing.T) {
	t.Run("max_file_size", func(t *testing.T) {
		port := advStart(t, "timeout 1s", "store default {", "max_file_size 1000", "}")
		server := loopback4(port)
		v1 := randomBytes(t, 600)
		advPut(t, server, "keep", v1)
		p := advDial(t, false)
		// Declared too large: refused before any data.
		p.send(server, appendRequest(nil, opWRQ, "keep", "octet", option{"tsize", "1001"}))
		p.expectError("WRQ tsize 1001 over max_file_size 1000", server, ErrCodeDiskFull, "keep")
		// Undeclared: refused when the data crosses the limit.
		for _, name := range []string{"keep", "new"} {
			p := advDial(t, false)
			p.send(server, appendRequest(nil, opWRQ, name, "octet"))
			_, tid := p.expectBlock("WRQ "+name, opACK, 0)
			p.send(tid, advData(1, randomBytes(t, 512)))
			p.expectBlock("DATA 1", opACK, 1)
			p.send(tid, advData(2, randomBytes(t, 512)))
			p.expectError("DATA 2 crossing max_file_size 1000", tid, ErrCodeDiskFull, name)
			p.send(tid, advData(3, randomBytes(t, 10)))
			p.expectSilence("DATA after the ERROR 3", advSilence)
		}
		advGetOK(t, server, "keep", v1)
		advGetCode(t, server, "new", ErrCodeFileNotFound)
	})
	t.Run("max_bytes", func(t *testing.T) {
		port := advStart(t, "timeout 1s", "store default {", "max_bytes 2000", "}")
		server := loopback4(port)
		a := randomBytes(t, 1500)
		advPut(t, server, "a", a)
		p := advDial(t, false)
		// 512 more bytes do not fit: the first block is refused with ERROR 3,
		// since bytes being uploaded count toward the capacity.
		p.send(server, appendRequest(nil, opWRQ, "b", "octet"))
		_, tid := p.expectBlock("WRQ b", opACK, 0)
		p.send(tid, advData(1, randomBytes(t, 512)))
		p.expectError("DATA 1 overflowing max_bytes 2000", tid, ErrCodeDiskFull, "b")
		advGetCode(t, server, "b", ErrCodeFileNotFound)
		advGetOK(t, server, "a", a)
		// A single upload larger than the whole store.
		err := (&testClient{server: server}).put("huge", randomBytes(t, 2500))
		if errorCode(err) != int(ErrCodeDiskFull) {
			t.Errorf("upload larger than max_bytes: %v, want ERROR 3", err)
		}
		advGetCode(t, server, "huge", ErrCodeFileNotFound)
		// Replacing a file counts only the difference.
		a2 := randomBytes(t, 1900)
		advPut(t, server, "a", a2)
		advGetOK(t, server, "a", a2)
	})
}

// advDeclaredSizeReservation: a WRQ's tsize is the client's claim, yet the
// memory store allocates a buffer of that capacity when the request arrives
// (memstore.go Create: make([]byte, 0, opts.Size)), checking it only against
// the bytes already committed. A handful of 40-byte requests therefore make
// the server hold many times the store's max_bytes, for as long as the
// clients keep quiet. In-flight uploads must stay within max_bytes (further
// requests refused with ERROR 3) or not be reserved from an unverified claim.
func TestMemStoreDeclaredSizeReservation(t *testing.T) {
	const (
		maxBytes = 64 << 20
		maxFile  = 32 << 20
		clients  = 8
	)
	port := advStart(t, "timeout 2s", "store default {", fmt.Sprintf("max_bytes %d", maxBytes), fmt.Sprintf("max_file_size %d", maxFile), "}")
	server := loopback4(port)
	advGetCode(t, server, "warm", ErrCodeFileNotFound)
	base := advHeapInuse()
	type held struct {
		p   *advPeer
		tid netip.AddrPort
	}
	var open []held
	accepted := 0
	for i := range clients {
		p := advDial(t, false)
		p.send(server, appendRequest(nil, opWRQ, fmt.Sprintf("res-%d", i), "octet", option{"tsize", strconv.Itoa(maxFile)}))
		pkt, tid, ok := p.recv(advReply)
		switch {
		case !ok:
			t.Fatalf("WRQ %d: no reply", i)
		case opcode(pkt) == opOACK:
			accepted++
			open = append(open, held{p, tid})
		default:
			if code, _, isErr := parseError(pkt); !isErr || code != ErrCodeDiskFull {
				t.Fatalf("WRQ %d with tsize %d: got %s, want OACK or ERROR 3", i, maxFile, advDescribe(pkt))
			}
		}
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	grown := int64(m.HeapInuse) - int64(base)
	for _, h := range open {
		h.p.send(h.tid, appendError(nil, ErrCodeUndefined, "bye"))
	}
	t.Logf("%d WRQs declaring tsize %d MiB accepted; heap in use grew by %d MiB (store max_bytes %d MiB)", accepted, maxFile>>20, grown>>20, maxBytes>>20)
	if limit := int64(maxBytes + 8<<20); grown > limit {
		t.Errorf("%d silent WRQs (each ~40 bytes, tsize=%d) made the server hold %d MiB of heap, more than the store's max_bytes of %d MiB: in-flight uploads are reserved from the client's tsize claim and not counted against max_bytes", accepted, maxFile, grown>>20, maxBytes>>20)
	}
	for i := range clients {
		advGetCode(t, server, fmt.Sprintf("res-%d", i), ErrCodeFileNotFound)
	}
}
