package tftp

import (
	"errors"
	"io"
	"io/fs"
	"sync"
	"time"
)

// Store holds the files a TFTP server serves and receives. Implementations
// are Caddy modules in the tftp.stores namespace; they know nothing of TFTP.
// All methods must be safe for concurrent use.
type Store interface {
	// Open returns a consistent snapshot of the named file: a later
	// overwrite or delete never changes the bytes it returns.
	// A missing file is fs.ErrNotExist.
	Open(name string) (File, error)

	// Create starts writing the named file. Nothing is visible to Open
	// until Commit succeeds.
	Create(name string, opts CreateOptions) (Upload, error)

	// Stat describes the named file.
	Stat(name string) (FileInfo, error)

	// List describes every file, sorted by name.
	List() ([]FileInfo, error)

	// Delete removes the named file.
	Delete(name string) error
}

// NamedStore is a Store whose contents are kept under the name it is
// configured with, so they survive config reloads. The app calls AttachName
// once after provisioning the store.
type NamedStore interface {
	Store
	AttachName(name string) error
}

// File is a read-only snapshot of a stored file.
type File interface {
	io.ReaderAt
	Size() int64
	ModTime() time.Time
	Close() error
}

// Upload is a file being written. Exactly one of Commit or Abort ends it.
type Upload interface {
	io.Writer
	// Commit makes the file visible in one step, replacing any previous
	// version.
	Commit() error
	// Abort discards what was written; the previous version, if any,
	// stays.
	Abort()
}

// CreateOptions tunes Store.Create.
type CreateOptions struct {
	// Overwrite allows replacing an existing file; without it Create and
	// Commit fail with fs.ErrExist.
	Overwrite bool
	// Size is the expected size when the client declared it (tsize), or -1.
	// A store refuses a declared size over its limits before data flows.
	Size int64
}

// FileInfo describes a stored file.
type FileInfo struct {
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
}

// snapshot is an immutable file held in memory; stores hand it out from
// Open, and replacing a name installs a new snapshot, so a reader holding
// the old one keeps consistent bytes.
type snapshot struct {
	data    []byte
	modTime time.Time

	// ascii is the netascii form, made on the first netascii read and
	// shared by every later one.
	asciiOnce sync.Once
	ascii     *snapshot
}

// netascii returns the file translated for a netascii read.
func (f *snapshot) netascii() *snapshot {
	f.asciiOnce.Do(func() {
		f.ascii = &snapshot{data: netasciiEncode(f.data), modTime: f.modTime}
	})
	return f.ascii
}

func (f *snapshot) ReadAt(p []byte, off int64) (int, error) {
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

func (f *snapshot) Size() int64        { return int64(len(f.data)) }
func (f *snapshot) ModTime() time.Time { return f.modTime }
func (f *snapshot) Close() error       { return nil }

// Bytes exposes the stored bytes. Callers must not modify the slice.
func (f *snapshot) Bytes() []byte { return f.data }

// Errors a store returns besides fs.ErrNotExist and fs.ErrExist.
var (
	// ErrTooLarge means the file exceeds the store's per-file limit.
	ErrTooLarge = errors.New("file too large")
	// ErrStoreFull means the store's capacity would be exceeded.
	ErrStoreFull = errors.New("store full")
)

// errorCodeFor maps a store error to the TFTP error code and a message that
// is safe to show a client.
func errorCodeFor(err error) (ErrorCode, string) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ErrCodeFileNotFound, "file not found"
	case errors.Is(err, fs.ErrExist):
		return ErrCodeFileExists, "file already exists"
	case errors.Is(err, ErrTooLarge):
		return ErrCodeDiskFull, "file too large"
	case errors.Is(err, ErrStoreFull):
		return ErrCodeDiskFull, "disk full or allocation exceeded"
	case errors.Is(err, fs.ErrPermission):
		return ErrCodeAccessViolated, "access violation"
	default:
		return ErrCodeUndefined, "internal server error"
	}
}
