package filesystem

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/caddy-tftp/tftp/store"
)

// uploadBuffer is how much of an upload is gathered before each write to
// the temporary file, so small TFTP blocks do not cost a system call each.
const uploadBuffer = 64 << 10

// Create implements store.Store. The upload writes a temporary file in the
// target directory; Commit renames it over the old version.
func (s *FileSystem) Create(name string, opts store.CreateOptions) (store.Upload, error) {
	if hiddenName(name) {
		return nil, &fs.PathError{Op: "create", Path: name, Err: fs.ErrPermission}
	}
	if s.MaxFileSize > 0 && opts.Size > s.MaxFileSize {
		return nil, store.ErrTooLarge
	}
	v, release, err := s.root.acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	// A symbolic link in the way is replaced by the upload, like any file,
	// but only when it leads somewhere inside: a link out of the root is
	// refused for writes as for reads.
	if info, err := v.root.Lstat(name); err == nil && info.Mode()&fs.ModeSymlink != 0 {
		err := v.within(name, func(n string) error {
			_, err := v.root.Stat(n)
			return err
		})
		if refused(err) {
			return nil, s.openError("create", name, err)
		}
	}
	dirName, base := path.Split(name)
	dirName = path.Clean(dirName)
	var dir *os.Root
	err = v.within(dirName, func(d string) (err error) {
		dir, err = v.root.OpenRoot(d)
		if errors.Is(err, fs.ErrNotExist) && s.CreateDirs {
			if err = s.makeDirs(v.root, d); err == nil {
				dir, err = v.root.OpenRoot(d)
			}
		}
		return err
	})
	if err != nil {
		return nil, s.openError("create", name, err)
	}
	u, err := s.startUpload(dir, name, base, opts.Overwrite)
	if err != nil {
		_ = dir.Close()
		return nil, err
	}
	return u, nil
}

// makeDirs creates the missing directories of dir, each with the
// configured mode whatever the umask.
func (s *FileSystem) makeDirs(root *os.Root, dir string) error {
	cur := ""
	for seg := range splitPath(dir) {
		cur = path.Join(cur, seg)
		err := root.Mkdir(cur, s.dirMode)
		switch {
		case err == nil:
			if err := root.Chmod(cur, s.dirMode); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
		default:
			return err
		}
	}
	return nil
}

// startUpload checks the target in its directory and opens the temporary
// file.
func (s *FileSystem) startUpload(dir *os.Root, name, base string, overwrite bool) (*upload, error) {
	if info, err := dir.Lstat(base); err == nil {
		if info.IsDir() {
			return nil, &fs.PathError{Op: "create", Path: name, Err: fs.ErrPermission}
		}
		if !overwrite {
			return nil, &fs.PathError{Op: "create", Path: name, Err: fs.ErrExist}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, s.openError("create", name, err)
	}
	tmp := tempName()
	f, err := dir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, diskError("create", name, err)
	}
	return &upload{
		store: s, dir: dir, file: f, w: bufio.NewWriterSize(f, uploadBuffer),
		name: name, base: base, tmp: tmp, overwrite: overwrite,
	}, nil
}

// tempName names an upload's temporary file after the process, so a sweep
// can tell a crashed process's leftovers from uploads still running.
func tempName() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return tempPrefix + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:]) + ".tmp"
}

// upload is a file being written to a temporary file beside its target.
type upload struct {
	store     *FileSystem
	dir       *os.Root // the target's directory, held for the whole upload
	file      *os.File
	w         *bufio.Writer
	name      string // as the store knows it, for errors
	base      string // the target's name in dir
	tmp       string
	overwrite bool
	size      int64
	done      bool
}

func (u *upload) Write(p []byte) (int, error) {
	if u.done {
		return 0, fs.ErrClosed
	}
	if limit := u.store.MaxFileSize; limit > 0 && u.size+int64(len(p)) > limit {
		return 0, store.ErrTooLarge
	}
	n, err := u.w.Write(p)
	u.size += int64(n)
	if err != nil {
		return n, diskError("write", u.name, err)
	}
	return n, nil
}

// Commit writes the file to disk and puts it in place in one step.
func (u *upload) Commit() error {
	if u.done {
		return fs.ErrClosed
	}
	u.done = true
	err := u.finish()
	if err != nil {
		_ = u.file.Close()
		_ = u.dir.Remove(u.tmp)
	}
	_ = u.dir.Close()
	return err
}

// finish flushes, syncs and closes the temporary file, then renames (or,
// without overwrite, links) it to the target.
func (u *upload) finish() error {
	err := u.w.Flush()
	if err == nil {
		err = u.file.Chmod(u.store.fileMode)
	}
	if err == nil {
		err = u.file.Sync()
	}
	if cerr := u.file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return diskError("write", u.name, err)
	}
	if u.overwrite {
		err = u.dir.Rename(u.tmp, u.base)
	} else {
		// A link fails when the name exists, so a file created meanwhile
		// is never replaced.
		if err = u.dir.Link(u.tmp, u.base); err == nil {
			_ = u.dir.Remove(u.tmp)
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrExist) && !u.overwrite {
			return &fs.PathError{Op: "create", Path: u.name, Err: fs.ErrExist}
		}
		return fmt.Errorf("putting %s in place: %w", u.name, err)
	}
	// Make the rename itself durable.
	if d, err := u.dir.Open("."); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// Abort removes the temporary file; the previous version stays.
func (u *upload) Abort() {
	if u.done {
		return
	}
	u.done = true
	_ = u.file.Close()
	_ = u.dir.Remove(u.tmp)
	_ = u.dir.Close()
}

// diskError marks a full disk or quota as the store being full, which
// the server answers with TFTP error 3.
func diskError(op, name string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG) {
		return fmt.Errorf("%s %s: %v: %w", op, name, err, store.ErrStoreFull)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

// splitPath yields the segments of a cleaned relative path; "." has none.
func splitPath(p string) func(func(string) bool) {
	return func(yield func(string) bool) {
		if p == "." || p == "" {
			return
		}
		for seg := range strings.SplitSeq(p, "/") {
			if !yield(seg) {
				return
			}
		}
	}
}
