package filesystem

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-tftp/tftp/store"
	"go.uber.org/zap"
)

// diskFile is an open file; reads are pread calls on the version that was
// opened, which the page cache shares among every reader of it.
type diskFile struct {
	*os.File
	size    int64
	modTime time.Time
}

func (f *diskFile) Size() int64        { return f.size }
func (f *diskFile) ModTime() time.Time { return f.modTime }

// Open implements store.Store.
func (s *FileSystem) Open(name string) (store.File, error) {
	if hiddenName(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	v, release, err := s.root.acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	var f *os.File
	err = v.within(name, func(n string) (err error) {
		// Non-blocking, so a FIFO in the tree cannot hang the open; it is
		// refused below like every file that is not regular.
		f, err = v.root.OpenFile(n, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		return err
	})
	if err != nil {
		return nil, s.openError("open", name, err)
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	if !info.Mode().IsRegular() {
		_ = f.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	return &diskFile{File: f, size: info.Size(), modTime: info.ModTime()}, nil
}

// Stat implements store.Store.
func (s *FileSystem) Stat(name string) (store.FileInfo, error) {
	f, err := s.Open(name)
	if err != nil {
		return store.FileInfo{}, err
	}
	defer f.Close()
	return store.FileInfo{Name: name, Size: f.Size(), ModTime: f.ModTime()}, nil
}

// List implements store.Store: every regular file under the root, and
// every symbolic link to one that stays inside. Directories reached only
// through a symbolic link are not descended into, so a link loop cannot
// make a listing endless.
func (s *FileSystem) List() ([]store.FileInfo, error) {
	v, release, err := s.root.acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	out := []store.FileInfo{}
	err = fs.WalkDir(v.root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			// An unreadable directory is left out, not the whole list.
			if d != nil && d.IsDir() && name != "." {
				return fs.SkipDir
			}
			return err
		case hiddenName(name) || d.IsDir():
			return nil
		case d.Type().IsRegular():
			info, err := d.Info()
			if err == nil {
				out = append(out, store.FileInfo{Name: name, Size: info.Size(), ModTime: info.ModTime()})
			}
		case d.Type()&fs.ModeSymlink != 0:
			var info fs.FileInfo
			err := v.within(name, func(n string) (err error) {
				info, err = v.root.Stat(n)
				return err
			})
			if err == nil && info.Mode().IsRegular() {
				out = append(out, store.FileInfo{Name: name, Size: info.Size(), ModTime: info.ModTime()})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Delete implements store.Store. A symbolic link is removed, not its
// target; a directory is refused.
func (s *FileSystem) Delete(name string) error {
	if hiddenName(name) {
		return &fs.PathError{Op: "delete", Path: name, Err: fs.ErrNotExist}
	}
	v, release, err := s.root.acquire()
	if err != nil {
		return err
	}
	defer release()
	dir, base := path.Split(name)
	err = v.within(path.Clean(dir), func(d string) error {
		info, err := v.root.Lstat(path.Join(d, base))
		if err != nil {
			return err
		}
		if info.IsDir() {
			return &fs.PathError{Op: "delete", Path: name, Err: fs.ErrPermission}
		}
		return v.root.Remove(path.Join(d, base))
	})
	if err != nil {
		return s.openError("delete", name, err)
	}
	return nil
}

// openError turns a failure to reach name into the error the server maps
// to a TFTP error: a name refused for leaving the root is logged for the
// operator and reads as access denied; one that runs into a file where a
// directory should be is simply not there.
func (s *FileSystem) openError(op, name string, err error) error {
	switch {
	case refused(err):
		s.logger.Warn("refused a name that leads outside the root or through a loop of symbolic links; "+
			"a link into the tree should be relative, or absolute under the root",
			zap.String("op", op), zap.String("name", name), zap.String("root", s.root.path), zap.Error(err))
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrPermission}
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ENAMETOOLONG):
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return err
}

// tempPrefix starts the name of every upload's temporary file.
const tempPrefix = ".tftp-upload-"

// hiddenName reports whether a name is, or lies under, an upload's
// temporary file, which is never served or listed.
func hiddenName(name string) bool {
	for seg := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(seg, tempPrefix) {
			return true
		}
	}
	return false
}
