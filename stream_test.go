package tftp

import (
	"bytes"
	"testing"
	"time"

	"github.com/caddy-tftp/tftp/store"
)

// TestReadBlockUnknownSize: reading blocks of a file whose size the engine
// does not know finds the short last block (empty for an exact multiple)
// and allocates nothing per block, as for a file of known size.
func TestReadBlockUnknownSize(t *testing.T) {
	for _, n := range []int{0, 1, 511, 512, 1024, 1500} {
		data := bytes.Repeat([]byte{7}, n)
		src := store.NewSnapshot(data, time.Time{})
		tr := &transfer{params: transferParams{blockSize: 512}}
		buf := make([]byte, headerLen+512)
		var got []byte
		for blk := uint64(1); ; blk++ {
			l, err := tr.readBlock(src, -1, blk, buf)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, buf[headerLen:headerLen+l]...)
			if l < 512 {
				if want := uint64(n/512 + 1); blk != want {
					t.Errorf("size %d: last block %d, want %d", n, blk, want)
				}
				break
			}
			if blk > 10 {
				t.Fatalf("size %d: no short block", n)
			}
		}
		if !bytes.Equal(got, data) {
			t.Errorf("size %d: %d bytes read", n, len(got))
		}
	}
	src := store.NewSnapshot(make([]byte, 100_000), time.Time{})
	tr := &transfer{params: transferParams{blockSize: 1468}}
	buf := make([]byte, headerLen+1468)
	for _, size := range []int64{-1, 100_000} {
		blk := uint64(1)
		if allocs := testing.AllocsPerRun(200, func() {
			if _, err := tr.readBlock(src, size, blk, buf); err != nil {
				t.Fatal(err)
			}
			blk = blk%60 + 1
		}); allocs != 0 {
			t.Errorf("size %d: readBlock allocates %.1f times per block", size, allocs)
		}
	}
}
