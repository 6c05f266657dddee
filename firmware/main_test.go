//go:build firmware

// Package firmware boots real network-boot firmware under QEMU against the
// caddy-tftp server and checks that it fetches its boot files from the
// memory store: iPXE (legacy BIOS), EDK2's UEFI PXE client (OVMF) and
// U-Boot (x86_64 and arm64); and boot iPXE and OVMF (PXE and HTTP boot) in
// the README's netboot lab, where the proxy_dhcp app names the boot files.
//
// The tests build the development Caddy binary, run it as a separate
// process, seed its memory store with TFTP uploads, boot the firmware and
// check the guest's serial console, the server's access log and its
// /metrics. They need QEMU, the firmware packages, dnsmasq, mkimage and
// iproute2 (./firmware/install.sh installs them) and, except for the iPXE
// test, root for the network namespace and tap device. They install nothing
// and fail when something is missing. Run them with:
//
//	./firmware/install.sh
//	go test -tags firmware -count=1 -v ./firmware/
//
// The console logs, server logs and configs of each test are written under a
// temporary directory that is removed when every test passed; set
// FIRMWARE_KEEP=1 to keep it anyway.
package firmware

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// installHint is appended to every "missing tool" failure.
const installHint = "run ./firmware/install.sh (as root) to install the firmware test tools"

// artifactsRoot holds the binary, and one directory per test with its
// console logs, server log and configs.
var artifactsRoot string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caddy-tftp-firmware-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	artifactsRoot = dir
	code := m.Run()
	if code == 0 && os.Getenv("FIRMWARE_KEEP") == "" {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "firmware test artifacts (console and server logs) kept in %s\n", dir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildTook time.Duration
)

// caddyBinary builds the development Caddy binary (./cmd/caddy) once per
// test process and returns its path.
func caddyBinary(t *testing.T) string {
	t.Helper()
	requireTools(t, "go")
	built := false
	buildOnce.Do(func() {
		built = true
		start := time.Now()
		binPath = filepath.Join(artifactsRoot, "caddy")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/caddy")
		cmd.Dir = ".." // the test runs in <repo>/firmware
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
		buildTook = time.Since(start)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if built {
		t.Logf("built the dev binary (go build ./cmd/caddy) in %.1fs", buildTook.Seconds())
	}
	return binPath
}

// artifactDir returns a directory for this test's logs and files.
func artifactDir(t *testing.T) string {
	t.Helper()
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	dir := filepath.Join(artifactsRoot, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// requireTools fails the test when a command is not on PATH.
func requireTools(t *testing.T, cmds ...string) {
	t.Helper()
	var missing []string
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing required commands: %s; %s", strings.Join(missing, ", "), installHint)
	}
}

// requireFiles fails the test when a firmware file is not installed.
func requireFiles(t *testing.T, files ...string) {
	t.Helper()
	var missing []string
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing required files: %s; %s", strings.Join(missing, ", "), installHint)
	}
}

// requireRoot fails the test when it cannot create network namespaces and
// tap devices.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test creates a network namespace and a tap device and needs root; run it as root (e.g. sudo -E go test -tags firmware ./firmware/)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Fatalf("/dev/net/tun is missing: %v", err)
	}
}

// Firmware files from the Debian packages.
const (
	ipxeE1000ROM = "/usr/lib/ipxe/qemu/efi-e1000.rom" // ipxe-qemu
	ipxeEFI      = "/usr/lib/ipxe/ipxe.efi"           // ipxe
	ovmfFD       = "/usr/share/ovmf/OVMF.fd"          // ovmf
	ubootX86ROM  = "/usr/lib/u-boot/qemu-x86_64/u-boot.rom"
	ubootArm64   = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"
)
