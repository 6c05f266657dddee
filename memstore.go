package tftp

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-tftp/tftp/store"
	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(new(MemoryStore))
}

// memoryPool keeps the contents of every memory store across config reloads,
// keyed by the store's name in the config.
var memoryPool = caddy.NewUsagePool()

// Default limits of the memory store.
const (
	defaultMemoryMaxBytes    = 1 << 30   // 1 GiB
	defaultMemoryMaxFileSize = 256 << 20 // 256 MiB
)

// MemoryStore keeps files in memory. Its contents survive config reloads for
// as long as some config keeps a store of the same name; renaming a store
// starts an empty one, and a store no config uses any more is freed.
type MemoryStore struct {
	// MaxBytes is the total size of all files the store may hold, in bytes.
	// Uploads that would exceed it are refused with TFTP error 3.
	// Default: 1073741824 (1 GiB).
	MaxBytes int64 `json:"max_bytes,omitempty"`

	// MaxFileSize is the largest single file the store accepts, in bytes.
	// Default: 268435456 (256 MiB).
	MaxFileSize int64 `json:"max_file_size,omitempty"`

	// Preload is a directory whose files, recursively, are loaded into the
	// store each time the config loads. A file's name in the store is its
	// path relative to the directory, with "/" between directories, and
	// must follow the same rules as names in TFTP requests. Preloaded files
	// replace same-named files in the store, and like any other file they
	// survive reloads and can later be overwritten or deleted. Symbolic
	// links to files are followed; links to directories and special files
	// are skipped. A missing directory, a bad name, or files over the
	// store's limits make the config fail to load. Placeholders such as
	// {env.VAR} are expanded. Default: empty (nothing is preloaded).
	Preload string `json:"preload,omitempty"`

	name      string
	data      *memData
	attached  bool
	preloaded []preloadFile
}

// CaddyModule returns the Caddy module information.
func (*MemoryStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tftp.stores.memory",
		New: func() caddy.Module { return new(MemoryStore) },
	}
}

// Provision fills in defaults and validates the limits.
func (m *MemoryStore) Provision(caddy.Context) error {
	if m.MaxBytes == 0 {
		m.MaxBytes = defaultMemoryMaxBytes
	}
	if m.MaxFileSize == 0 {
		m.MaxFileSize = defaultMemoryMaxFileSize
	}
	if m.MaxBytes < 0 || m.MaxFileSize < 0 {
		return fmt.Errorf("memory store limits must not be negative")
	}
	if m.Preload != "" {
		files, err := readPreload(caddy.NewReplacer().ReplaceKnown(m.Preload, ""), m.MaxBytes, m.MaxFileSize)
		if err != nil {
			return err
		}
		m.preloaded = files
	}
	return nil
}

// AttachName binds the store to the reload-surviving contents kept under
// its configured name.
func (m *MemoryStore) AttachName(name string) error {
	v, _, err := memoryPool.LoadOrNew(name, func() (caddy.Destructor, error) {
		return newMemData(), nil
	})
	if err != nil {
		return err
	}
	m.name = name
	m.data = v.(*memData)
	m.attached = true
	if m.preloaded != nil {
		err := m.data.putAll(m.preloaded, m.MaxBytes)
		m.preloaded = nil
		if err != nil {
			return fmt.Errorf("preload %s: %w", m.Preload, err)
		}
	}
	return nil
}

// preloadFile is a file read from a preload directory.
type preloadFile struct {
	name string
	data []byte
}

// readPreload reads every file under dir, checking names and limits.
func readPreload(dir string, maxBytes, maxFileSize int64) ([]preloadFile, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("preload: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("preload: %s is not a directory", dir)
	}
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return nil, fmt.Errorf("preload: %w", err)
	}
	files := []preloadFile{}
	seen := make(map[string]bool)
	var total int64
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := os.Stat(path) // follows a symbolic link
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		name, err := cleanName(rel)
		if err != nil || seen[name] {
			return fmt.Errorf("%s: %q is not usable as a TFTP file name", path, rel)
		}
		if fi.Size() > maxFileSize {
			return fmt.Errorf("%s is %d bytes, over the store's max_file_size of %d", path, fi.Size(), maxFileSize)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if int64(len(data)) > maxFileSize {
			return fmt.Errorf("%s is %d bytes, over the store's max_file_size of %d", path, len(data), maxFileSize)
		}
		if total += int64(len(data)); total > maxBytes {
			return fmt.Errorf("the files in %s exceed the store's max_bytes of %d", dir, maxBytes)
		}
		seen[name] = true
		files = append(files, preloadFile{name: name, data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("preload: %w", err)
	}
	return files, nil
}

// Cleanup drops this config's reference to the contents; the last reference
// frees them.
func (m *MemoryStore) Cleanup() error {
	if !m.attached {
		return nil
	}
	m.attached = false
	_, err := memoryPool.Delete(m.name)
	return err
}

// Usage reports the number of files and bytes held.
func (m *MemoryStore) Usage() (files int, bytes int64) {
	return m.data.usage()
}

// Limits returns the configured capacity and largest file size.
func (m *MemoryStore) Limits() (maxBytes, maxFileSize int64) {
	return m.MaxBytes, m.MaxFileSize
}

// Open implements Store.
func (m *MemoryStore) Open(name string) (store.File, error) {
	f, ok := m.data.get(name)
	if !ok {
		return nil, fs.ErrNotExist
	}
	return f, nil
}

// Stat implements Store.
func (m *MemoryStore) Stat(name string) (store.FileInfo, error) {
	f, ok := m.data.get(name)
	if !ok {
		return store.FileInfo{}, fs.ErrNotExist
	}
	return store.FileInfo{Name: name, Size: f.Size(), ModTime: f.ModTime()}, nil
}

// List implements Store.
func (m *MemoryStore) List() ([]store.FileInfo, error) {
	return m.data.list(), nil
}

// Delete implements Store.
func (m *MemoryStore) Delete(name string) error {
	return m.data.remove(name)
}

// Create implements Store.
func (m *MemoryStore) Create(name string, opts store.CreateOptions) (store.Upload, error) {
	old, exists := m.data.get(name)
	if exists && !opts.Overwrite {
		return nil, fs.ErrExist
	}
	if opts.Size > m.MaxFileSize {
		return nil, store.ErrTooLarge
	}
	if opts.Size > 0 {
		if err := m.data.checkRoom(name, opts.Size, m.MaxBytes); err != nil {
			return nil, err
		}
	}
	u := &memUpload{data: m.data, limits: memLimits{MaxBytes: m.MaxBytes, MaxFileSize: m.MaxFileSize}, name: name, overwrite: opts.Overwrite}
	if exists {
		// The version being replaced will be freed at commit.
		u.credit = old.Size()
	}
	if opts.Size > 0 {
		// The declared size is only a hint from the client: reserve at
		// most a little up front, so a request alone cannot claim memory.
		u.declared = opts.Size
		u.buf = make([]byte, 0, min(opts.Size, maxUploadPrealloc))
	}
	return u, nil
}

// memUpload buffers an upload until Commit. It keeps the contents and the
// limits it started with, so an upload that outlives a reload finishes
// under its original settings.
type memUpload struct {
	data      *memData
	limits    memLimits
	name      string
	overwrite bool
	buf       []byte   // the chunk being filled
	full      [][]byte // chunks filled before it
	size      int64    // bytes written so far
	declared  int64    // size the client declared (tsize), or 0
	done      bool
	reserved  int64 // bytes counted in data.pending
	credit    int64 // size of the version this upload replaces
}

const (
	// maxUploadPrealloc caps the buffer allocated for an upload's declared
	// size before the client has sent that much.
	maxUploadPrealloc = 1 << 20
	// minUploadChunk and maxUploadChunk bound the chunks an upload of
	// unknown size is buffered in; chunks grow with the upload, so a large
	// file is copied once at commit instead of at every doubling.
	minUploadChunk = 64 << 10
	maxUploadChunk = 8 << 20
)

// grow makes room in a full upload buffer.
func (u *memUpload) grow() {
	if u.declared > u.size && len(u.full) == 0 && u.size >= min(u.declared, maxUploadPrealloc) {
		// The client has sent what was preallocated and said how much
		// follows: one buffer of the declared size needs no copy at commit.
		nb := make([]byte, len(u.buf), u.declared)
		copy(nb, u.buf)
		u.buf = nb
		return
	}
	if len(u.buf) > 0 {
		u.full = append(u.full, u.buf)
	}
	u.buf = make([]byte, 0, min(max(u.size, minUploadChunk), maxUploadChunk))
}

func (u *memUpload) Write(p []byte) (int, error) {
	if u.done {
		return 0, fs.ErrClosed
	}
	if u.size+int64(len(p)) > u.limits.MaxFileSize {
		return 0, store.ErrTooLarge
	}
	// Bytes of uploads in progress count toward the store's capacity, so
	// concurrent uploads cannot together buffer more than it holds.
	if !u.data.reserve(int64(len(p)), u.limits.MaxBytes+u.credit) {
		return 0, store.ErrStoreFull
	}
	u.reserved += int64(len(p))
	n := len(p)
	for len(p) > 0 {
		if len(u.buf) == cap(u.buf) {
			u.grow()
		}
		k := copy(u.buf[len(u.buf):cap(u.buf)], p)
		u.buf = u.buf[:len(u.buf)+k]
		p = p[k:]
	}
	u.size += int64(n)
	return n, nil
}

// release gives back the upload's reservation.
func (u *memUpload) release() {
	u.data.pending.Add(-u.reserved)
	u.reserved = 0
}

func (u *memUpload) Commit() error {
	if u.done {
		return fs.ErrClosed
	}
	u.done = true
	defer u.release()
	data := u.buf
	if len(u.full) > 0 || cap(data)-len(data) > len(data)/32 {
		// Hand the store one exact-size slice, so its heap stays close to
		// the file sizes.
		data = make([]byte, 0, u.size)
		for _, c := range u.full {
			data = append(data, c...)
		}
		data = append(data, u.buf...)
	}
	u.buf, u.full = nil, nil
	return u.data.put(u.name, data, u.overwrite, u.limits.MaxBytes)
}

func (u *memUpload) Abort() {
	if u.done {
		return
	}
	u.done = true
	u.buf, u.full = nil, nil
	u.release()
}

// memLimits are the limits an upload runs under.
type memLimits struct {
	MaxBytes    int64
	MaxFileSize int64
}

// memData is the reload-surviving content of one memory store.
type memData struct {
	mu    sync.RWMutex
	files map[string]*store.Snapshot
	// used is the size of all files, changed under mu and read without
	// it; pending counts the bytes buffered by uploads in progress.
	used    atomic.Int64
	pending atomic.Int64
}

// reserve counts n more buffered bytes if committed and pending bytes stay
// within maxBytes.
func (d *memData) reserve(n, maxBytes int64) bool {
	for {
		cur := d.pending.Load()
		if d.used.Load()+cur+n > maxBytes {
			return false
		}
		if d.pending.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

func newMemData() *memData {
	return &memData{files: make(map[string]*store.Snapshot)}
}

// Destruct frees the contents when no config uses the store any more.
func (d *memData) Destruct() error {
	d.mu.Lock()
	d.files = make(map[string]*store.Snapshot)
	d.used.Store(0)
	d.mu.Unlock()
	return nil
}

func (d *memData) get(name string) (*store.Snapshot, bool) {
	d.mu.RLock()
	f, ok := d.files[name]
	d.mu.RUnlock()
	return f, ok
}

func (d *memData) usage() (int, int64) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.files), d.used.Load()
}

func (d *memData) list() []store.FileInfo {
	d.mu.RLock()
	out := make([]store.FileInfo, 0, len(d.files))
	for name, f := range d.files {
		out = append(out, store.FileInfo{Name: name, Size: f.Size(), ModTime: f.ModTime()})
	}
	d.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// checkRoom reports whether a file of size n may replace name.
func (d *memData) checkRoom(name string, n, maxBytes int64) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.roomLocked(name, n, maxBytes)
}

func (d *memData) roomLocked(name string, n, maxBytes int64) error {
	used := d.used.Load()
	if old, ok := d.files[name]; ok {
		used -= old.Size()
	}
	if used+n > maxBytes {
		return store.ErrStoreFull
	}
	return nil
}

func (d *memData) put(name string, data []byte, overwrite bool, maxBytes int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, exists := d.files[name]
	if exists && !overwrite {
		return fs.ErrExist
	}
	if err := d.roomLocked(name, int64(len(data)), maxBytes); err != nil {
		return err
	}
	d.installLocked(name, data, time.Now())
	return nil
}

// putAll stores files in one step, replacing same-named files, if all of
// them fit.
func (d *memData) putAll(files []preloadFile, maxBytes int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	used := d.used.Load()
	for _, f := range files {
		if old, ok := d.files[f.name]; ok {
			used -= old.Size()
		}
		used += int64(len(f.data))
	}
	if used > maxBytes {
		return fmt.Errorf("the store would hold %d bytes, over its max_bytes of %d: %w", used, maxBytes, store.ErrStoreFull)
	}
	now := time.Now()
	for _, f := range files {
		d.installLocked(f.name, f.data, now)
	}
	return nil
}

// installLocked stores a file, replacing any previous version, and keeps
// the byte count. d.mu must be held.
func (d *memData) installLocked(name string, data []byte, modTime time.Time) {
	delta := int64(len(data))
	if old, ok := d.files[name]; ok {
		delta -= old.Size()
	}
	d.files[name] = store.NewSnapshot(data, modTime)
	d.used.Add(delta)
}

func (d *memData) remove(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	old, ok := d.files[name]
	if !ok {
		return fs.ErrNotExist
	}
	delete(d.files, name)
	d.used.Add(-old.Size())
	return nil
}

// Interface guards
var (
	_ store.Store         = (*MemoryStore)(nil)
	_ store.NamedStore    = (*MemoryStore)(nil)
	_ store.UsageReporter = (*MemoryStore)(nil)
	_ caddy.Provisioner   = (*MemoryStore)(nil)
	_ caddy.CleanerUpper  = (*MemoryStore)(nil)
	_ caddy.Destructor    = (*memData)(nil)
)
