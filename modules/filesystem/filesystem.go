// Package filesystem is the tftp.stores.file_system store module: a
// directory on disk served as it is, live, and confined to that directory.
package filesystem

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/caddy-tftp/tftp/store"
	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(new(FileSystem))
}

// Defaults of the file_system store.
const (
	defaultFileMode = 0o644
	defaultDirMode  = 0o755
	// usageMaxAge is how old the file count and byte total reported to
	// metrics and the admin API may be: a large tree is walked at most this
	// often, in the background, never on a scrape.
	usageMaxAge = time.Minute
)

// FileSystem serves a directory on disk as it is: a file added, replaced or
// deleted on disk is served or refused on the very next request, with no
// reload. Every request is confined to the directory by the kernel (Go's
// os.Root): ".." and absolute names never leave it, and a symbolic link is
// followed only while it stays inside. A relative link inside the tree works
// as usual; an absolute link works when its target lies under the root (as
// configured, or with its own links resolved), and any other link is
// refused with TFTP error 2 and a log line naming it.
//
// When the root itself is a symbolic link that a deploy re-points (for
// example /srv/tftp -> releases/2026-12), or the directory is renamed and
// created again, the next request is served from the new directory.
//
// Uploads go to a temporary file in the target directory (named
// .tftp-upload-*, invisible to reads and listings) and are renamed over the
// old version only after the last block, once written to disk (fsync), so
// readers and a crash only ever see the previous version or the new one
// whole. A reader keeps the version it opened, even while an upload or a
// `mv` on disk replaces it. Temporary files left by a crashed process are
// removed when the store starts.
type FileSystem struct {
	// Root is the directory to serve. It must exist when the config loads.
	// A relative path is taken from Caddy's working directory, and
	// placeholders such as {env.TFTP_ROOT} are expanded. Required.
	Root string `json:"root,omitempty"`

	// CreateDirs lets an upload create the directories missing on its
	// path. Default: false (an upload into a missing directory is refused
	// with TFTP error 1).
	CreateDirs bool `json:"create_dirs,omitempty"`

	// FileMode is the permission of uploaded files, in octal, applied
	// whatever the process umask. Default: "0644".
	FileMode string `json:"file_mode,omitempty"`

	// DirMode is the permission of directories created by uploads, in
	// octal, applied whatever the process umask. Default: "0755".
	DirMode string `json:"dir_mode,omitempty"`

	// MaxFileSize is the largest file an upload may write, in bytes;
	// uploads over it are refused with TFTP error 3, as are uploads that
	// find the disk full. Default: 0 (no limit other than the disk).
	MaxFileSize int64 `json:"max_file_size,omitempty"`

	root     *rootDir
	fileMode os.FileMode
	dirMode  os.FileMode
	logger   *zap.Logger
	usage    usageCache
}

// CaddyModule returns the Caddy module information.
func (*FileSystem) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tftp.stores.file_system",
		New: func() caddy.Module { return new(FileSystem) },
	}
}

// Provision opens the root, checks the settings and removes temporary
// files that a crashed process left behind.
func (s *FileSystem) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	if s.Root == "" {
		return fmt.Errorf("root: the directory to serve is required")
	}
	var err error
	if s.fileMode, err = parseMode(s.FileMode, defaultFileMode); err != nil {
		return fmt.Errorf("file_mode: %w", err)
	}
	if s.dirMode, err = parseMode(s.DirMode, defaultDirMode); err != nil {
		return fmt.Errorf("dir_mode: %w", err)
	}
	if s.MaxFileSize < 0 {
		return fmt.Errorf("max_file_size must not be negative")
	}
	dir, err := filepath.Abs(caddy.NewReplacer().ReplaceKnown(s.Root, ""))
	if err != nil {
		return fmt.Errorf("root %s: %w", s.Root, err)
	}
	if s.root, err = openRootDir(dir); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	sweepOnce(dir, s.logger)
	return nil
}

// Cleanup closes the root. Files being read and uploads in progress hold
// descriptors of their own and finish normally.
func (s *FileSystem) Cleanup() error {
	if s.root != nil {
		return s.root.close()
	}
	return nil
}

// parseMode reads an octal permission such as "0644".
func parseMode(v string, def os.FileMode) (os.FileMode, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("%q is not an octal permission from 0 to 0777", v)
	}
	return os.FileMode(n), nil
}

// Usage reports the files under the root and their bytes, as last counted.
// The count is at most usageMaxAge old; a stale one is refreshed in the
// background, so a metrics scrape never waits for a walk of a large tree.
func (s *FileSystem) Usage() (files int, bytes int64) {
	return s.usage.get(time.Now(), s.countUsage)
}

// countUsage walks the tree.
func (s *FileSystem) countUsage() (files int, bytes int64) {
	list, err := s.List()
	if err != nil {
		return 0, 0
	}
	for _, f := range list {
		bytes += f.Size
	}
	return len(list), bytes
}

// Limits reports no capacity limit (the disk is the limit) and the largest
// upload.
func (s *FileSystem) Limits() (maxBytes, maxFileSize int64) {
	return 0, s.MaxFileSize
}

// usageCache keeps the last count of a store's files.
type usageCache struct {
	mu      sync.Mutex
	counted time.Time
	running bool
	files   int
	bytes   int64
}

// get returns the last count, counting synchronously the first time and in
// the background when the count is older than maxAge.
func (u *usageCache) get(now time.Time, count func() (int, int64)) (int, int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.counted.IsZero() && !u.running:
		u.files, u.bytes = count()
		u.counted = now
	case now.Sub(u.counted) > usageMaxAge && !u.running:
		u.running = true
		go func() {
			files, bytes := count()
			u.mu.Lock()
			u.files, u.bytes, u.counted, u.running = files, bytes, time.Now(), false
			u.mu.Unlock()
		}()
	}
	return u.files, u.bytes
}

// Interface guards
var (
	_ store.Store         = (*FileSystem)(nil)
	_ store.UsageReporter = (*FileSystem)(nil)
	_ caddy.Provisioner   = (*FileSystem)(nil)
	_ caddy.CleanerUpper  = (*FileSystem)(nil)
)
