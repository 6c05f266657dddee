package filesystem

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// maxLinkRewrites bounds how many absolute symbolic links one name may pass
// through, like the kernel's limit on nested links.
const maxLinkRewrites = 8

// rootDir is the served directory. An os.Root pins the directory it opened,
// so when the configured path comes to name another directory (a re-pointed
// symbolic link, a directory renamed and created again) it is opened again
// on the next request.
type rootDir struct {
	path string

	mu     sync.RWMutex
	root   *os.Root
	opened os.FileInfo // the directory root holds, for os.SameFile
	real   string      // path with its symbolic links resolved
}

// view is the root as one request sees it.
type view struct {
	root *os.Root
	path string // as configured
	real string // with its symbolic links resolved
}

func openRootDir(dir string) (*rootDir, error) {
	d := &rootDir{path: dir}
	if err := d.reopen(); err != nil {
		return nil, err
	}
	return d, nil
}

// reopen opens the directory the path names now. d.mu must be held for
// writing, or d not yet shared.
func (d *rootDir) reopen() error {
	root, err := os.OpenRoot(d.path)
	if err != nil {
		return err
	}
	info, err := root.Stat(".")
	if err != nil {
		_ = root.Close()
		return err
	}
	real, err := filepath.EvalSymlinks(d.path)
	if err != nil {
		real = d.path
	}
	if d.root != nil {
		_ = d.root.Close()
	}
	d.root, d.opened, d.real = root, info, real
	return nil
}

// acquire returns the root for one request, re-opened first if the path
// names another directory than the one held. The caller calls release when
// done with the view; files it opened stay usable after that.
func (d *rootDir) acquire() (v view, release func(), err error) {
	now, statErr := os.Stat(d.path)
	d.mu.RLock()
	if d.root == nil {
		d.mu.RUnlock()
		return view{}, nil, fs.ErrClosed
	}
	if statErr == nil && !os.SameFile(now, d.opened) {
		d.mu.RUnlock()
		d.mu.Lock()
		if d.root != nil && !os.SameFile(now, d.opened) {
			err = d.reopen()
		}
		d.mu.Unlock()
		if err != nil {
			return view{}, nil, fmt.Errorf("re-opening root %s: %w", d.path, err)
		}
		d.mu.RLock()
		if d.root == nil {
			d.mu.RUnlock()
			return view{}, nil, fs.ErrClosed
		}
	}
	// A path that is missing for a moment (mid-swap) keeps the directory
	// already open.
	return view{root: d.root, path: d.path, real: d.real}, d.mu.RUnlock, nil
}

func (d *rootDir) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.root == nil {
		return nil
	}
	err := d.root.Close()
	d.root = nil
	return err
}

// within runs op on name; when op fails because a symbolic link on the way
// is absolute, and its target lies under the root, op runs again with that
// link replaced by its target's path relative to the root. os.Root itself
// refuses every absolute link, even one pointing inside.
func (v view) within(name string, op func(name string) error) error {
	err := op(name)
	for range maxLinkRewrites {
		if err == nil || !escapes(err) {
			return err
		}
		next, ok := v.rewriteAbsoluteLink(name)
		if !ok {
			return err
		}
		name = next
		err = op(name)
	}
	return err
}

// rewriteAbsoluteLink finds the first component of name that is a symbolic
// link with an absolute target under the root, and returns name with that
// part replaced by the target's path relative to the root.
func (v view) rewriteAbsoluteLink(name string) (string, bool) {
	parts := strings.Split(name, "/")
	for i := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		info, err := v.root.Lstat(prefix)
		if err != nil {
			return "", false
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		target, err := v.root.Readlink(prefix)
		if err != nil {
			return "", false
		}
		if !filepath.IsAbs(target) {
			continue // os.Root follows relative links itself
		}
		rel, ok := v.relative(target)
		if !ok {
			return "", false
		}
		return path.Join(append([]string{rel}, parts[i+1:]...)...), true
	}
	return "", false
}

// relative returns an absolute path's place under the root, as configured
// or as resolved.
func (v view) relative(target string) (string, bool) {
	target = filepath.Clean(target)
	for _, base := range []string{v.path, v.real} {
		rel, err := filepath.Rel(base, target)
		if err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return filepath.ToSlash(rel), true
		}
	}
	return "", false
}

// escapes reports whether err is os.Root refusing a path that would leave
// it. The standard library exports no sentinel for this
// (golang/go#74640), so the message is matched.
func escapes(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// refused reports whether err means the name must not be served: it leads
// outside the root, or through a loop of symbolic links.
func refused(err error) bool {
	return escapes(err) || errors.Is(err, syscall.ELOOP)
}
