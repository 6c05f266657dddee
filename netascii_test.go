package tftp

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
)

// TestNetasciiReaderMatchesEncode reads the streamed netascii form at every
// kind of offset a transfer uses (in order, going back a window for a
// retransmit, splitting a CR LF pair) and compares it with the whole-file
// translation.
func TestNetasciiReaderMatchesEncode(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 511, 512, 513, netasciiMarkEvery - 1, netasciiMarkEvery + 1, 3*netasciiMarkEvery + 17} {
		raw := make([]byte, size)
		for i := range raw {
			switch rng.IntN(6) {
			case 0:
				raw[i] = '\n'
			case 1:
				raw[i] = '\r'
			default:
				raw[i] = byte('a' + rng.IntN(26))
			}
		}
		want := netasciiEncode(raw)
		r, err := newNetasciiReader(bytes.NewReader(raw), int64(len(raw)))
		if err != nil {
			t.Fatal(err)
		}
		if r.Size() != int64(len(want)) {
			t.Fatalf("size %d: reader says %d, want %d", size, r.Size(), len(want))
		}
		check := func(off int64, n int) {
			t.Helper()
			p := make([]byte, n)
			got, err := r.ReadAt(p, off)
			end := min(off+int64(n), int64(len(want)))
			if off >= int64(len(want)) {
				if got != 0 || !errors.Is(err, io.EOF) {
					t.Fatalf("size %d: read past the end at %d: %d, %v", size, off, got, err)
				}
				return
			}
			if !bytes.Equal(p[:got], want[off:end]) {
				t.Fatalf("size %d: bytes at %d+%d differ", size, off, n)
			}
			if (end-off < int64(n)) != errors.Is(err, io.EOF) || got != int(end-off) {
				t.Fatalf("size %d: read at %d+%d returned %d, %v", size, off, n, got, err)
			}
		}
		// In order, block by block, with a window re-read now and then.
		for off := int64(0); off <= int64(len(want)); off += 512 {
			check(off, 512)
			if off >= 4*512 && rng.IntN(8) == 0 {
				check(off-4*512, 512)
			}
		}
		// Odd offsets and lengths, including inside a CR LF pair.
		for range 200 {
			check(rng.Int64N(int64(len(want))+2), 1+rng.IntN(3000))
		}
	}
}

// TestNetasciiReadersShareOneTranslation holds silent netascii readers of
// one file in the memory store: they share one translation of the stored
// version, so the heap grows by about one file, not one per reader.
func TestNetasciiReadersShareOneTranslation(t *testing.T) {
	const (
		size    = 4 << 20
		readers = 16
	)
	port := advStart(t, "timeout 2s")
	server := loopback4(port)
	advPut(t, server, "img", randomBytes(t, size))
	base := advHeapInuse()
	var held []*advPeer
	var tids []netip.AddrPort
	for range readers {
		p := advDial(t, false)
		p.send(server, appendRequest(nil, opRRQ, "img", "netascii"))
		_, tid := p.expectBlock("netascii RRQ", opDATA, 1)
		held, tids = append(held, p), append(tids, tid)
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	grown := int64(m.HeapInuse) - int64(base)
	for i, p := range held {
		p.send(tids[i], appendError(nil, ErrCodeUndefined, "bye"))
	}
	t.Logf("%d silent netascii readers of a %d MiB file: heap in use grew by %d MiB", readers, size>>20, grown>>20)
	// One shared translation is about one file's size; a copy per reader
	// would be readers times that.
	if grown > 4*size {
		t.Errorf("%d netascii readers of a %d MiB file grew the heap by %d MiB: the translation is not shared", readers, size>>20, grown>>20)
	}
}

func TestNetasciiEncode(t *testing.T) {
	in := []byte("line1\nline2\r\nbare\rend")
	want := []byte("line1\r\nline2\r\x00\r\nbare\r\x00end")
	got := netasciiEncode(in)
	if !bytes.Equal(got, want) {
		t.Fatalf("encode: %q, want %q", got, want)
	}
	if netasciiSize(in) != int64(len(want)) {
		t.Fatalf("size %d, want %d", netasciiSize(in), len(want))
	}
}

func TestNetasciiDecodeAcrossBlocks(t *testing.T) {
	orig := []byte("a\nb\rc\r\n\n\r")
	wire := netasciiEncode(orig)
	// Split the wire form at every position, so a CR lands at the end of
	// a block in every way it can.
	for cut := 0; cut <= len(wire); cut++ {
		var d netasciiDecoder
		out := d.decode(nil, wire[:cut])
		out = d.decode(out, wire[cut:])
		out = d.flush(out)
		if !bytes.Equal(out, orig) {
			t.Fatalf("cut at %d: %q, want %q", cut, out, orig)
		}
	}
	// A bare CR (invalid netascii) is kept, not lost.
	var d netasciiDecoder
	if out := d.flush(d.decode(nil, []byte("x\ry\r"))); !bytes.Equal(out, []byte("x\ry\r")) {
		t.Fatalf("bare CR: %q", out)
	}
}
