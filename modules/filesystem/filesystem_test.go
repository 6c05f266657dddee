//go:build linux

package filesystem

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-tftp/tftp/internal/storetest"
	"github.com/caddy-tftp/tftp/store"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// newStore provisions a file_system store on dir.
func newStore(t *testing.T, dir string, configure func(*FileSystem)) (*FileSystem, *observer.ObservedLogs) {
	t.Helper()
	s := &FileSystem{Root: dir}
	if configure != nil {
		configure(s)
	}
	core, logs := observer.New(zap.DebugLevel)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := s.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	s.logger = zap.New(core)
	t.Cleanup(func() { _ = s.Cleanup() })
	return s, logs
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tempFiles lists the upload temporary files anywhere under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestServesDirectoryLive(t *testing.T) {
	dir := t.TempDir()
	s, _ := newStore(t, dir, nil)

	if _, err := s.Open("new.bin"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	write(t, filepath.Join(dir, "new.bin"), []byte("v1"))
	if got, err := storetest.Read(s, "new.bin"); err != nil || string(got) != "v1" {
		t.Fatalf("file added on disk: %q, %v", got, err)
	}
	write(t, filepath.Join(dir, "new.bin"), []byte("version 2"))
	if got, err := storetest.Read(s, "new.bin"); err != nil || string(got) != "version 2" {
		t.Fatalf("file replaced on disk: %q, %v", got, err)
	}
	if err := os.Remove(filepath.Join(dir, "new.bin")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open("new.bin"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("file deleted on disk: %v", err)
	}

	write(t, filepath.Join(dir, "a/b/c.txt"), []byte("nested"))
	write(t, filepath.Join(dir, "with space.bin"), []byte("sp"))
	write(t, filepath.Join(dir, "empty"), nil)
	if got, err := storetest.Read(s, "a/b/c.txt"); err != nil || string(got) != "nested" {
		t.Fatalf("nested: %q, %v", got, err)
	}
	if _, err := s.Open("a/b"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("a directory opened: %v", err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.Open("fifo"); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("a FIFO opened: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("opening a FIFO hangs")
	}
	if err := os.Remove(filepath.Join(dir, "fifo")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open("a/b/c.txt/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a path through a file: %v", err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range list {
		names = append(names, f.Name)
	}
	if got, want := strings.Join(names, ","), "a/b/c.txt,empty,with space.bin"; got != want {
		t.Errorf("list = %s, want %s", got, want)
	}
}

func TestConfinedToRoot(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "root")
	write(t, filepath.Join(base, "secret"), []byte("secret"))
	write(t, filepath.Join(base, "outdir/secret2"), []byte("secret2"))
	write(t, filepath.Join(dir, "a/f.txt"), []byte("inside"))
	for link, target := range map[string]string{
		"out_file":       "../secret",
		"out_dir":        "../outdir",
		"out_abs":        filepath.Join(base, "secret"),
		"out_abs_dir":    filepath.Join(base, "outdir"),
		"etc":            "/etc/hostname",
		"loop1":          "loop2",
		"loop2":          "loop1",
		"in_rel":         "a/f.txt",
		"a/up_rel":       "../a/f.txt",
		"in_abs":         filepath.Join(dir, "a/f.txt"),
		"in_abs_dir":     filepath.Join(dir, "a"),
		"a/via_abs_link": filepath.Join(dir, "in_abs"),
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	s, logs := newStore(t, dir, nil)

	for _, name := range []string{"in_rel", "a/up_rel", "in_abs", "in_abs_dir/f.txt", "a/via_abs_link"} {
		if got, err := storetest.Read(s, name); err != nil || string(got) != "inside" {
			t.Errorf("link inside the root %s: %q, %v", name, got, err)
		}
	}
	for _, name := range []string{"out_file", "out_dir/secret2", "out_abs", "out_abs_dir/secret2", "etc", "loop1", "../secret", "/etc/hostname", "a/../../secret"} {
		logs.TakeAll()
		got, err := storetest.Read(s, name)
		if err == nil || got != nil {
			t.Errorf("%s served: %q", name, got)
			continue
		}
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("%s: %v, want a permission error", name, err)
		}
		if logs.FilterMessageSnippet("outside the root").Len() == 0 {
			t.Errorf("%s refused without a log line", name)
		}
	}
	// Nothing is written outside either.
	for _, name := range []string{"out_file", "out_dir/new", "out_abs_dir/new", "../new"} {
		if err := storetest.Put(s, name, []byte("x"), true); err == nil {
			t.Errorf("upload to %s accepted", name)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(base, "secret")); string(got) != "secret" {
		t.Errorf("file outside the root changed: %q", got)
	}
	if _, err := os.Stat(filepath.Join(base, "outdir/new")); err == nil {
		t.Error("a file was created outside the root")
	}
	// Listings show the links that stay inside and nothing else.
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range list {
		if strings.HasPrefix(f.Name, "out") || f.Name == "etc" || strings.HasPrefix(f.Name, "loop") {
			t.Errorf("listing shows %s", f.Name)
		}
	}
}

func TestSwappedRootSeenWithoutReload(t *testing.T) {
	base := t.TempDir()
	write(t, filepath.Join(base, "releases/1/boot.bin"), []byte("one"))
	write(t, filepath.Join(base, "releases/2/boot.bin"), []byte("two"))
	current := filepath.Join(base, "current")
	if err := os.Symlink("releases/1", current); err != nil {
		t.Fatal(err)
	}
	s, _ := newStore(t, current, nil)
	if got, _ := storetest.Read(s, "boot.bin"); string(got) != "one" {
		t.Fatalf("before the swap: %q", got)
	}
	// Re-point the link atomically, as deploy scripts do.
	if err := os.Symlink("releases/2", current+".new"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(current+".new", current); err != nil {
		t.Fatal(err)
	}
	if got, _ := storetest.Read(s, "boot.bin"); string(got) != "two" {
		t.Fatalf("after the swap: %q", got)
	}
	// A directory renamed away and created again is seen too.
	dir := filepath.Join(base, "plain")
	write(t, filepath.Join(dir, "f"), []byte("old"))
	s2, _ := newStore(t, dir, nil)
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "f"), []byte("new"))
	if got, _ := storetest.Read(s2, "f"); string(got) != "new" {
		t.Fatalf("after re-creating the directory: %q", got)
	}
}

func TestUploadIsAtomic(t *testing.T) {
	dir := t.TempDir()
	s, _ := newStore(t, dir, nil)
	old := storetest.RandomBytes(t, 100_000)
	write(t, filepath.Join(dir, "fw.bin"), old)

	// A reader that opened the old version keeps it whole.
	reader, err := s.Open("fw.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	up, err := s.Create("fw.bin", store.CreateOptions{Overwrite: true, Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	next := storetest.RandomBytes(t, 150_000)
	if _, err := up.Write(next[:70_000]); err != nil {
		t.Fatal(err)
	}
	if got, _ := storetest.Read(s, "fw.bin"); !bytes.Equal(got, old) {
		t.Fatal("a partial upload is visible")
	}
	if list, _ := s.List(); len(list) != 1 || list[0].Name != "fw.bin" || list[0].Size != int64(len(old)) {
		t.Fatalf("listing during an upload: %+v", list)
	}
	if len(tempFiles(t, dir)) != 1 {
		t.Fatal("the upload writes no temporary file")
	}
	for _, tmp := range tempFiles(t, dir) {
		if _, err := s.Open(filepath.Base(tmp)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("temporary file readable: %v", err)
		}
	}
	if _, err := up.Write(next[70_000:]); err != nil {
		t.Fatal(err)
	}
	if err := up.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, _ := storetest.Read(s, "fw.bin"); !bytes.Equal(got, next) {
		t.Fatal("committed upload not served")
	}
	buf := make([]byte, reader.Size())
	if _, err := reader.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, old) {
		t.Fatal("a reader of the old version saw other bytes")
	}
	if info, err := os.Stat(filepath.Join(dir, "fw.bin")); err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("mode after upload: %v, %v", info.Mode(), err)
	}

	// An aborted upload leaves the previous version and no file behind.
	up, err = s.Create("fw.bin", store.CreateOptions{Overwrite: true, Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = up.Write([]byte("partial"))
	up.Abort()
	if got, _ := storetest.Read(s, "fw.bin"); !bytes.Equal(got, next) {
		t.Fatal("abort changed the file")
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Fatalf("abort left %v", tmp)
	}

	// Without overwrite an existing name is refused, at create and at
	// commit when another upload got there first.
	if err := storetest.Put(s, "fw.bin", []byte("x"), false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("create over an existing file: %v", err)
	}
	first, err := s.Create("race.bin", store.CreateOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := storetest.Put(s, "race.bin", []byte("winner"), false); err != nil {
		t.Fatal(err)
	}
	_, _ = first.Write([]byte("loser"))
	if err := first.Commit(); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second commit without overwrite: %v", err)
	}
	if got, _ := storetest.Read(s, "race.bin"); string(got) != "winner" {
		t.Errorf("race.bin = %q", got)
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Fatalf("left behind: %v", tmp)
	}
}

func TestUploadDirectoriesAndModes(t *testing.T) {
	dir := t.TempDir()
	s, _ := newStore(t, dir, nil)
	if err := storetest.Put(s, "new/dir/f", []byte("x"), true); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("upload into a missing directory without create_dirs: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); err == nil {
		t.Error("a directory was created without create_dirs")
	}
	s2, _ := newStore(t, dir, func(s *FileSystem) {
		s.CreateDirs = true
		s.FileMode = "0600"
		s.DirMode = "0750"
	})
	if err := storetest.Put(s2, "new/dir/f", []byte("x"), true); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{"new": 0o750, "new/dir": 0o750, "new/dir/f": 0o600} {
		if info, err := os.Stat(filepath.Join(dir, path)); err != nil || info.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v (%v)", path, info.Mode().Perm(), want, err)
		}
	}
	if err := storetest.Put(s2, "new", []byte("x"), true); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("upload over a directory: %v", err)
	}
}

func TestUploadLimitsAndFullDisk(t *testing.T) {
	dir := t.TempDir()
	s, _ := newStore(t, dir, func(s *FileSystem) { s.MaxFileSize = 1000 })
	if _, err := s.Create("big", store.CreateOptions{Size: 1001}); !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("declared size over the limit: %v", err)
	}
	if err := storetest.Put(s, "big", make([]byte, 1001), true); !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("upload over the limit: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "big")); err == nil || len(tempFiles(t, dir)) != 0 {
		t.Error("a refused upload left a file")
	}

	// A full disk: a small tmpfs (root only; CI runs as root).
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mounting a small tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	full, _ := newStore(t, mnt, nil)
	old := storetest.RandomBytes(t, 100_000)
	if err := storetest.Put(full, "fw.bin", old, true); err != nil {
		t.Fatal(err)
	}
	err := storetest.Put(full, "fw.bin", storetest.RandomBytes(t, 300_000), true)
	if !errors.Is(err, store.ErrStoreFull) {
		t.Fatalf("upload onto a full disk: %v", err)
	}
	if got, _ := storetest.Read(full, "fw.bin"); !bytes.Equal(got, old) {
		t.Fatal("a failed upload changed the file")
	}
	if tmp := tempFiles(t, mnt); len(tmp) != 0 {
		t.Fatalf("a failed upload left %v", tmp)
	}
}

func TestSweepsInterruptedUploads(t *testing.T) {
	dir := t.TempDir()
	// A dead process's leftovers (pid 2^22+1 is above Linux's pid_max
	// limit, so no process has it), and a live one's: this process's
	// parent, which is running.
	dead := filepath.Join(dir, "sub", tempPrefix+"4194305-aa.tmp")
	live := filepath.Join(dir, tempPrefix+strconv.Itoa(os.Getppid())+"-bb.tmp")
	write(t, dead, []byte("partial"))
	write(t, live, []byte("in progress"))
	swept.Delete(dir)
	newStore(t, dir, nil)
	if _, err := os.Stat(dead); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a dead process's temporary file survived: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a running process's temporary file was removed: %v", err)
	}
}

func TestUsageIsCached(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a"), make([]byte, 10))
	s, _ := newStore(t, dir, nil)
	if files, n := s.Usage(); files != 1 || n != 10 {
		t.Fatalf("usage = %d, %d", files, n)
	}
	write(t, filepath.Join(dir, "b"), make([]byte, 5))
	// A scrape within usageMaxAge does not walk the tree again.
	if files, n := s.Usage(); files != 1 || n != 10 {
		t.Fatalf("usage recounted on a scrape: %d, %d", files, n)
	}
	// Once stale, the count is refreshed in the background: the stale
	// value is returned at once, the new one soon after.
	later := time.Now().Add(2 * usageMaxAge)
	if files, _ := s.usage.get(later, s.countUsage); files != 1 {
		t.Fatalf("a stale scrape waited for the walk: %d files", files)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.usage.mu.Lock()
		files, running := s.usage.files, s.usage.running
		s.usage.mu.Unlock()
		if files == 2 && !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage not refreshed: %d files", files)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCaddyfile(t *testing.T) {
	s := new(FileSystem)
	d := caddyfile.NewTestDispenser("store boot file_system {\n root /srv/tftp\n create_dirs\n file_mode 0640\n dir_mode 0750\n max_file_size 64MiB\n}")
	if err := s.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if s.Root != "/srv/tftp" || !s.CreateDirs || s.FileMode != "0640" || s.DirMode != "0750" || s.MaxFileSize != 64<<20 {
		t.Errorf("parsed %+v", s)
	}
	for input, want := range map[string]string{
		"store b file_system {\n}":                                "root is required",
		"store b file_system {\n root\n}":                         "wrong argument count",
		"store b file_system {\n root /a\n root /b\n}":            "root is already set",
		"store b file_system {\n root /a\n file_mode 999\n}":      "file_mode",
		"store b file_system {\n root /a\n dir_mode 01777\n}":     "dir_mode",
		"store b file_system {\n root /a\n max_file_size lots\n}": "bad size",
		"store b file_system {\n root /a\n bogus\n}":              "unrecognized file_system store directive: bogus",
	} {
		err := new(FileSystem).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", input, err, want)
		}
	}
	// Provision reports what only the disk can tell.
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for _, s := range []*FileSystem{{}, {Root: filepath.Join(t.TempDir(), "missing")}, {Root: t.TempDir(), FileMode: "rw"}} {
		if err := s.Provision(ctx); err == nil {
			t.Errorf("%+v provisioned", s)
		}
	}
}
