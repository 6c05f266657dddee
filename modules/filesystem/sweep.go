package filesystem

import (
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// swept records the roots this process has cleaned, so a config reload does
// not walk a large tree again.
var swept sync.Map

// sweepOnce removes, once per process and root, the temporary files of
// uploads that a crashed or killed process left behind. Files of this
// process (uploads running across a reload) and of processes still alive
// (another server sharing the directory) are kept.
func sweepOnce(dir string, logger *zap.Logger) {
	if _, done := swept.LoadOrStore(dir, true); done {
		return
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return
	}
	defer root.Close()
	removed := 0
	_ = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			if d != nil && d.IsDir() && name != "." {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tempPrefix) || ownerAlive(d.Name()) {
			return nil
		}
		if err := root.Remove(name); err == nil {
			removed++
		} else {
			logger.Warn("removing an interrupted upload's temporary file", zap.String("name", name), zap.Error(err))
		}
		return nil
	})
	if removed > 0 {
		logger.Info("removed temporary files of interrupted uploads", zap.String("root", dir), zap.Int("files", removed))
	}
}

// ownerAlive reports whether the process that named a temporary file is
// this one or is still running.
func ownerAlive(name string) bool {
	rest := strings.TrimPrefix(name, tempPrefix)
	pid, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, '-'), 0)])
	if err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	return processAlive(pid)
}
