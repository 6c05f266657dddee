package tftp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestMain keeps Caddy's autosave and data directories out of the user's
// home, and after all tests checks that no goroutine of this package and no
// socket outlived them.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caddy-tftp-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CONFIG_HOME", dir)
	os.Setenv("XDG_DATA_HOME", dir)
	baseSockets := countSockets()
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// A transfer the last tests left stalled may run until the default
		// 30s grace period after its config stopped; only what outlives
		// that is a leak.
		if err := awaitNoLeaks(baseSockets, 45*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "leak check:", err)
			code = 1
		} else {
			fmt.Println("leak check: no goroutine or socket left behind")
		}
	}
	os.Exit(code)
}

// awaitNoLeaks waits, up to the deadline, until no goroutine other than the
// caller runs code of this package, no shared listener or memory store is
// left, and no more sockets are open than at the start. Transfers end on
// their own timeouts, so leftovers get a bounded while to finish.
func awaitNoLeaks(baseSockets int, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		var problems []string
		if g := packageGoroutines(); len(g) > 0 {
			problems = append(problems, fmt.Sprintf("%d goroutines still running:\n%s", len(g), strings.Join(g, "\n\n")))
		}
		if n := poolSize(listeners); n > 0 {
			problems = append(problems, fmt.Sprintf("%d listening sockets still held", n))
		}
		if n := poolSize(memoryPool); n > 0 {
			problems = append(problems, fmt.Sprintf("%d memory stores still held", n))
		}
		if n := countSockets(); n > baseSockets {
			problems = append(problems, fmt.Sprintf("%d sockets open, %d at the start", n, baseSockets))
		}
		if len(problems) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(strings.Join(problems, "; "))
		}
		time.Sleep(100 * time.Millisecond) // polling for background exits; no signal exists for "all gone"
	}
}

// packageGoroutines returns the stacks of goroutines, other than this one,
// with a frame in this package.
func packageGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 {
			continue // the caller
		}
		if strings.Contains(g, "caddy-tftp/tftp.") {
			out = append(out, g)
		}
	}
	return out
}

func poolSize(p *caddy.UsagePool) int {
	n := 0
	p.Range(func(any, any) bool { n++; return true })
	return n
}

// idleSockets counts the transfer sockets the listeners keep for later
// transfers (sockpool.go): open, but not leaked.
func idleSockets() int {
	n := 0
	listeners.Range(func(_, v any) bool {
		p := &v.(*listener).sockets
		p.mu.Lock()
		for _, stack := range p.idle {
			n += len(stack)
		}
		p.mu.Unlock()
		return true
	})
	return n
}

// countSockets counts the process's open sockets, leaving out the idle
// transfer sockets the listeners keep.
func countSockets() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	n := -idleSockets()
	for _, e := range entries {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}

// adaptCaddyfile turns a Caddyfile into JSON config.
func adaptCaddyfile(t testing.TB, caddyfile string) []byte {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfg, warnings, err := adapter.Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		t.Logf("Caddyfile warning: %s", w.String())
	}
	return cfg
}

// tftpCaddyfile wraps the body of a tftp global block into a Caddyfile with
// the admin endpoint off, so tests never touch a developer's Caddy.
func tftpCaddyfile(body string) string {
	cf := "{\n\tadmin off\n\tpersist_config off\n\ttftp {\n" + body + "\n\t}\n}\n"
	return string(caddyfile.Format([]byte(cf)))
}

// startCaddy loads the config into the in-process Caddy; when it returns,
// the listeners are bound. Caddy is stopped when the test ends.
func startCaddy(t testing.TB, caddyfile string) {
	t.Helper()
	cfg := adaptCaddyfile(t, caddyfile)
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading config: %v\n%s", err, cfg)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
}

// stopCaddyAndAdmin stops the running config and closes the admin
// endpoint, which caddy.Stop leaves listening; only loading a config with
// another admin setting closes it.
func stopCaddyAndAdmin(t testing.TB) {
	t.Helper()
	if err := caddy.Stop(); err != nil {
		t.Errorf("stopping caddy: %v", err)
	}
	if err := caddy.Load([]byte(`{"admin":{"disabled":true,"config":{"persist":false}}}`), true); err != nil {
		t.Errorf("closing the admin endpoint: %v", err)
	}
	if err := caddy.Stop(); err != nil {
		t.Errorf("stopping caddy: %v", err)
	}
}

// reloadCaddy loads a new config into the running Caddy.
func reloadCaddy(t testing.TB, caddyfile string) error {
	t.Helper()
	return caddy.Load(adaptCaddyfile(t, caddyfile), true)
}

// freePort returns a UDP port that is free on both loopback addresses.
func freePort(t testing.TB) uint16 {
	t.Helper()
	for range 50 {
		c4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := c4.LocalAddr().(*net.UDPAddr).Port
		c6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback, Port: port})
		c4.Close()
		if err == nil {
			c6.Close()
			return uint16(port)
		}
	}
	t.Fatal("no free UDP port")
	return 0
}

// loopback4 and loopback6 address a port on each loopback address.
func loopback4(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
}

func loopback6(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("::1"), port)
}

// lines joins config lines for readability in tests.
func lines(l ...string) string { return strings.Join(l, "\n") }

// devCaddy is the dev binary, built once per test run by buildDevCaddy.
var devCaddy struct {
	once sync.Once
	path string
	err  error
}

// buildDevCaddy builds ./cmd/caddy once per test run, under the run's
// temporary directory (which TestMain removes), and returns its path.
func buildDevCaddy(t testing.TB) string {
	t.Helper()
	devCaddy.once.Do(func() {
		dir, err := os.MkdirTemp(os.Getenv("XDG_DATA_HOME"), "bin-")
		if err != nil {
			devCaddy.err = err
			return
		}
		// Readable by all, so a test can run the binary as another user.
		for _, d := range []string{os.Getenv("XDG_DATA_HOME"), dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				devCaddy.err = err
				return
			}
		}
		devCaddy.path = filepath.Join(dir, "caddy")
		out, err := exec.Command("go", "build", "-o", devCaddy.path, "./cmd/caddy").CombinedOutput()
		if err != nil {
			devCaddy.err = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	})
	if devCaddy.err != nil {
		t.Fatal(devCaddy.err)
	}
	return devCaddy.path
}
