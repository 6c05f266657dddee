package tftp

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// relCaddy builds ./cmd/caddy once per test run, for the tests that need
// real Caddy processes. The binary lives in TestMain's temporary directory.
var relCaddy = struct {
	once sync.Once
	bin  string
	err  error
	out  []byte
}{}

func relBuildCaddy(t testing.TB) string {
	t.Helper()
	relCaddy.once.Do(func() {
		dir, err := os.MkdirTemp(os.Getenv("XDG_DATA_HOME"), "bin-")
		if err != nil {
			relCaddy.err = err
			return
		}
		relCaddy.bin = filepath.Join(dir, "caddy")
		relCaddy.out, relCaddy.err = exec.Command("go", "build", "-o", relCaddy.bin, "./cmd/caddy").CombinedOutput()
	})
	if relCaddy.err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", relCaddy.err, relCaddy.out)
	}
	return relCaddy.bin
}
