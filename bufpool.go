package tftp

import (
	"math/bits"
	"sync"
)

// Packet buffers are pooled by size class (powers of two from 512 bytes to
// 64 KiB) so transfers of any block size reuse memory instead of allocating
// per transfer. The pools are process-wide and survive reloads.
var bufferPools [8]sync.Pool

const minBufferShift = 9 // 512 bytes

// sizeClass returns the pool index for a buffer of n bytes.
func sizeClass(n int) int {
	if n <= 1<<minBufferShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufferShift
}

// getBuffer returns a buffer of length n.
func getBuffer(n int) []byte {
	c := sizeClass(n)
	if c >= len(bufferPools) {
		return make([]byte, n)
	}
	if p, ok := bufferPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<(c+minBufferShift))
}

// putBuffer gives a buffer from getBuffer back.
func putBuffer(b []byte) {
	if b == nil {
		return
	}
	c := sizeClass(cap(b))
	if c >= len(bufferPools) || cap(b) != 1<<(c+minBufferShift) {
		return
	}
	b = b[:0]
	bufferPools[c].Put(&b)
}
