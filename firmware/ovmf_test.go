//go:build firmware

package firmware

import (
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// EDK2 reports PXE failures as PXE-Exx; after a failed IPv4 boot it moves
// on to IPv6 and the next boot option.
var ovmfFailure = regexp.MustCompile(`PXE-E[0-9A-F]{2}[^\n]*|Start PXE over IPv6|BdsDxe: failed to load[^\n]*|FWTEST-FAIL[^\n]*|Could not boot[^\n]*|ipxe\.org/[0-9a-f]{8}`)

// TestOVMFPXE boots OVMF with a virtio NIC and no option ROM, so EDK2's own
// PXE client (PxeBcDxe/Mtftp4) does DHCP and TFTP, in a network namespace
// with our server on port 69. EDK2 first asks for the size (tsize) and
// aborts with ERROR 8 after the OACK, then asks again for the data,
// offering windowsize 4. The boot file is Debian's ipxe.efi; it must run
// (its banner), get boot.ipxe by DHCP, chain second.ipxe and fetch 5 MiB.
// OVMF never powers off by itself, so QEMU is stopped by PID at the end.
func TestOVMFPXE(t *testing.T) {
	requireTools(t, "qemu-system-x86_64")
	requireFiles(t, ovmfFD, ipxeEFI)
	dir := artifactDir(t)
	l := newLab(t, dir)

	nbp, err := os.ReadFile(ipxeEFI)
	if err != nil {
		t.Fatal(err)
	}
	big := randomImage(t)
	files := map[string][]byte{
		"ipxe.efi": nbp,
		"boot.ipxe": []byte("#!ipxe\n" +
			"echo FWTEST-1 boot.ipxe fetched by ipxe.efi from caddy-tftp\n" +
			"chain tftp://${next-server}/second.ipxe\n"),
		"second.ipxe": []byte("#!ipxe\n" +
			"echo FWTEST-2 second.ipxe chained\n" +
			"imgfetch --name big tftp://${next-server}/big.bin\n" +
			"imgstat\n" +
			"echo FWTEST-DONE\n"),
		"big.bin": big,
	}
	seed(t, l.ns, l.tftpAddr(), files)
	seeded := l.server.seededMetrics(t, len(files))

	g := startGuest(t, dir, "ovmf", l.ns, 180*time.Second,
		"qemu-system-x86_64", "-accel", "tcg", "-nographic", "-m", "512", "-no-reboot",
		"-bios", ovmfFD,
		"-netdev", "tap,id=n0,ifname="+labTap+",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,romfile=,bootindex=1")
	g.expect(t, "EDK2 PXE start", regexp.MustCompile(`>>Start PXE over IPv4`), ovmfFailure)
	_, nbpAt := g.expect(t, "NBP download", regexp.MustCompile(`NBP file downloaded successfully`), ovmfFailure)
	_, bannerAt := g.expect(t, "the iPXE banner of ipxe.efi", regexp.MustCompile(`iPXE [^\n]*-- Open Source Network Boot Firmware`), ovmfFailure)
	g.expect(t, "boot.ipxe", regexp.MustCompile(`FWTEST-1 `), ovmfFailure)
	m, _ := g.expect(t, "imgstat of big.bin", regexp.MustCompile(`big : (\d+) bytes`), ovmfFailure)
	_, doneAt := g.expect(t, "the end of the script", regexp.MustCompile(`FWTEST-DONE`), ovmfFailure)
	g.finish(t, 0)
	t.Logf("TIMING UEFI (OVMF PXE): NBP downloaded %.2fs, ipxe.efi banner %.2fs, chain with 5 MiB done %.2fs", nbpAt.Seconds(), bannerAt.Seconds(), doneAt.Seconds())

	if n, _ := strconv.Atoi(m[1]); n != bigSize {
		t.Errorf("imgstat reports big.bin as %d bytes, want %d", n, bigSize)
	}

	l.server.waitReads(t, "big.bin", 1, 5*time.Second)
	l.server.logNegotiated(t, "OVMF+ipxe.efi")
	opts, scraped := l.server.firmwareMetrics(t, "OVMF+ipxe.efi", seeded)
	for _, o := range []string{"blksize", "windowsize"} {
		if opts[o] == 0 {
			t.Errorf("metrics: no %s negotiated by OVMF+ipxe.efi", o)
		}
	}
	// The tsize probe EDK2 aborts with ERROR 8 is declined options, not a
	// server-side error.
	if n := scraped.sum("caddy_tftp_transfers_total", "outcome", "options_declined"); n < 1 {
		t.Errorf("metrics: caddy_tftp_transfers_total{outcome=\"options_declined\"} is %g, want at least 1 (the tsize probe)", n)
	}
	for _, s := range scraped.samples("caddy_tftp_transfers_total", "outcome", "error") {
		t.Errorf("metrics: server-side transfer error counted: %s", s)
	}
	for _, s := range scraped.samples("caddy_tftp_errors_sent_total", "code", "0") {
		t.Errorf("metrics: ERROR 0 (undefined) sent: %s", s)
	}

	// EDK2's two requests for the NBP: the tsize probe it aborts with
	// ERROR 8 (logged at DEBUG as options_declined), then the transfer.
	reads := l.server.reads(t, "ipxe.efi")
	if len(reads) != 2 {
		t.Fatalf("access log has %d reads of ipxe.efi, want 2 (tsize probe + transfer)", len(reads))
	}
	probe, xfer := reads[0], reads[1]
	if probe.Outcome != "options_declined" || probe.Level != "debug" {
		t.Errorf("tsize probe: outcome %q at level %q (%s), want options_declined at debug", probe.Outcome, probe.Level, probe.line)
	}
	if got := option(probe.Options, "tsize"); got != strconv.Itoa(len(nbp)) {
		t.Errorf("tsize probe: OACK tsize=%q, want %d", got, len(nbp))
	}
	if probe.Bytes != 0 {
		t.Errorf("tsize probe: %d bytes sent, want 0", probe.Bytes)
	}
	if xfer.Outcome != "ok" || xfer.Bytes != int64(len(nbp)) {
		t.Errorf("ipxe.efi transfer: outcome %q, %d bytes, want ok and %d (%s)", xfer.Outcome, xfer.Bytes, len(nbp), xfer.line)
	}
	// EDK2 in ovmf 2022.11 offers windowsize=4 with blksize=1468.
	if xfer.Windowsize != 4 || xfer.Blksize != 1468 {
		t.Errorf("ipxe.efi transfer: blksize %d windowsize %d, want 1468 and 4 as EDK2 asks", xfer.Blksize, xfer.Windowsize)
	}
	for _, file := range []string{"boot.ipxe", "second.ipxe", "big.bin"} {
		r := l.server.reads(t, file)
		if len(r) != 1 || r[0].Outcome != "ok" {
			t.Errorf("access log reads of %s: %+v, want one with outcome ok", file, r)
		}
	}
	if r := l.server.reads(t, "big.bin"); len(r) == 1 && r[0].Bytes != bigSize {
		t.Errorf("big.bin: %d bytes sent, want %d", r[0].Bytes, bigSize)
	}
	l.server.checkNoErrors(t)
}
