// Package store is the contract between the tftp app and the modules that
// keep its files. A store module (namespace tftp.stores) implements Store
// and, where it can, the optional interfaces below; it imports this package
// and nothing of the TFTP server, and knows nothing of TFTP.
package store

import (
	"errors"
	"io"
	"net/netip"
	"time"
)

// Store holds the files a TFTP server serves and receives. All methods
// must be safe for concurrent use. Names are cleaned by the server before
// they reach a store: relative, "/" between directories, no "." or ".."
// segments, never empty.
type Store interface {
	// Open returns a consistent snapshot of the named file: a later
	// overwrite or delete never changes the bytes it returns.
	// A missing file is fs.ErrNotExist; a name the store refuses to serve
	// (outside its root, not a regular file) is fs.ErrPermission.
	Open(name string) (File, error)

	// Create starts writing the named file. Nothing is visible to Open
	// until Commit succeeds.
	Create(name string, opts CreateOptions) (Upload, error)

	// Stat describes the named file.
	Stat(name string) (FileInfo, error)

	// List describes every file, sorted by name. A store that cannot
	// enumerate its files returns ErrNotSupported.
	List() ([]FileInfo, error)

	// Delete removes the named file.
	Delete(name string) error
}

// File is a read-only snapshot of a stored file.
//
// A store that streams a file from elsewhere may not know its length when
// Open returns: Size then returns -1, and ReadAt blocks until the bytes at
// the offset have arrived or the file has ended. As io.ReaderAt requires, a
// read that returns fewer bytes than asked returns an error: io.EOF at the
// end of the file, or the failure that cut the stream short. The server
// sends the last block when a read comes back short, and leaves tsize out
// of its answer.
type File interface {
	io.ReaderAt
	// Size returns the length in bytes, or -1 while it is not known. It
	// returns the same value on every call.
	Size() int64
	ModTime() time.Time
	Close() error
}

// GrowingFile is implemented by files whose bytes are still arriving
// (streamed from elsewhere). Arrived returns how many bytes from the start
// can be read now without waiting; the server sends the blocks it has
// before it waits for the next one. It must be cheap: it is called once per
// block. Close may be called while a ReadAt waits, and more than once: the
// waiting ReadAt then returns an error at once (the server does this when
// it stops).
type GrowingFile interface {
	File
	Arrived() int64
}

// RequestInfo describes the request a file is opened for.
type RequestInfo struct {
	// Client is the address and port of the client, or the zero value when
	// the request does not come from a TFTP client (the admin API).
	Client netip.AddrPort
	// Server is the name of the tftp server that took the request.
	Server string
	// NeedSize asks for a File whose Size is known (not -1), because the
	// client asked for the size before the first block (the tsize option).
	// A store that streams may have to fetch the whole file first; it may
	// still return -1 when the file is larger than it can hold.
	NeedSize bool
}

// RequestOpener is implemented by stores whose files depend on who asks or
// that need to know whether the size is wanted up front; the server calls
// OpenFor instead of Open for them.
type RequestOpener interface {
	OpenFor(name string, req RequestInfo) (File, error)
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
	// Request describes who uploads; the zero value when unknown.
	Request RequestInfo
}

// FileInfo describes a stored file.
type FileInfo struct {
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
}

// Errors a store returns besides those of io/fs (fs.ErrNotExist,
// fs.ErrExist, fs.ErrPermission).
var (
	// ErrTooLarge means the file exceeds the store's per-file limit.
	ErrTooLarge = errors.New("file too large")
	// ErrStoreFull means the store's capacity, or the disk under it,
	// would be exceeded.
	ErrStoreFull = errors.New("store full")
	// ErrNotSupported means the store cannot do the operation at all (for
	// example listing the files behind an HTTP server).
	ErrNotSupported = errors.New("operation not supported by this store")
	// ErrUnavailable means the service a store relies on (an upstream
	// server) failed, did not answer, or broke off mid-file.
	ErrUnavailable = errors.New("upstream unavailable")
)

// NamedStore is a Store whose contents are kept under the name it is
// configured with, so they survive config reloads. The app calls AttachName
// once after provisioning the store.
type NamedStore interface {
	Store
	AttachName(name string) error
}

// UsageReporter is implemented by stores that can report their size, for
// metrics and the admin API. Both methods must be cheap: they run on every
// metrics scrape.
type UsageReporter interface {
	// Usage returns the number of files and the bytes they hold.
	Usage() (files int, bytes int64)
	// Limits returns the store's capacity and largest file, in bytes;
	// zero means unlimited.
	Limits() (maxBytes, maxFileSize int64)
}
