package tftp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
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

func ssPut(t *testing.T, s Store, name string, data []byte) {
	t.Helper()
	if err := ssTryPut(s, name, data, true); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}

func ssTryPut(s Store, name string, data []byte, overwrite bool) error {
	up, err := s.Create(name, CreateOptions{Overwrite: overwrite, Size: -1})
	if err != nil {
		return err
	}
	for chunk := range ssChunks(data, 512) {
		if _, err := up.Write(chunk); err != nil {
			up.Abort()
			return err
		}
	}
	return up.Commit()
}

func ssChunks(b []byte, n int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			m := min(n, len(b))
			if !yield(b[:m]) {
				return
			}
			b = b[m:]
		}
	}
}

func ssRead(t *testing.T, s Store, name string) []byte {
	t.Helper()
	b, err := ssTryRead(s, name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	return b
}

func ssTryRead(s Store, name string) ([]byte, error) {
	f, err := s.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, f.Size())
	if n, err := f.ReadAt(b, 0); n != len(b) {
		return nil, fmt.Errorf("short read %d of %d: %v", n, len(b), err)
	}
	return b, nil
}

func TestStorageStorePutGet(t *testing.T) {
	dir := t.TempDir()
	s, _ := newSSTestStore(t, &certmagic.FileStorage{Path: dir}, nil)
	files := map[string][]byte{
		"boot.bin":             randomBytes(t, 70000),
		"pxelinux.cfg/default": []byte("DEFAULT linux\n"),
		"with space.bin":       {},
	}
	for name, data := range files {
		ssPut(t, s, name, data)
	}
	for name, data := range files {
		if got := ssRead(t, s, name); !bytes.Equal(got, data) {
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
	ssPut(t, s, "x", []byte("hello"))
	if b, err := os.ReadFile(filepath.Join(dir, "tftp", "fleet", "x")); err != nil || string(b) != "hello" {
		t.Fatalf("file_system storage holds %q, %v", b, err)
	}
}

func TestStorageStoreAtomicCommit(t *testing.T) {
	dir := t.TempDir()
	raw := &certmagic.FileStorage{Path: dir}
	s, _ := newSSTestStore(t, raw, nil)
	v1 := randomBytes(t, 5000)
	ssPut(t, s, "img", v1)

	// An upload in progress is invisible, in the store and in the storage.
	up, err := s.Create("img", CreateOptions{Overwrite: true, Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Write(randomBytes(t, 3000)); err != nil {
		t.Fatal(err)
	}
	if got := ssRead(t, s, "img"); !bytes.Equal(got, v1) {
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
	up, _ = s.Create("new", CreateOptions{Overwrite: true, Size: -1})
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
	v2 := randomBytes(t, 6000)
	ssPut(t, s, "img", v2)
	snap := make([]byte, f.Size())
	_, _ = f.ReadAt(snap, 0)
	if !bytes.Equal(snap, v1) {
		t.Error("open snapshot changed by a later commit")
	}
	if got := ssRead(t, s, "img"); !bytes.Equal(got, v2) {
		t.Error("commit not visible")
	}

	// Overwrite=false: refused at Create for an existing file, and at
	// Commit (under the lock) when another writer got there first.
	if _, err := s.Create("img", CreateOptions{Size: -1}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("create existing without overwrite: %v", err)
	}
	up, err = s.Create("race", CreateOptions{Size: -1})
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
	if code, _ := errorCodeFor(fs.ErrExist); code != ErrCodeFileExists {
		t.Errorf("ErrExist maps to %d", code)
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
	uploads := make([]Upload, writers)
	inputs := make([][]byte, writers)
	for i := range uploads {
		up, err := s.Create("once", CreateOptions{Size: -1})
		if err != nil {
			t.Fatal(err)
		}
		inputs[i] = randomBytes(t, 10_000+i)
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
	if got := ssRead(t, s, "once"); !bytes.Equal(got, inputs[won]) {
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
	if _, err := s.Create("big", CreateOptions{Overwrite: true, Size: 1001}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("declared size over max_file_size: %v", err)
	}
	if err := ssTryPut(s, "big", make([]byte, 1001), true); !errors.Is(err, ErrTooLarge) {
		t.Errorf("streamed size over max_file_size: %v", err)
	}
	ssPut(t, s, "a", make([]byte, 900))
	if _, err := s.Create("b", CreateOptions{Overwrite: true, Size: 700}); !errors.Is(err, ErrStoreFull) {
		t.Errorf("declared size over max_bytes: %v", err)
	}
	if err := ssTryPut(s, "b", make([]byte, 700), true); !errors.Is(err, ErrStoreFull) {
		t.Errorf("commit over max_bytes: %v", err)
	}
	if _, err := s.Stat("b"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("refused upload stored: %v", err)
	}
	// Replacing a file counts only the difference.
	ssPut(t, s, "a", make([]byte, 1000))
	ssPut(t, s, "b", make([]byte, 500))
	if files, bytes := s.Usage(); files != 2 || bytes != 1500 {
		t.Errorf("usage = %d files %d bytes", files, bytes)
	}
	if max, file := s.Limits(); max != 1500 || file != 1000 {
		t.Errorf("limits = %d, %d", max, file)
	}
	for _, err := range []error{ErrTooLarge, ErrStoreFull} {
		if code, _ := errorCodeFor(err); code != ErrCodeDiskFull {
			t.Errorf("%v maps to %d", err, code)
		}
	}
}

func TestStorageStoreCacheRevalidation(t *testing.T) {
	dir := t.TempDir()
	flaky := &ssFlakyStorage{Storage: &certmagic.FileStorage{Path: dir}}
	other := &certmagic.FileStorage{Path: dir} // another instance
	const ttl = 300 * time.Millisecond
	s, _ := newSSTestStore(t, flaky, func(s *StorageStore) { s.CacheTTL = caddy.Duration(ttl) })
	ctx := context.Background()

	if err := other.Store(ctx, "tftp/shared/kernel", []byte("version-1")); err != nil {
		t.Fatal(err)
	}
	if got := ssRead(t, s, "kernel"); string(got) != "version-1" {
		t.Fatalf("got %q", got)
	}
	// Within the TTL reads are served from the cache without storage calls.
	loads, stats := flaky.loads.Load(), flaky.stats.Load()
	for range 5 {
		ssRead(t, s, "kernel")
	}
	if flaky.loads.Load() != loads || flaky.stats.Load() != stats {
		t.Error("cached reads within the TTL reached the storage")
	}

	// Replaced elsewhere, with the same size: served fresh within the TTL.
	for i, v := range []string{"version-2", "version-3-longer"} {
		if err := other.Store(ctx, "tftp/shared/kernel", []byte(v)); err != nil {
			t.Fatal(err)
		}
		replaced := time.Now()
		for {
			got := ssRead(t, s, "kernel")
			if string(got) == v {
				break
			}
			if time.Since(replaced) > ttl+200*time.Millisecond {
				t.Fatalf("replacement %d not served %v after it was written (got %q)", i, time.Since(replaced), got)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// An unchanged file with an old modification time is revalidated with
	// a Stat, not reloaded.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "tftp", "shared", "kernel"), old, old); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl)
	ssRead(t, s, "kernel") // reloads: the modification time changed
	time.Sleep(ttl)
	loads, stats = flaky.loads.Load(), flaky.stats.Load()
	ssRead(t, s, "kernel")
	if flaky.loads.Load() != loads || flaky.stats.Load() != stats+1 {
		t.Errorf("revalidating an unchanged file: %d loads, %d stats", flaky.loads.Load()-loads, flaky.stats.Load()-stats)
	}

	// Readers arriving together after the TTL share one load.
	if err := other.Store(ctx, "tftp/shared/kernel", []byte("version-4")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl)
	loads = flaky.loads.Load()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if got, err := ssTryRead(s, "kernel"); err != nil || string(got) != "version-4" {
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
		ssPut(t, s, n, bytes.Repeat([]byte(n), 40))
	}
	ssPut(t, s, "huge", make([]byte, 101))
	if files, size := s.cache.stats(); files != 2 || size != 80 {
		t.Errorf("cache holds %d files, %d bytes; want 2, 80", files, size)
	}
	loads := flaky.loads.Load()
	ssRead(t, s, "c")
	ssRead(t, s, "b")
	if flaky.loads.Load() != loads {
		t.Error("recently written files not cached")
	}
	ssRead(t, s, "a") // evicted first (least recently used): loaded again
	if flaky.loads.Load() != loads+1 {
		t.Error("evicted file not reloaded")
	}
	if got := ssRead(t, s, "huge"); len(got) != 101 {
		t.Error("file larger than the cache not served")
	}
	if files, size := s.cache.stats(); files != 2 || size != 80 {
		t.Errorf("cache holds %d files, %d bytes; want 2, 80", files, size)
	}
}

func TestStorageStoreVanish(t *testing.T) {
	dir := t.TempDir()
	other := &certmagic.FileStorage{Path: dir}
	const ttl = 200 * time.Millisecond
	s, _ := newSSTestStore(t, &certmagic.FileStorage{Path: dir}, func(s *StorageStore) { s.CacheTTL = caddy.Duration(ttl) })
	ssPut(t, s, "gone", []byte("here"))
	ssRead(t, s, "gone")
	if err := other.Delete(context.Background(), "tftp/shared/gone"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(ttl + 200*time.Millisecond)
	for {
		_, err := s.Open("gone")
		if errors.Is(err, fs.ErrNotExist) {
			if code, _ := errorCodeFor(err); code != ErrCodeFileNotFound {
				t.Errorf("vanished file maps to error %d", code)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vanished file still served after the TTL: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
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
		const ttl = 100 * time.Millisecond
		s, logs := newSSTestStore(t, flaky, func(s *StorageStore) { s.CacheTTL = caddy.Duration(ttl) })
		v1 := randomBytes(t, 3000)
		ssPut(t, s, "fw", v1)
		ssRead(t, s, "fw")

		flaky.failWrites.Store(true)
		err := ssTryPut(s, "fw", randomBytes(t, 4000), true)
		if err == nil {
			t.Fatal("commit to a failing storage succeeded")
		}
		if code, _ := errorCodeFor(err); code != ErrCodeUndefined && code != ErrCodeDiskFull {
			t.Errorf("storage failure maps to TFTP error %d: %v", code, err)
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
		if got := ssRead(t, s, "fw"); !bytes.Equal(got, v1) {
			t.Error("cached read changed")
		}
		time.Sleep(2 * ttl)
		if got := ssRead(t, s, "fw"); !bytes.Equal(got, v1) {
			t.Error("cached read failed while the storage is down")
		}
		if logs.FilterMessage("storage unavailable; serving cached copy").Len() == 0 {
			t.Error("serving from cache during an outage not logged")
		}
		if _, err := s.Open("uncached"); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("uncached read during an outage: %v", err)
		} else if code, _ := errorCodeFor(err); code != ErrCodeUndefined {
			t.Errorf("read failure maps to %d", code)
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
		// makes file_system's Store fail for real.
		root := filepath.Join(t.TempDir(), "storage")
		s, logs := newSSTestStore(t, &certmagic.FileStorage{Path: root}, func(s *StorageStore) { s.CacheTTL = caddy.Duration(time.Hour) })
		v1 := []byte("stable version")
		ssPut(t, s, "boot/img", v1)
		ssRead(t, s, "boot/img")

		shared := filepath.Join(root, "tftp", "shared")
		if err := os.Rename(shared, shared+".moved"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(shared, []byte("not a directory"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := ssTryPut(s, "boot/img", []byte("new version"), true)
		if err == nil {
			t.Fatal("commit into a broken storage succeeded")
		}
		if code, _ := errorCodeFor(err); code != ErrCodeUndefined && code != ErrCodeDiskFull {
			t.Errorf("maps to TFTP error %d: %v", code, err)
		}
		if logs.FilterMessage("writing to storage").Len() == 0 {
			t.Error("failed write not logged")
		}
		if got := ssRead(t, s, "boot/img"); !bytes.Equal(got, v1) {
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

func TestStorageStoreCaddyfile(t *testing.T) {
	cfg := adaptCaddyfile(t, tftpCaddyfile(lines(
		"store shared caddy_storage {",
		"	storage file_system /srv/tftp",
		"	cache_max_bytes 64MiB",
		"	cache_ttl 2s",
		"	max_file_size 100MiB",
		"	max_bytes 10GiB",
		"}",
		"server b {",
		"	listen 127.0.0.1:6969",
		"	store other caddy_storage {",
		"		storage file_system {",
		"			root /srv/other",
		"		}",
		"	}",
		"}",
		"server c {",
		"	listen 127.0.0.1:6970",
		"	store tls caddy_storage",
		"}",
	)))
	var got struct {
		Apps struct {
			TFTP struct {
				Stores  map[string]json.RawMessage `json:"stores"`
				Servers map[string]struct {
					Store string `json:"store"`
				} `json:"servers"`
			} `json:"tftp"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"shared": `{"cache_max_bytes":67108864,"cache_ttl":2000000000,"max_bytes":10737418240,"max_file_size":104857600,"module":"caddy_storage","storage":{"module":"file_system","root":"/srv/tftp"}}`,
		"other":  `{"module":"caddy_storage","storage":{"module":"file_system","root":"/srv/other"}}`,
		"tls":    `{"module":"caddy_storage"}`,
	}
	for name, w := range want {
		var norm any
		_ = json.Unmarshal(got.Apps.TFTP.Stores[name], &norm)
		b, _ := json.Marshal(norm)
		if string(b) != w {
			t.Errorf("store %s:\n got %s\nwant %s", name, b, w)
		}
	}
	if got.Apps.TFTP.Servers["b"].Store != "other" || got.Apps.TFTP.Servers["c"].Store != "tls" {
		t.Errorf("servers: %+v", got.Apps.TFTP.Servers)
	}

	for input, wantErr := range map[string]string{
		"store x caddy_storage {\n bogus 1\n}":                                         "unrecognized caddy_storage store directive: bogus",
		"store x caddy_storage {\n storage nosuch\n}":                                  "caddy.storage.nosuch",
		"store x caddy_storage {\n storage\n}":                                         "wrong argument count",
		"store x caddy_storage {\n storage file_system /a\n storage file_system /b\n}": "storage is already set",
		"store x caddy_storage {\n cache_ttl 0s\n}":                                    "cache_ttl must be positive",
		"store x caddy_storage {\n cache_max_bytes lots\n}":                            "bad size",
		"store x caddy_storage {\n storage file_system\n}":                             "missing root path",
	} {
		s := new(StorageStore)
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: error %v, want %q", input, err, wantErr)
		}
	}
}

// TestStorageStoreTwoInstances runs two Caddy processes sharing one
// file_system storage.
func TestStorageStoreTwoInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Caddy processes")
	}
	bin := ssBuildDevCaddy(t)
	shared := t.TempDir()
	const ttl = time.Second
	a := newSSCaddyProcess(t, bin, "a", shared, ttl)
	b := newSSCaddyProcess(t, bin, "b", shared, ttl)
	a.start(t)
	b.start(t)
	ca := &testClient{server: loopback4(a.tftpPort)}
	cb := &testClient{server: loopback4(b.tftpPort)}

	// Put through one, get through the other.
	files := map[string][]byte{
		"kernel.img":           randomBytes(t, 300_000),
		"pxelinux.cfg/default": []byte("DEFAULT linux\nLABEL linux\n  KERNEL kernel.img\n"),
		"empty":                {},
	}
	for name, data := range files {
		if err := ca.put(name, data); err != nil {
			t.Fatalf("put %s through a: %v", name, err)
		}
		got, err := cb.get(name)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("get %s through b: %d bytes, %v; want %d identical bytes", name, len(got), err, len(data))
		}
	}

	// Replace through b; a, which has the old version cached, serves the
	// new one within the TTL.
	if got, err := ca.get("kernel.img"); err != nil || !bytes.Equal(got, files["kernel.img"]) {
		t.Fatalf("get through a: %v", err)
	}
	v2 := randomBytes(t, 250_000)
	if err := cb.put("kernel.img", v2); err != nil {
		t.Fatalf("replace through b: %v", err)
	}
	replaced := time.Now()
	for {
		got, err := ca.get("kernel.img")
		if err != nil {
			t.Fatalf("get through a: %v", err)
		}
		if bytes.Equal(got, v2) {
			t.Logf("a served the replacement %v after it was written (cache_ttl %v)", time.Since(replaced).Round(time.Millisecond), ttl)
			break
		}
		if !bytes.Equal(got, files["kernel.img"]) {
			t.Fatal("a served neither version")
		}
		if time.Since(replaced) > ttl+time.Second {
			t.Fatalf("a still serves the old version %v after the replacement", time.Since(replaced))
		}
		time.Sleep(50 * time.Millisecond)
	}
	files["kernel.img"] = v2

	// Concurrent puts of one name through both leave one whole version.
	for round := range 3 {
		name := fmt.Sprintf("race-%d.bin", round)
		inputs := [][]byte{randomBytes(t, 200_000+round), randomBytes(t, 150_000+round)}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, c := range []*testClient{{server: loopback4(a.tftpPort)}, {server: loopback4(b.tftpPort)}} {
			wg.Go(func() { errs[i] = c.put(name, inputs[i]) })
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: concurrent puts: %v; %v", round, errs[0], errs[1])
		}
		onDisk, err := os.ReadFile(filepath.Join(shared, "tftp", "shared", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(onDisk, inputs[0]) && !bytes.Equal(onDisk, inputs[1]) {
			t.Fatalf("round %d: storage holds %d bytes matching neither put", round, len(onDisk))
		}
		// Both instances converge on that version within the TTL.
		deadline := time.Now().Add(ttl + time.Second)
		for _, c := range []*testClient{ca, cb} {
			for {
				got, err := c.get(name)
				if err != nil {
					t.Fatalf("get %s: %v", name, err)
				}
				if bytes.Equal(got, onDisk) {
					break
				}
				if !bytes.Equal(got, inputs[0]) && !bytes.Equal(got, inputs[1]) {
					t.Fatalf("round %d: served %d bytes matching neither put", round, len(got))
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d: instance still serves the losing version", round)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		files[name] = onDisk
	}
	if locks, _ := os.ReadDir(filepath.Join(shared, "locks")); len(locks) != 0 {
		t.Errorf("%d lock files left after the puts", len(locks))
	}

	// Stop a with `caddy stop`, run it again: everything is still served,
	// from storage since its cache is gone.
	a.stop(t)
	if _, err := ca.get("kernel.img"); err == nil {
		t.Fatal("a still answers after caddy stop")
	}
	a.start(t)
	for name, data := range files {
		got, err := ca.get(name)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("after restart, get %s through a: %d bytes, %v; want %d identical bytes", name, len(got), err, len(data))
		}
	}
}

// ssBuildDevCaddy builds the dev binary from the repo root into a
// temporary directory.
func ssBuildDevCaddy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "caddy")
	out, err := exec.Command("go", "build", "-o", bin, "./cmd/caddy").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	return bin
}

// ssCaddyProcess is one Caddy instance run from the dev binary.
type ssCaddyProcess struct {
	bin, name, dir, config, log string
	tftpPort, adminPort         uint16
	cmd                         *exec.Cmd
	done                        chan struct{}
}

func newSSCaddyProcess(t *testing.T, bin, name, sharedDir string, ttl time.Duration) *ssCaddyProcess {
	t.Helper()
	p := &ssCaddyProcess{bin: bin, name: name, dir: t.TempDir(), tftpPort: freePort(t), adminPort: ssFreeTCPPort(t)}
	p.config = filepath.Join(p.dir, "Caddyfile")
	p.log = filepath.Join(p.dir, "caddy.log")
	cf := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	tftp {
		listen 127.0.0.1:%d
		store shared
		store shared caddy_storage {
			storage file_system %s
			cache_ttl %s
		}
	}
}
`, p.adminPort, p.tftpPort, sharedDir, ttl)
	if err := os.WriteFile(p.config, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			if b, err := os.ReadFile(p.log); err == nil {
				t.Logf("caddy %s log:\n%s", p.name, ssTail(string(b), 40))
			}
		}
	})
	return p
}

func (p *ssCaddyProcess) env() []string {
	return append(os.Environ(),
		"XDG_CONFIG_HOME="+filepath.Join(p.dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(p.dir, "data"),
		"HOME="+p.dir,
	)
}

// start runs the process and waits until its TFTP server answers.
func (p *ssCaddyProcess) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(p.bin, "run", "--config", p.config, "--adapter", "caddyfile")
	p.cmd.Env = p.env()
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}(p.cmd, p.done)
	c := &testClient{server: loopback4(p.tftpPort), timeout: 200 * time.Millisecond, retries: 1}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.get("no-such-file-probe")
		if errorCode(err) == int(ErrCodeFileNotFound) {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("caddy %s exited during start", p.name)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy %s not answering TFTP: %v", p.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop runs `caddy stop` against the instance's admin endpoint and waits
// for the process to exit.
func (p *ssCaddyProcess) stop(t *testing.T) {
	t.Helper()
	cmd := exec.Command(p.bin, "stop", "--address", fmt.Sprintf("127.0.0.1:%d", p.adminPort))
	cmd.Env = p.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy stop: %v\n%s", err, out)
	}
	select {
	case <-p.done:
	case <-time.After(45 * time.Second):
		t.Fatalf("caddy %s did not exit after caddy stop", p.name)
	}
}

func (p *ssCaddyProcess) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func ssFreeTCPPort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func ssTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestStorageStoreAdminAPIAndMetrics checks that the admin API, the store
// metrics and the limits work on a caddy_storage store as on the memory
// store.
func TestStorageStoreAdminAPIAndMetrics(t *testing.T) {
	port := freePort(t)
	dir := t.TempDir()
	a := startAdminCaddy(t, lines(
		fmt.Sprintf("listen udp4/127.0.0.1:%d", port),
		"store shared caddy_storage {",
		"storage file_system "+dir,
		"max_file_size 64KiB",
		"}",
	))
	server := loopback4(port)

	// HTTP upload, TFTP download.
	data := randomBytes(t, 40_000)
	a.expect(http.StatusCreated, http.MethodPut, "/tftp/stores/shared/files/fw/image.bin", data)
	got, err := (&testClient{server: server}).get("fw/image.bin")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("TFTP get of an HTTP upload: %d bytes, %v", len(got), err)
	}
	// TFTP upload, listed with its checksum.
	up := randomBytes(t, 3000)
	if err := (&testClient{server: server}).put("cfg/switch1", up); err != nil {
		t.Fatal(err)
	}
	f := a.files("shared")["cfg/switch1"]
	if f.Size != int64(len(up)) || f.SHA256 != sha256Hex(up) {
		t.Fatalf("listing shows %+v", f)
	}
	stores := a.stores()
	if len(stores) != 1 || stores[0].Module != "caddy_storage" || stores[0].Files != 2 || stores[0].MaxFileSize != 64<<10 {
		t.Fatalf("stores = %+v", stores)
	}
	// Limits: 413 over HTTP, ERROR 3 over TFTP.
	a.expectError(http.StatusRequestEntityTooLarge, http.MethodPut, "/tftp/stores/shared/files/big", bytes.NewReader(make([]byte, 65<<10)))
	if err := (&testClient{server: server}).put("big", make([]byte, 65<<10)); errorCode(err) != int(ErrCodeDiskFull) {
		t.Fatalf("TFTP put over max_file_size: %v, want ERROR 3", err)
	}
	// Store metrics.
	if n := a.metric("caddy_tftp_store_files", "store", "shared"); n != 2 {
		t.Fatalf("caddy_tftp_store_files{store=shared} = %v, want 2", n)
	}
	// Delete.
	a.expect(http.StatusNoContent, http.MethodDelete, "/tftp/stores/shared/files/fw/image.bin", nil)
	if _, err := (&testClient{server: server}).get("fw/image.bin"); errorCode(err) != int(ErrCodeFileNotFound) {
		t.Fatalf("get after delete: %v, want ERROR 1", err)
	}
}
