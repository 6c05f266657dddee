//go:build firmware

package firmware

import (
	"crypto/rand"
	"fmt"
	"hash/crc32"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// bigSize is the size of the random image every firmware downloads.
const bigSize = 5 << 20

// randomImage returns bigSize random bytes.
func randomImage(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, bigSize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// iPXE reports errors with a link to its error page, e.g.
// "Connection timed out (http://ipxe.org/4c106035)".
var ipxeFailure = regexp.MustCompile(`FWTEST-FAIL[^\n]*|Could not boot[^\n]*|No more network devices|ipxe\.org/[0-9a-f]{8}`)

// TestIPXEBIOS boots SeaBIOS with QEMU's iPXE option ROM over user-mode
// networking (slirp). The DHCP boot file is a TFTP URL on 10.0.2.2, which
// slirp forwards to our server on 127.0.0.1 and an unprivileged port. The
// boot script chains a second script, which fetches a 5 MiB image and
// exits, so SeaBIOS runs out of boot devices and QEMU (-no-reboot) exits.
func TestIPXEBIOS(t *testing.T) {
	requireTools(t, "qemu-system-x86_64")
	requireFiles(t, ipxeE1000ROM)
	dir := artifactDir(t)

	port := freeUDPPort(t)
	srv := startServer(t, dir, "", fmt.Sprintf("udp4/127.0.0.1:%d", port))

	base := fmt.Sprintf("tftp://10.0.2.2:%d", port)
	big := randomImage(t)
	files := map[string][]byte{
		"boot.ipxe": []byte("#!ipxe\n" +
			"echo FWTEST-1 boot.ipxe fetched from caddy-tftp\n" +
			"chain " + base + "/second.ipxe\n"),
		"second.ipxe": []byte("#!ipxe\n" +
			"echo FWTEST-2 second.ipxe chained\n" +
			"imgfetch --name big " + base + "/big.bin\n" +
			"echo FWTEST-3 big.bin fetched\n" +
			"imgstat\n" +
			"echo FWTEST-DONE\n" +
			"exit\n"),
		"big.bin": big,
	}
	seed(t, "", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), files)
	seeded := srv.seededMetrics(t, len(files))

	g := startGuest(t, dir, "ipxe-bios", "", 120*time.Second,
		"qemu-system-x86_64", "-accel", "tcg", "-nographic", "-m", "256", "-no-reboot",
		"-boot", "order=n,reboot-timeout=0",
		"-netdev", "user,id=n0,bootfile="+base+"/boot.ipxe",
		"-device", "e1000,netdev=n0")
	g.expect(t, "boot.ipxe", regexp.MustCompile(`FWTEST-1 `), ipxeFailure)
	g.expect(t, "second.ipxe", regexp.MustCompile(`FWTEST-2 `), ipxeFailure)
	m, _ := g.expect(t, "imgstat of big.bin", regexp.MustCompile(`big : (\d+) bytes`), ipxeFailure)
	_, took := g.expect(t, "the end of the script", regexp.MustCompile(`FWTEST-DONE`), ipxeFailure)
	g.finish(t, 20*time.Second)
	t.Logf("TIMING iPXE (BIOS, slirp): QEMU start to FWTEST-DONE %.2fs", took.Seconds())

	if n, _ := strconv.Atoi(m[1]); n != bigSize {
		t.Errorf("imgstat reports big.bin as %d bytes, want %d", n, bigSize)
	}

	srv.waitReads(t, "big.bin", 1, 5*time.Second)
	srv.logNegotiated(t, "iPXE")
	if opts, _ := srv.firmwareMetrics(t, "iPXE", seeded); opts["blksize"] == 0 {
		t.Errorf("metrics: no blksize negotiated by iPXE")
	}
	for file, size := range map[string]int{"boot.ipxe": -1, "second.ipxe": -1, "big.bin": bigSize} {
		reads := srv.reads(t, file)
		if len(reads) != 1 {
			t.Errorf("access log has %d reads of %s, want 1", len(reads), file)
			continue
		}
		e := reads[0]
		if e.Outcome != "ok" {
			t.Errorf("read of %s: outcome %q (%s), want ok", file, e.Outcome, e.Error)
		}
		if size >= 0 && e.Bytes != int64(size) {
			t.Errorf("read of %s: %d bytes sent, want %d", file, e.Bytes, size)
		}
	}
	t.Logf("big.bin CRC32 on the host: %08x (iPXE has no checksum command; size checked by imgstat and the access log)", crc32.ChecksumIEEE(big))
	srv.checkNoErrors(t)
}
