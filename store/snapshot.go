package store

import (
	"io"
	"io/fs"
	"sync"
	"time"
)

// Snapshot is an immutable file held in memory, for stores that keep (or
// cache) whole files in memory. Replacing a name installs a new Snapshot,
// so a reader holding the old one keeps consistent bytes.
type Snapshot struct {
	data    []byte
	modTime time.Time

	derivedOnce sync.Once
	derived     *Snapshot
}

// NewSnapshot wraps data, which the caller must not modify afterwards.
func NewSnapshot(data []byte, modTime time.Time) *Snapshot {
	return &Snapshot{data: data, modTime: modTime}
}

// Derived returns the snapshot made from this one's bytes by convert,
// computed on the first call and shared by every later one, so concurrent
// readers of one version share one translation (the server uses it for
// netascii). Every call on a snapshot must pass the same convert.
func (f *Snapshot) Derived(convert func([]byte) []byte) *Snapshot {
	f.derivedOnce.Do(func() {
		f.derived = &Snapshot{data: convert(f.data), modTime: f.modTime}
	})
	return f.derived
}

// ReadAt implements io.ReaderAt.
func (f *Snapshot) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fs.ErrInvalid
	}
	if off >= int64(len(f.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Size returns the length in bytes.
func (f *Snapshot) Size() int64 { return int64(len(f.data)) }

// ModTime returns the time the version was stored.
func (f *Snapshot) ModTime() time.Time { return f.modTime }

// Close does nothing; a Snapshot holds no resource.
func (f *Snapshot) Close() error { return nil }

var _ File = (*Snapshot)(nil)
