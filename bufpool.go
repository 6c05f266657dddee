package tftp

import (
	"math/bits"
	"sync"
)

// Packet buffers are pooled by size class (powers of two from 512 bytes to
// 256 KiB) so transfers of any block size reuse memory instead of allocating
// per transfer. The pools are process-wide and survive reloads.
var bufferPools [10]sync.Pool

const minBufferShift = 9 // 512 bytes

// sizeClass returns the pool index for a buffer of n bytes.
func sizeClass(n int) int {
	if n <= 1<<minBufferShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufferShift
}

// getBuffer returns a buffer whose slice has length n. Passing the pointer
// around (and back to putBuffer) keeps the pool from allocating a box for
// every Put.
func getBuffer(n int) *[]byte {
	c := sizeClass(n)
	if c >= len(bufferPools) {
		b := make([]byte, n)
		return &b
	}
	if p, ok := bufferPools[c].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<(c+minBufferShift))
	return &b
}

// putBuffer gives a buffer from getBuffer back.
func putBuffer(p *[]byte) {
	if p == nil {
		return
	}
	c := sizeClass(cap(*p))
	if c >= len(bufferPools) || cap(*p) != 1<<(c+minBufferShift) {
		return
	}
	bufferPools[c].Put(p)
}
