package caddystorage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-tftp/tftp/internal/storetest"
	"github.com/caddy-tftp/tftp/store"
	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// ssFlakyStorage wraps a storage, counts reads and fails on demand.
type ssFlakyStorage struct {
	certmagic.Storage
	failWrites atomic.Bool // Store, Delete, Lock
	failReads  atomic.Bool // Stat, Load, List
	loads      atomic.Int64
	stats      atomic.Int64

	mu        sync.Mutex
	lockNames []string
}

var ssErrInjected = errors.New("injected storage failure")

func (f *ssFlakyStorage) Store(ctx context.Context, key string, value []byte) error {
	if f.failWrites.Load() {
		return ssErrInjected
	}
	return f.Storage.Store(ctx, key, value)
}

func (f *ssFlakyStorage) Delete(ctx context.Context, key string) error {
	if f.failWrites.Load() {
		return ssErrInjected
	}
	return f.Storage.Delete(ctx, key)
}

func (f *ssFlakyStorage) Lock(ctx context.Context, name string) error {
	if f.failWrites.Load() {
		return ssErrInjected
	}
	f.mu.Lock()
	f.lockNames = append(f.lockNames, name)
	f.mu.Unlock()
	return f.Storage.Lock(ctx, name)
}

func (f *ssFlakyStorage) Load(ctx context.Context, key string) ([]byte, error) {
	f.loads.Add(1)
	if f.failReads.Load() {
		return nil, ssErrInjected
	}
	return f.Storage.Load(ctx, key)
}

func (f *ssFlakyStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	f.stats.Add(1)
	if f.failReads.Load() {
		return certmagic.KeyInfo{}, ssErrInjected
	}
	return f.Storage.Stat(ctx, key)
}

func (f *ssFlakyStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	if f.failReads.Load() {
		return nil, ssErrInjected
	}
	return f.Storage.List(ctx, prefix, recursive)
}

// newSSTestStore provisions a store named "shared" on the given
// storage and returns it with its observed log.
func newSSTestStore(t *testing.T, st certmagic.Storage, configure func(*StorageStore)) (*StorageStore, *observer.ObservedLogs) {
	t.Helper()
	s := &StorageStore{storage: st}
	if configure != nil {
		configure(s)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := s.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := s.AttachName("shared"); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	s.logger = zap.New(core)
	t.Cleanup(func() { _ = s.Cleanup() })
	return s, logs
}

func TestStorageStorePutGet(t *testing.T) {
	dir := t.TempDir()
	s, _ := newSSTestStore(t, &certmagic.FileStorage{Path: dir}, nil)
	files := map[string][]byte{
		"boot.bin":             storetest.RandomBytes(t, 70000),
		"pxelinux.cfg/default": []byte("DEFAULT linux\n"),
		"with space.bin":       {},
	}
	for name, data := range files {
		storetest.MustPut(t, s, name, data)
	}
	for name, data := range files {
		if got := storetest.MustRead(t, s, name); !bytes.Equal(got, data) {
			t.Errorf("%s: got %d bytes, want %d identical", name, len(got), len(data))
		}
		fi, err := s.Stat(name)
		if err != nil || fi.Size != int64(len(data)) || fi.Name != name {
			t.Errorf("stat %s = %+v, %v", name, fi, err)
		}
		// Keys live under tftp/<store name>/ and nowhere else.
		onDisk, err := os.ReadFile(filepath.Join(dir, "tftp", "shared", filepath.FromSlash(name)))
		if err != nil || !bytes.Equal(onDisk, data) {
			t.Errorf("%s on disk: %v", name, err)
		}
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fi := range list {
		names = append(names, fi.Name)
	}
	if got, want := strings.Join(names, ","), "boot.bin,pxelinux.cfg/default,with space.bin"; got != want {
		t.Errorf("list = %s, want %s", got, want)
	}
	if files, bytes := s.Usage(); files != 3 || bytes != 70000+14 {
		t.Errorf("usage = %d files %d bytes", files, bytes)
	}
	if err := s.Delete("boot.bin"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open("boot.bin"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("open after delete: %v", err)
	}
	if err := s.Delete("boot.bin"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second delete: %v", err)
	}
	if _, err := s.Stat("pxelinux.cfg"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of a directory: %v", err)
	}
	if _, err := s.Open("pxelinux.cfg/default/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("open below a file: %v", err)
	}
	for _, bad := range []string{"", "/abs", "a/../b", "a//b", "./a"} {
		if _, err := s.Open(bad); err == nil {
			t.Errorf("open %q succeeded", bad)
		}
	}
	// Nothing was written outside the prefix except lock files.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "tftp" && e.Name() != "locks" {
			t.Errorf("unexpected %s in storage root", e.Name())
		}
	}
	// Every lock was released.
	if locks, _ := os.ReadDir(filepath.Join(dir, "locks")); len(locks) != 0 {
		t.Errorf("%d lock files left", len(locks))
	}
}

func TestStorageStoreProvisionFromConfig(t *testing.T) {
	dir := t.TempDir()
	s := &StorageStore{StorageRaw: json.RawMessage(fmt.Sprintf(`{"module":"file_system","root":%q}`, dir))}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if s.CacheMaxBytes != 256<<20 || time.Duration(s.CacheTTL) != 5*time.Second || s.MaxFileSize != 256<<20 || s.MaxBytes != 0 {
		t.Errorf("defaults: %+v", s)
	}
	if max, file := s.Limits(); max != 0 || file != 256<<20 {
		t.Errorf("limits = %d, %d", max, file)
	}
	for _, bad := range []string{"", "a/b", ".locks", `a\b`} {
		if err := s.AttachName(bad); err == nil {
			t.Errorf("AttachName(%q) accepted", bad)
		}
	}
	if err := s.AttachName("fleet"); err != nil {
		t.Fatal(err)
	}
	storetest.MustPut(t, s, "x", []byte("hello"))
	if b, err := os.ReadFile(filepath.Join(dir, "tftp", "fleet", "x")); err != nil || string(b) != "hello" {
		t.Fatalf("file_system storage holds %q, %v", b, err)
	}
}

func TestStorageStoreAtomicCommit(t *testing.T) {
	dir := t.TempDir()
	raw := &certmagic.FileStorage{Path: dir}
	s, _ := newSSTestStore(t, raw, nil)
	v1 := storetest.RandomBytes(t, 5000)
	storetest.MustPut(t, s, "img", v1)

	// An upload in progress is invisible, in the store and in the storage.
	up, err := s.Create("img", store.CreateOptions{Overwrite: true, Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Write(storetest.RandomBytes(t, 3000)); err != nil {
		t.Fatal(err)
	}
	if got := storetest.MustRead(t, s, "img"); !bytes.Equal(got, v1) {
		t.Fatal("partial upload visible through Open")
	}
	if got, _ := raw.Load(context.Background(), "tftp/shared/img"); !bytes.Equal(got, v1) {
		t.Fatal("partial upload visible in storage")
	}
	up.Abort()
	if got, _ := raw.Load(context.Background(), "tftp/shared/img"); !bytes.Equal(got, v1) {
		t.Fatal("abort changed the stored file")
	}
	if _, err := up.Write([]byte("x")); err == nil {
		t.Error("write after abort succeeded")
	}

	// A new name aborted leaves nothing.
	up, _ = s.Create("new", store.CreateOptions{Overwrite: true, Size: -1})
	_, _ = up.Write([]byte("abc"))
	up.Abort()
	if _, err := s.Stat("new"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("aborted upload left a file: %v", err)
	}

	// A snapshot opened before a commit keeps its bytes.
	f, err := s.Open("img")
	if err != nil {
		t.Fatal(err)
	}
	v2 := storetest.RandomBytes(t, 6000)
	storetest.MustPut(t, s, "img", v2)
	snap := make([]byte, f.Size())
	_, _ = f.ReadAt(snap, 0)
	if !bytes.Equal(snap, v1) {
		t.Error("open snapshot changed by a later commit")
	}
	if got := storetest.MustRead(t, s, "img"); !bytes.Equal(got, v2) {
		t.Error("commit not visible")
	}

	// Overwrite=false: refused at Create for an existing file, and at
	// Commit (under the lock) when another writer got there first.
	if _, err := s.Create("img", store.CreateOptions{Size: -1}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("create existing without overwrite: %v", err)
	}
	up, err = s.Create("race", store.CreateOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = up.Write([]byte("mine"))
	if err := raw.Store(context.Background(), "tftp/shared/race", []byte("theirs")); err != nil {
		t.Fatal(err)
	}
	if err := up.Commit(); !errors.Is(err, fs.ErrExist) {
		t.Errorf("commit over a file written meanwhile: %v", err)
	}
	if got, _ := raw.Load(context.Background(), "tftp/shared/race"); string(got) != "theirs" {
		t.Errorf("refused commit changed the file to %q", got)
	}
}

// TestStorageStoreWritersSerialised commits several uploads of one new
// name at once without overwrite: the storage lock lets exactly one win.
func TestStorageStoreWritersSerialised(t *testing.T) {
	dir := t.TempDir()
	flaky := &ssFlakyStorage{Storage: &certmagic.FileStorage{Path: dir}}
	s, _ := newSSTestStore(t, flaky, nil)
	const writers = 3
	uploads := make([]store.Upload, writers)
	inputs := make([][]byte, writers)
	for i := range uploads {
		up, err := s.Create("once", store.CreateOptions{Size: -1})
		if err != nil {
			t.Fatal(err)
		}
		inputs[i] = storetest.RandomBytes(t, 10_000+i)
		if _, err := up.Write(inputs[i]); err != nil {
			t.Fatal(err)
		}
		uploads[i] = up
	}
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i, up := range uploads {
		wg.Go(func() { errs[i] = up.Commit() })
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won < 0:
			won = i
		case err == nil:
			t.Errorf("writers %d and %d both committed without overwrite", won, i)
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no writer committed")
	}
	if got := storetest.MustRead(t, s, "once"); !bytes.Equal(got, inputs[won]) {
		t.Error("stored version is not the winner's")
	}
	flaky.mu.Lock()
	defer flaky.mu.Unlock()
	if len(flaky.lockNames) != writers {
		t.Errorf("%d locks taken for %d commits", len(flaky.lockNames), writers)
	}
	for _, name := range flaky.lockNames {
		if name != "tftp/.locks/shared/once" {
			t.Errorf("lock name %q", name)
		}
	}
}

func TestStorageStoreLimits(t *testing.T) {
	s, _ := newSSTestStore(t, &certmagic.FileStorage{Path: t.TempDir()}, func(s *StorageStore) {
		s.MaxFileSize = 1000
		s.MaxBytes = 1500
	})
	if _, err := s.Create("big", store.CreateOptions{Overwrite: true, Size: 1001}); !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("declared size over max_file_size: %v", err)
	}
	if err := storetest.Put(s, "big", make([]byte, 1001), true); !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("streamed size over max_file_size: %v", err)
	}
	storetest.MustPut(t, s, "a", make([]byte, 900))
	if _, err := s.Create("b", store.CreateOptions{Overwrite: true, Size: 700}); !errors.Is(err, store.ErrStoreFull) {
		t.Errorf("declared size over max_bytes: %v", err)
	}
	if err := storetest.Put(s, "b", make([]byte, 700), true); !errors.Is(err, store.ErrStoreFull) {
		t.Errorf("commit over max_bytes: %v", err)
	}
	if _, err := s.Stat("b"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("refused upload stored: %v", err)
	}
	// Replacing a file counts only the difference.
	storetest.MustPut(t, s, "a", make([]byte, 1000))
	storetest.MustPut(t, s, "b", make([]byte, 500))
	if files, bytes := s.Usage(); files != 2 || bytes != 1500 {
		t.Errorf("usage = %d files %d bytes", files, bytes)
	}
	if max, file := s.Limits(); max != 1500 || file != 1000 {
		t.Errorf("limits = %d, %d", max, file)
	}
}

func TestStorageStoreCacheRevalidation(t *testing.T) {
	dir := t.TempDir()
	flaky := &ssFlakyStorage{Storage: &certmagic.FileStorage{Path: dir}}
	other := &certmagic.FileStorage{Path: dir} // another instance
	const ttl = 5 * time.Second
	clock := newTestClock()
	s, _ := newSSTestStore(t, flaky, func(s *StorageStore) { s.CacheTTL = caddy.Duration(ttl); s.now = clock.Now })
	ctx := context.Background()

	if err := other.Store(ctx, "tftp/shared/kernel", []byte("version-1")); err != nil {
		t.Fatal(err)
	}
	if got := storetest.MustRead(t, s, "kernel"); string(got) != "version-1" {
		t.Fatalf("got %q", got)
	}
	// Within the TTL reads are served from the cache without storage calls.
	loads, stats := flaky.loads.Load(), flaky.stats.Load()
	for range 5 {
		storetest.MustRead(t, s, "kernel")
	}
	if flaky.loads.Load() != loads || flaky.stats.Load() != stats {
		t.Error("cached reads within the TTL reached the storage")
	}

	// Replaced elsewhere, with the same size or not: the old version is
	// served until the TTL passes, the new one right after.
	for i, v := range []string{"version-2", "version-3-longer"} {
		prev := string(storetest.MustRead(t, s, "kernel"))
		if err := other.Store(ctx, "tftp/shared/kernel", []byte(v)); err != nil {
			t.Fatal(err)
		}
		clock.advance(ttl / 2)
		if got := storetest.MustRead(t, s, "kernel"); string(got) != prev {
			t.Fatalf("replacement %d: within the TTL got %q, want the cached %q", i, got, prev)
		}
		clock.advance(ttl)
		if got := storetest.MustRead(t, s, "kernel"); string(got) != v {
			t.Fatalf("replacement %d not served once the TTL passed (got %q)", i, got)
		}
	}

	// An unchanged file with an old modification time is revalidated with
	// a Stat, not reloaded.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "tftp", "shared", "kernel"), old, old); err != nil {
		t.Fatal(err)
	}
	clock.advance(ttl)
	storetest.MustRead(t, s, "kernel") // reloads: the modification time changed
	clock.advance(ttl)
	loads, stats = flaky.loads.Load(), flaky.stats.Load()
	storetest.MustRead(t, s, "kernel")
	if flaky.loads.Load() != loads || flaky.stats.Load() != stats+1 {
		t.Errorf("revalidating an unchanged file: %d loads, %d stats", flaky.loads.Load()-loads, flaky.stats.Load()-stats)
	}

	// Readers arriving together after the TTL share one load.
	if err := other.Store(ctx, "tftp/shared/kernel", []byte("version-4")); err != nil {
		t.Fatal(err)
	}
	clock.advance(ttl)
	loads = flaky.loads.Load()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if got, err := storetest.Read(s, "kernel"); err != nil || string(got) != "version-4" {
				t.Errorf("concurrent read: %q, %v", got, err)
			}
		})
	}
	wg.Wait()
	if n := flaky.loads.Load() - loads; n != 1 {
		t.Errorf("20 concurrent readers caused %d loads", n)
	}
}

func TestStorageStoreCacheEviction(t *testing.T) {
	flaky := &ssFlakyStorage{Storage: &certmagic.FileStorage{Path: t.TempDir()}}
	s, _ := newSSTestStore(t, flaky, func(s *StorageStore) {
		s.CacheMaxBytes = 100
		s.CacheTTL = caddy.Duration(time.Hour)
	})
	for _, n := range []string{"a", "b", "c"} {
		storetest.MustPut(t, s, n, bytes.Repeat([]byte(n), 40))
	}
	storetest.MustPut(t, s, "huge", make([]byte, 101))
	if files, size := s.cache.stats(); files != 2 || size != 80 {
		t.Errorf("cache holds %d files, %d bytes; want 2, 80", files, size)
	}
	loads := flaky.loads.Load()
	storetest.MustRead(t, s, "c")
	storetest.MustRead(t, s, "b")
	if flaky.loads.Load() != loads {
		t.Error("recently written files not cached")
	}
	storetest.MustRead(t, s, "a") // evicted first (least recently used): loaded again
	if flaky.loads.Load() != loads+1 {
		t.Error("evicted file not reloaded")
	}
	if got := storetest.MustRead(t, s, "huge"); len(got) != 101 {
		t.Error("file larger than the cache not served")
	}
	if files, size := s.cache.stats(); files != 2 || size != 80 {
		t.Errorf("cache holds %d files, %d bytes; want 2, 80", files, size)
	}
}

func TestStorageStoreVanish(t *testing.T) {
	dir := t.TempDir()
	other := &certmagic.FileStorage{Path: dir}
	const ttl = 5 * time.Second
	clock := newTestClock()
	s, _ := newSSTestStore(t, &certmagic.FileStorage{Path: dir}, func(s *StorageStore) { s.CacheTTL = caddy.Duration(ttl); s.now = clock.Now })
	storetest.MustPut(t, s, "gone", []byte("here"))
	storetest.MustRead(t, s, "gone")
	if err := other.Delete(context.Background(), "tftp/shared/gone"); err != nil {
		t.Fatal(err)
	}
	clock.advance(ttl)
	if _, err := s.Open("gone"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("vanished file still served after the TTL: %v", err)
	}
	if _, err := s.Stat("gone"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat: %v", err)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("list: %v", list)
	}
}

func TestStorageStoreStorageError(t *testing.T) {
	t.Run("failing storage", func(t *testing.T) {
		dir := t.TempDir()
		flaky := &ssFlakyStorage{Storage: &certmagic.FileStorage{Path: dir}}
		const ttl = 5 * time.Second
		clock := newTestClock()
		s, logs := newSSTestStore(t, flaky, func(s *StorageStore) { s.CacheTTL = caddy.Duration(ttl); s.now = clock.Now })
		v1 := storetest.RandomBytes(t, 3000)
		storetest.MustPut(t, s, "fw", v1)
		storetest.MustRead(t, s, "fw")

		flaky.failWrites.Store(true)
		err := storetest.Put(s, "fw", storetest.RandomBytes(t, 4000), true)
		if err == nil {
			t.Fatal("commit to a failing storage succeeded")
		}
		if !hidesCause(err, true) {
			t.Errorf("storage failure reads as a client-visible cause: %v", err)
		}
		if logs.FilterLevelExact(zapcore.ErrorLevel).Len() == 0 {
			t.Error("storage failure not logged")
		}
		if err := s.Delete("fw"); err == nil {
			t.Error("delete on a failing storage succeeded")
		}

		// Reads keep working from the cache, also past the TTL while the
		// storage cannot be read.
		flaky.failReads.Store(true)
		if got := storetest.MustRead(t, s, "fw"); !bytes.Equal(got, v1) {
			t.Error("cached read changed")
		}
		clock.advance(2 * ttl)
		if got := storetest.MustRead(t, s, "fw"); !bytes.Equal(got, v1) {
			t.Error("cached read failed while the storage is down")
		}
		if logs.FilterMessage("storage unavailable; serving cached copy").Len() == 0 {
			t.Error("serving from cache during an outage not logged")
		}
		if _, err := s.Open("uncached"); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("uncached read during an outage: %v", err)
		} else if !hidesCause(err, false) {
			t.Errorf("read failure reads as a client-visible cause: %v", err)
		}

		flaky.failWrites.Store(false)
		flaky.failReads.Store(false)
		if got, _ := flaky.Storage.Load(context.Background(), "tftp/shared/fw"); !bytes.Equal(got, v1) {
			t.Error("failed commit changed the stored file")
		}
	})

	t.Run("storage directory replaced by a file", func(t *testing.T) {
		// Tests run as root, where a read-only directory still takes
		// writes; a regular file where the storage expects a directory
		// makes file_system's store.Store fail for real.
		root := filepath.Join(t.TempDir(), "storage")
		s, logs := newSSTestStore(t, &certmagic.FileStorage{Path: root}, func(s *StorageStore) { s.CacheTTL = caddy.Duration(time.Hour) })
		v1 := []byte("stable version")
		storetest.MustPut(t, s, "boot/img", v1)
		storetest.MustRead(t, s, "boot/img")

		shared := filepath.Join(root, "tftp", "shared")
		if err := os.Rename(shared, shared+".moved"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(shared, []byte("not a directory"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := storetest.Put(s, "boot/img", []byte("new version"), true)
		if err == nil {
			t.Fatal("commit into a broken storage succeeded")
		}
		if !hidesCause(err, true) {
			t.Errorf("storage failure reads as a client-visible cause: %v", err)
		}
		if logs.FilterMessage("writing to storage").Len() == 0 {
			t.Error("failed write not logged")
		}
		if got := storetest.MustRead(t, s, "boot/img"); !bytes.Equal(got, v1) {
			t.Error("cached read changed after a failed commit")
		}
		if err := os.Remove(shared); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(shared+".moved", shared); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(filepath.Join(shared, "boot"))
		if len(entries) != 1 || entries[0].Name() != "img" {
			t.Errorf("storage holds %v after the failed commit", entries)
		}
		if got, _ := os.ReadFile(filepath.Join(shared, "boot", "img")); !bytes.Equal(got, v1) {
			t.Error("failed commit changed the stored file")
		}
	})
}

// hidesCause reports whether a storage failure keeps its cause from the
// client: none of the errors the server turns into a specific TFTP error,
// except a full store where fullOK allows it.
func hidesCause(err error, fullOK bool) bool {
	for _, e := range []error{fs.ErrNotExist, fs.ErrExist, fs.ErrPermission, store.ErrTooLarge} {
		if errors.Is(err, e) {
			return false
		}
	}
	return fullOK || !errors.Is(err, store.ErrStoreFull)
}

// stats returns the number of cached files and their bytes.
func (c *storageCache) stats() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.bytes
}

// testClock is a clock a test moves by hand, so TTLs pass without waiting.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
