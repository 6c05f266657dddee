// Package caddystorage is the tftp.stores.caddy_storage store module: files
// kept in a Caddy storage module, shared by every instance that uses it.
package caddystorage

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddy-tftp/tftp/internal/directive"
	"github.com/caddy-tftp/tftp/store"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(new(StorageStore))
}

// Defaults of the caddy_storage store.
const (
	defaultStorageCacheMaxBytes = 256 << 20 // 256 MiB
	defaultStorageCacheTTL      = 5 * time.Second
	defaultStorageMaxFileSize   = 256 << 20 // 256 MiB
)

// Internal bounds of the caddy_storage store.
const (
	// storageOpTimeout bounds one call to the storage (Stat, Load, Store,
	// List, Delete).
	storageOpTimeout = 30 * time.Second
	// storageLockTimeout bounds waiting for another writer's lock on the
	// same name. It exceeds file_system's stale-lock takeover (10s).
	storageLockTimeout = 30 * time.Second
	// storageMtimeSlack is how recent a modification time must be for the
	// cache not to trust it as a version marker: a storage with coarse
	// timestamps may give a replacement made within this window the same
	// time, so such an entry is reloaded (not just statted) on revalidation.
	storageMtimeSlack = 2 * time.Second
)

// StorageStore keeps files in a Caddy storage module (file_system, or a
// plugin such as Redis, S3, Consul or a SQL database), so several Caddy
// instances configured with the same storage serve the same files, and files
// survive restarts. Keys live under tftp/<store name>/, apart from TLS
// assets.
//
// Reads are served from a local, size-bounded, least-recently-used cache.
// A cached file is served without asking the storage for cache_ttl; after
// that it is revalidated against the storage's modification time and size,
// and reloaded if it changed or dropped if it vanished. A file replaced or
// deleted through another instance is therefore seen within cache_ttl. While
// the storage fails, cached files keep being served.
//
// Uploads are buffered in memory and written with one storage Store call
// after the last block, under the storage's lock for that name, so no
// instance ever sees a partial file and concurrent writers of one name
// serialise: the last complete upload wins whole.
type StorageStore struct {
	// StorageRaw is the storage module to keep files in. Default: Caddy's
	// configured storage (the global storage option; file_system under
	// Caddy's data directory if unset).
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=caddy.storage inline_key=module"`

	// CacheMaxBytes bounds the local read cache, in bytes. The least
	// recently used files are evicted first; a file larger than the cache
	// is loaded from storage on every read. Default: 268435456 (256 MiB).
	CacheMaxBytes int64 `json:"cache_max_bytes,omitempty"`

	// CacheTTL is how long a cached file is served without revalidating it
	// against the storage, which bounds how stale a read may be after the
	// file was replaced or deleted through another instance. Default: 5s.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// MaxBytes is the total size of all files the store may hold, in
	// bytes, checked against a listing of the storage when an upload is
	// committed (concurrent uploads of different names through different
	// instances may overshoot it). Uploads that would exceed it are refused
	// with TFTP error 3. Default: 0, no limit beyond the storage's own.
	MaxBytes int64 `json:"max_bytes,omitempty"`

	// MaxFileSize is the largest single file the store accepts, in bytes.
	// Uploads are buffered in memory up to this size before being stored.
	// Default: 268435456 (256 MiB).
	MaxFileSize int64 `json:"max_file_size,omitempty"`

	storage certmagic.Storage
	logger  *zap.Logger
	now     func() time.Time // the clock the cache's TTL is measured with
	name    string
	prefix  string // "tftp/<name>/"
	locks   string // "tftp/.locks/<name>/"
	cache   *storageCache

	flightMu sync.Mutex
	flights  map[string]*storageFlight

	usageMu sync.Mutex
	usage   storageUsage
}

// storageUsage is the result of the last listing of the store.
type storageUsage struct {
	files int
	bytes int64
	at    time.Time // zero when unknown or outdated
}

// CaddyModule returns the Caddy module information.
func (*StorageStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tftp.stores.caddy_storage",
		New: func() caddy.Module { return new(StorageStore) },
	}
}

// Provision loads the storage module, or takes Caddy's configured storage,
// and fills in defaults.
func (s *StorageStore) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	if s.now == nil {
		s.now = time.Now
	}
	if s.CacheMaxBytes == 0 {
		s.CacheMaxBytes = defaultStorageCacheMaxBytes
	}
	if s.CacheTTL == 0 {
		s.CacheTTL = caddy.Duration(defaultStorageCacheTTL)
	}
	if s.MaxFileSize == 0 {
		s.MaxFileSize = defaultStorageMaxFileSize
	}
	if s.CacheMaxBytes < 0 || s.CacheTTL < 0 || s.MaxBytes < 0 || s.MaxFileSize < 0 {
		return fmt.Errorf("caddy_storage store settings must not be negative")
	}
	if s.StorageRaw != nil {
		val, err := ctx.LoadModule(s, "StorageRaw")
		if err != nil {
			return fmt.Errorf("loading storage module: %v", err)
		}
		conv, ok := val.(caddy.StorageConverter)
		if !ok {
			return fmt.Errorf("module %T is not a caddy.StorageConverter", val)
		}
		st, err := conv.CertMagicStorage()
		if err != nil {
			return fmt.Errorf("creating storage value: %v", err)
		}
		s.storage = st
	}
	if s.storage == nil {
		s.storage = ctx.Storage()
	}
	if s.storage == nil {
		return fmt.Errorf("no storage configured")
	}
	s.cache = newStorageCache(s.CacheMaxBytes)
	s.flights = make(map[string]*storageFlight)
	return nil
}

// AttachName sets the key prefix from the store's configured name.
func (s *StorageStore) AttachName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\\\x00") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("store name %q cannot be used as a storage key prefix (no slashes, no leading dot)", name)
	}
	s.name = name
	s.prefix = "tftp/" + name + "/"
	// Locks live outside the data prefix: some storages keep a lock as an
	// object next to the data (<key>.lock), which List would then report.
	s.locks = "tftp/.locks/" + name + "/"
	return nil
}

// Cleanup drops the read cache.
func (s *StorageStore) Cleanup() error {
	if s.cache != nil {
		s.cache.clear()
	}
	return nil
}

// Usage reports the number of files and bytes in the storage under the
// store's prefix, from a listing at most cache_ttl old.
func (s *StorageStore) Usage() (files int, bytes int64) {
	u, err := s.currentUsage(false)
	if err != nil {
		s.logger.Warn("listing storage for usage", zap.String("store", s.name), zap.Error(err))
	}
	return u.files, u.bytes
}

// Limits returns the configured capacity (0: unlimited) and largest file
// size.
func (s *StorageStore) Limits() (maxBytes, maxFileSize int64) {
	return s.MaxBytes, s.MaxFileSize
}

func (s *StorageStore) key(name string) string  { return s.prefix + name }
func (s *StorageStore) lock(name string) string { return s.locks + name }

// opCtx returns a context for one storage call. It is not derived from the
// config's context, so an upload finishing during a reload's grace period
// can still commit.
func opCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// validStoreName reports whether name is a clean relative path that maps to
// exactly one storage key.
func validStoreName(name string) bool {
	if name == "" || strings.ContainsAny(name, "\\\x00") {
		return false
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

func badName(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrPermission}
}

// missing reports whether a storage error means the key does not exist. A
// path component that is a file rather than a directory also means that.
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// storageFailure hides a storage error's cause from errorCodeFor, so it
// maps to TFTP error 0, except that a full disk maps to error 3.
func storageFailure(op, name string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%s %s: %v: %w", op, name, err, store.ErrStoreFull)
	}
	return fmt.Errorf("%s %s: storage error: %v", op, name, err)
}

// statKey returns the storage's description of name, or fs.ErrNotExist
// when it is missing or not a file.
func (s *StorageStore) statKey(name string) (certmagic.KeyInfo, error) {
	ctx, cancel := opCtx(storageOpTimeout)
	defer cancel()
	info, err := s.storage.Stat(ctx, s.key(name))
	if err != nil {
		if missing(err) {
			return info, fs.ErrNotExist
		}
		return info, err
	}
	if !info.IsTerminal {
		return info, fs.ErrNotExist
	}
	return info, nil
}

// Open implements Store.
func (s *StorageStore) Open(name string) (store.File, error) {
	if !validStoreName(name) {
		return nil, badName("open", name)
	}
	if f := s.cache.fresh(name, time.Duration(s.CacheTTL), s.now()); f != nil {
		return f, nil
	}
	// One revalidation per name at a time: a boot storm of clients asking
	// for the same image costs one Stat (and at most one Load).
	s.flightMu.Lock()
	fl, joined := s.flights[name]
	if !joined {
		fl = &storageFlight{done: make(chan struct{})}
		s.flights[name] = fl
	}
	s.flightMu.Unlock()
	if !joined {
		fl.file, fl.err = s.fetch(name)
		s.flightMu.Lock()
		delete(s.flights, name)
		s.flightMu.Unlock()
		close(fl.done)
	}
	<-fl.done
	if fl.err != nil {
		return nil, fl.err
	}
	return fl.file, nil
}

// storageFlight is a revalidation in progress that other readers of the
// same name wait for.
type storageFlight struct {
	done chan struct{}
	file *store.Snapshot
	err  error
}

// fetch revalidates the cached copy of name, loading it if it is missing
// or changed.
func (s *StorageStore) fetch(name string) (*store.Snapshot, error) {
	started := s.now()
	cached := s.cache.get(name)
	stale := func(err error) (*store.Snapshot, error) {
		if cached != nil {
			s.logger.Warn("storage unavailable; serving cached copy",
				zap.String("store", s.name), zap.String("file", name), zap.Error(err))
			s.cache.touch(name, cached, s.now())
			return cached.file, nil
		}
		s.logger.Error("reading from storage", zap.String("store", s.name), zap.String("file", name), zap.Error(err))
		return nil, storageFailure("reading", name, err)
	}
	info, err := s.statKey(name)
	if errors.Is(err, fs.ErrNotExist) {
		s.cache.remove(name)
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return stale(err)
	}
	if cached != nil && cached.trusted && cached.size == info.Size && cached.modTime.Equal(info.Modified) {
		s.cache.touch(name, cached, started)
		return cached.file, nil
	}
	ctx, cancel := opCtx(storageOpTimeout)
	data, err := s.storage.Load(ctx, s.key(name))
	cancel()
	if err != nil {
		if missing(err) {
			s.cache.remove(name)
			return nil, fs.ErrNotExist
		}
		return stale(err)
	}
	f := store.NewSnapshot(data, info.Modified)
	s.cache.put(name, &storageEntry{
		file:    f,
		size:    info.Size,
		modTime: info.Modified,
		checked: started,
		trusted: int64(len(data)) == info.Size && started.Sub(info.Modified) > storageMtimeSlack,
	})
	return f, nil
}

// Stat implements Store.
func (s *StorageStore) Stat(name string) (store.FileInfo, error) {
	if !validStoreName(name) {
		return store.FileInfo{}, badName("stat", name)
	}
	info, err := s.statKey(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return store.FileInfo{}, err
		}
		return store.FileInfo{}, storageFailure("stat", name, err)
	}
	return store.FileInfo{Name: name, Size: info.Size, ModTime: info.Modified}, nil
}

// List implements Store.
func (s *StorageStore) List() ([]store.FileInfo, error) {
	files, err := s.scan()
	if err != nil {
		return nil, storageFailure("listing", s.prefix, err)
	}
	return files, nil
}

// scan lists every file under the store's prefix and records the usage.
func (s *StorageStore) scan() ([]store.FileInfo, error) {
	ctx, cancel := opCtx(storageOpTimeout)
	defer cancel()
	// No trailing slash: file_system walks a directory, others match a
	// key prefix; both need the filter below.
	keys, err := s.storage.List(ctx, strings.TrimSuffix(s.prefix, "/"), true)
	if err != nil && !missing(err) {
		return nil, err
	}
	out := make([]store.FileInfo, 0, len(keys))
	var total int64
	for _, key := range keys {
		name, ok := strings.CutPrefix(key, s.prefix)
		if !ok || !validStoreName(name) {
			continue
		}
		info, err := s.storage.Stat(ctx, key)
		if err != nil {
			if missing(err) {
				continue // deleted since listed
			}
			return nil, err
		}
		if !info.IsTerminal {
			continue
		}
		out = append(out, store.FileInfo{Name: name, Size: info.Size, ModTime: info.Modified})
		total += info.Size
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	s.usageMu.Lock()
	s.usage = storageUsage{files: len(out), bytes: total, at: s.now()}
	s.usageMu.Unlock()
	return out, nil
}

// currentUsage returns the last listing's usage, listing again when it is
// older than cache_ttl, outdated by a write, or fresh is set.
func (s *StorageStore) currentUsage(fresh bool) (storageUsage, error) {
	s.usageMu.Lock()
	u := s.usage
	s.usageMu.Unlock()
	if !fresh && !u.at.IsZero() && s.now().Sub(u.at) < max(time.Duration(s.CacheTTL), time.Second) {
		return u, nil
	}
	if _, err := s.scan(); err != nil {
		return u, err
	}
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	return s.usage, nil
}

func (s *StorageStore) outdateUsage() {
	s.usageMu.Lock()
	s.usage.at = time.Time{}
	s.usageMu.Unlock()
}

// Delete implements Store.
func (s *StorageStore) Delete(name string) error {
	if !validStoreName(name) {
		return badName("delete", name)
	}
	unlock, err := s.acquire(name)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := s.statKey(name); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.cache.remove(name)
			return err
		}
		return storageFailure("deleting", name, err)
	}
	ctx, cancel := opCtx(storageOpTimeout)
	defer cancel()
	if err := s.storage.Delete(ctx, s.key(name)); err != nil {
		s.logger.Error("deleting from storage", zap.String("store", s.name), zap.String("file", name), zap.Error(err))
		return storageFailure("deleting", name, err)
	}
	s.cache.remove(name)
	s.outdateUsage()
	return nil
}

// acquire takes the storage's lock for name and returns its release.
func (s *StorageStore) acquire(name string) (func(), error) {
	ctx, cancel := opCtx(storageLockTimeout)
	defer cancel()
	lockName := s.lock(name)
	if err := s.storage.Lock(ctx, lockName); err != nil {
		s.logger.Error("locking storage", zap.String("store", s.name), zap.String("file", name), zap.Error(err))
		return nil, storageFailure("locking", name, err)
	}
	return func() {
		ctx, cancel := opCtx(storageOpTimeout)
		defer cancel()
		if err := s.storage.Unlock(ctx, lockName); err != nil {
			s.logger.Warn("unlocking storage", zap.String("store", s.name), zap.String("file", name), zap.Error(err))
		}
	}, nil
}

// Create implements Store. The checks here are early refusals; Commit
// checks again under the lock.
func (s *StorageStore) Create(name string, opts store.CreateOptions) (store.Upload, error) {
	if !validStoreName(name) {
		return nil, badName("create", name)
	}
	if opts.Size > s.MaxFileSize {
		return nil, store.ErrTooLarge
	}
	var old int64
	if !opts.Overwrite || (s.MaxBytes > 0 && opts.Size > 0) {
		info, err := s.statKey(name)
		switch {
		case err == nil && !opts.Overwrite:
			return nil, fs.ErrExist
		case err == nil:
			old = info.Size
		case !errors.Is(err, fs.ErrNotExist):
			s.logger.Error("checking storage before upload", zap.String("store", s.name), zap.String("file", name), zap.Error(err))
			return nil, storageFailure("creating", name, err)
		}
	}
	if s.MaxBytes > 0 && opts.Size > 0 {
		if opts.Size > s.MaxBytes {
			return nil, store.ErrStoreFull
		}
		u, err := s.currentUsage(false)
		if err != nil {
			return nil, storageFailure("creating", name, err)
		}
		if u.bytes-old+opts.Size > s.MaxBytes {
			return nil, store.ErrStoreFull
		}
	}
	up := &storageUpload{store: s, name: name, overwrite: opts.Overwrite, maxBytes: s.MaxBytes, maxFileSize: s.MaxFileSize}
	if opts.Size > 0 {
		up.buf = make([]byte, 0, opts.Size)
	}
	return up, nil
}

// storageUpload buffers an upload in memory until Commit.
type storageUpload struct {
	store       *StorageStore
	name        string
	overwrite   bool
	maxBytes    int64
	maxFileSize int64
	buf         []byte
	done        bool
}

func (u *storageUpload) Write(p []byte) (int, error) {
	if u.done {
		return 0, fs.ErrClosed
	}
	n := int64(len(u.buf)) + int64(len(p))
	if n > u.maxFileSize {
		return 0, store.ErrTooLarge
	}
	if u.maxBytes > 0 && n > u.maxBytes {
		return 0, store.ErrStoreFull
	}
	u.buf = append(u.buf, p...)
	return len(p), nil
}

// Commit stores the whole file with one Store call, under the storage's
// lock for the name.
func (u *storageUpload) Commit() error {
	if u.done {
		return fs.ErrClosed
	}
	u.done = true
	data := u.buf
	u.buf = nil
	if cap(data)-len(data) > len(data)/32 {
		data = append(make([]byte, 0, len(data)), data...)
	}
	return u.store.commit(u.name, data, u.overwrite, u.maxBytes)
}

func (u *storageUpload) Abort() {
	u.done = true
	u.buf = nil
}

func (s *StorageStore) commit(name string, data []byte, overwrite bool, maxBytes int64) error {
	unlock, err := s.acquire(name)
	if err != nil {
		return err
	}
	defer unlock()
	if !overwrite || maxBytes > 0 {
		info, err := s.statKey(name)
		var old int64
		switch {
		case err == nil && !overwrite:
			return fs.ErrExist
		case err == nil:
			old = info.Size
		case !errors.Is(err, fs.ErrNotExist):
			s.logger.Error("checking storage before commit", zap.String("store", s.name), zap.String("file", name), zap.Error(err))
			return storageFailure("committing", name, err)
		}
		if maxBytes > 0 {
			u, err := s.currentUsage(true)
			if err != nil {
				s.logger.Error("listing storage before commit", zap.String("store", s.name), zap.String("file", name), zap.Error(err))
				return storageFailure("committing", name, err)
			}
			if u.bytes-old+int64(len(data)) > maxBytes {
				return store.ErrStoreFull
			}
		}
	}
	ctx, cancel := opCtx(storageOpTimeout)
	err = s.storage.Store(ctx, s.key(name), data)
	cancel()
	s.outdateUsage()
	if err != nil {
		s.logger.Error("writing to storage", zap.String("store", s.name), zap.String("file", name),
			zap.Int("bytes", len(data)), zap.Error(err))
		return storageFailure("committing", name, err)
	}
	// Cache what was written, stamped with the storage's own time so that
	// revalidation compares like with like.
	now := s.now()
	entry := &storageEntry{size: int64(len(data)), modTime: now, checked: now}
	if info, err := s.statKey(name); err == nil {
		entry.size, entry.modTime = info.Size, info.Modified
	}
	entry.file = store.NewSnapshot(data, entry.modTime)
	s.cache.put(name, entry)
	return nil
}

// storageEntry is a cached file with the storage's description of the
// version it holds.
type storageEntry struct {
	name    string
	file    *store.Snapshot
	size    int64     // the storage's size of this version
	modTime time.Time // the storage's modification time of this version
	checked time.Time // when the version was last confirmed current; guarded by the cache's mu
	trusted bool      // modTime is old enough to identify the version
	elem    *list.Element
}

// storageCache is a byte-bounded LRU of file snapshots.
type storageCache struct {
	mu      sync.Mutex
	max     int64
	bytes   int64
	entries map[string]*storageEntry
	lru     *list.List // front: most recently used
}

func newStorageCache(maxBytes int64) *storageCache {
	return &storageCache{max: maxBytes, entries: make(map[string]*storageEntry), lru: list.New()}
}

// get returns the entry for name, marking it recently used.
func (c *storageCache) get(name string) *storageEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[name]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(e.elem)
	return e
}

// fresh returns the cached snapshot of name if it was confirmed current
// less than ttl ago, marking it recently used.
func (c *storageCache) fresh(name string, ttl time.Duration, now time.Time) *store.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[name]
	if !ok || now.Sub(e.checked) >= ttl {
		return nil
	}
	c.lru.MoveToFront(e.elem)
	return e.file
}

// touch records that e, if still the cached entry for name, was confirmed
// current at t.
func (c *storageCache) touch(name string, e *storageEntry, t time.Time) {
	c.mu.Lock()
	if c.entries[name] == e && t.After(e.checked) {
		e.checked = t
	}
	c.mu.Unlock()
}

// put installs e unless a version confirmed later is already cached, then
// evicts the least recently used entries beyond the bound. A file larger
// than the whole cache is not kept.
func (c *storageCache) put(name string, e *storageEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[name]; ok {
		if old.checked.After(e.checked) {
			return
		}
		c.removeLocked(old)
	}
	size := e.file.Size()
	if size > c.max {
		return
	}
	e.name = name
	e.elem = c.lru.PushFront(e)
	c.entries[name] = e
	c.bytes += size
	for c.bytes > c.max {
		c.removeLocked(c.lru.Back().Value.(*storageEntry))
	}
}

func (c *storageCache) remove(name string) {
	c.mu.Lock()
	if e, ok := c.entries[name]; ok {
		c.removeLocked(e)
	}
	c.mu.Unlock()
}

func (c *storageCache) removeLocked(e *storageEntry) {
	c.lru.Remove(e.elem)
	delete(c.entries, e.name)
	c.bytes -= e.file.Size()
}

func (c *storageCache) clear() {
	c.mu.Lock()
	c.entries = make(map[string]*storageEntry)
	c.lru.Init()
	c.bytes = 0
	c.mu.Unlock()
}

// UnmarshalCaddyfile sets up the store from its Caddyfile block:
//
//	store <name> caddy_storage {
//		storage <module> [<args...>] [{ ... }]
//		cache_max_bytes <size>
//		cache_ttl <duration>
//		max_bytes <size>
//		max_file_size <size>
//	}
//
// storage takes a caddy.storage module as the global storage option does,
// e.g. "storage file_system /srv/tftp-shared"; without it the store uses
// Caddy's configured storage. Sizes are bytes, or forms such as 64MiB.
func (s *StorageStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()          // "store"
	d.RemainingArgs() // name and module, read by the caller
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "storage":
			if s.StorageRaw != nil {
				return d.Err("storage is already set")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			modName := d.Val()
			modID := "caddy.storage." + modName
			unm, err := caddyfile.UnmarshalModule(d, modID)
			if err != nil {
				return err
			}
			if _, ok := unm.(caddy.StorageConverter); !ok {
				return d.Errf("module %s is not a caddy.StorageConverter", modID)
			}
			s.StorageRaw = caddyconfig.JSONModuleObject(unm, "module", modName, nil)
		case "cache_max_bytes":
			if err := directive.Size(d, &s.CacheMaxBytes); err != nil {
				return err
			}
		case "cache_ttl":
			dur, err := directive.Duration(d)
			if err != nil {
				return err
			}
			if dur <= 0 {
				return d.Errf("cache_ttl must be positive")
			}
			s.CacheTTL = dur
		case "max_bytes":
			if err := directive.Size(d, &s.MaxBytes); err != nil {
				return err
			}
		case "max_file_size":
			if err := directive.Size(d, &s.MaxFileSize); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized caddy_storage store directive: %s", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ store.Store           = (*StorageStore)(nil)
	_ store.NamedStore      = (*StorageStore)(nil)
	_ store.UsageReporter   = (*StorageStore)(nil)
	_ caddy.Provisioner     = (*StorageStore)(nil)
	_ caddy.CleanerUpper    = (*StorageStore)(nil)
	_ caddyfile.Unmarshaler = (*StorageStore)(nil)
)
