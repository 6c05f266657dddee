//go:build firmware

package firmware

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The lab network inside each namespace. The namespace has no route out:
// only its lo and the tap device the guest is attached to.
const (
	labAddr  = "192.168.77.1"
	labCIDR  = labAddr + "/24"
	labAddr6 = "fd77::1/64" // only so that dnsmasq can send router advertisements
	labTap   = "tap0"
)

var labSeq atomic.Int32

// nsPrefix starts the name of every namespace the tests create; the PID of
// the test process follows it.
const nsPrefix = "caddytftp-fw-"

// removeStaleNamespaces deletes namespaces left by a test process that was
// killed before its cleanups ran (its children died with it).
func removeStaleNamespaces(t *testing.T) {
	t.Helper()
	out, err := runErr("ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], nsPrefix) {
			continue
		}
		name := fields[0]
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, nsPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // its test process is still running
		}
		if pids, _ := runErr("ip", "netns", "pids", name); strings.TrimSpace(pids) != "" {
			continue // something still runs in it
		}
		if _, err := runErr("ip", "netns", "del", name); err == nil {
			t.Logf("deleted stale network namespace %s", name)
		}
	}
}

// lab is a private network namespace with a tap device for one guest,
// dnsmasq answering DHCP on it (no DNS), and our TFTP server on port 69 of
// the tap address.
type lab struct {
	ns     string
	dir    string
	server *tftpServer
}

// tftpAddr is where the guest (and the seeding client) reach the server.
func (l *lab) tftpAddr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(labAddr), 69)
}

// newLab creates the namespace, starts dnsmasq and the server. Everything
// is stopped by PID and the namespace deleted when the test ends.
func newLab(t *testing.T, dir string) *lab {
	t.Helper()
	requireTools(t, "dnsmasq")
	ns := newNamespace(t)
	l := &lab{ns: ns, dir: dir}
	l.startDnsmasq(t)
	l.server = startServer(t, dir, ns, "udp4/"+labAddr+":69")
	return l
}

// newNamespace creates a network namespace with the lab's tap device and
// addresses; it is deleted when the test ends, after the processes
// started in it later have been stopped.
func newNamespace(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	requireTools(t, "ip")
	removeStaleNamespaces(t)
	ns := fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), labSeq.Add(1))
	// Registered first, so it runs after the processes in the namespace
	// have been stopped.
	t.Cleanup(func() {
		if out, err := runErr("ip", "netns", "del", ns); err != nil {
			t.Errorf("deleting network namespace %s: %v %s", ns, err, out)
		}
	})
	run(t, "ip", "netns", "add", ns)
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns, "tuntap", "add", "dev", labTap, "mode", "tap")
	run(t, "ip", "-n", ns, "addr", "add", labCIDR, "dev", labTap)
	run(t, "ip", "-n", ns, "addr", "add", labAddr6, "dev", labTap, "nodad")
	run(t, "ip", "-n", ns, "link", "set", labTap, "up")
	t.Logf("network namespace %s: %s on %s", ns, labCIDR, labTap)
	return ns
}

// startDnsmasq runs dnsmasq as a DHCP server only (--port=0). Firmware
// gets ipxe.efi as its boot file, iPXE (user class "iPXE") gets
// boot.ipxe; U-Boot's default boot asks for boot.scr.uimg by name. The
// router advertisements spare iPXE a long wait for IPv6 configuration.
func (l *lab) startDnsmasq(t *testing.T) {
	t.Helper()
	runDnsmasq(t, l.ns, l.dir,
		"--dhcp-userclass=set:ipxe,iPXE",
		"--dhcp-boot=tag:!ipxe,ipxe.efi,,"+labAddr,
		"--dhcp-boot=tag:ipxe,boot.ipxe,,"+labAddr,
	)
}

// runDnsmasq runs dnsmasq in ns as a DHCP server for the lab's range
// (--port=0: no DNS), with router advertisements and the extra flags, and
// returns once it serves. It logs to dnsmasq.log in dir.
func runDnsmasq(t *testing.T, ns, dir string, extra ...string) {
	t.Helper()
	requireTools(t, "dnsmasq")
	logPath := filepath.Join(dir, "dnsmasq.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	t.Cleanup(cancel)
	argv := append([]string{"ip", "netns", "exec", ns,
		"dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file",
		"--port=0", "--interface=" + labTap, "--bind-interfaces", "--no-ping",
		"--leasefile-ro", "--log-dhcp", "--log-facility=-",
		"--dhcp-range=192.168.77.100,192.168.77.150,255.255.255.0,1h",
		"--enable-ra", "--dhcp-range=::,constructor:" + labTap + ",ra-only",
	}, extra...)
	p := startProc(t, ctx, "dnsmasq", logFile, nil, argv...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		log, _ := os.ReadFile(logPath)
		if strings.Contains(string(log), "DHCP, IP range") {
			return
		}
		if p.exited() || time.Now().After(deadline) {
			p.stop()
			t.Fatalf("dnsmasq did not start (exited: %v, %v)\n--- dnsmasq log ---\n%s", p.exited(), p.err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
