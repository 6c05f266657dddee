package tftp

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
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
