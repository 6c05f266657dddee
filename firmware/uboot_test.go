//go:build firmware

package firmware

import (
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// ubootScript is the boot script U-Boot's default boot (bootcmd_dhcp)
// fetches from the DHCP server's next-server as boot.scr.uimg and runs. It
// downloads big.bin twice, lockstep and with an 8-block window, and prints
// each CRC32. netretry=no makes a failed transfer end instead of retrying
// for ever; reset with -no-reboot makes QEMU exit.
const ubootScript = `echo FWTEST-1 boot.scr.uimg fetched from caddy-tftp
setenv netretry no
setenv tftpwindowsize 1
if tftpboot ${kernel_addr_r} big.bin; then echo FWTEST-WS1 size 0x${filesize}; crc32 ${kernel_addr_r} ${filesize}; else echo FWTEST-FAIL tftpboot windowsize 1; fi
setenv tftpwindowsize 8
if tftpboot ${kernel_addr_r} big.bin; then echo FWTEST-WS8 size 0x${filesize}; crc32 ${kernel_addr_r} ${filesize}; else echo FWTEST-FAIL tftpboot windowsize 8; fi
echo FWTEST-DONE
reset
`

var ubootFailure = regexp.MustCompile(`FWTEST-FAIL[^\n]*|TFTP error[^\n]*|Retry count exceeded[^\n]*|Wrong image format[^\n]*`)

// TestUBoot boots Debian's U-Boot for qemu-x86_64 and qemu_arm64 in a
// network namespace with our server on port 69. The default boot gets an
// address by DHCP and runs boot.scr.uimg from our server, which
// tftpboots a 5 MiB file with tftpwindowsize 1 and then 8 and checks each
// copy's CRC32 against the host's.
func TestUBoot(t *testing.T) {
	for _, arch := range []struct {
		name, mkimageArch string
		qemu              []string
		files             []string
	}{
		{
			name: "x86_64", mkimageArch: "x86",
			qemu: []string{"qemu-system-x86_64", "-accel", "tcg", "-nographic", "-m", "512", "-no-reboot",
				"-bios", ubootX86ROM,
				"-netdev", "tap,id=n0,ifname=" + labTap + ",script=no,downscript=no",
				"-device", "e1000,netdev=n0"},
			files: []string{ubootX86ROM},
		},
		{
			name: "arm64", mkimageArch: "arm64",
			qemu: []string{"qemu-system-aarch64", "-accel", "tcg", "-M", "virt", "-cpu", "cortex-a57", "-nographic", "-m", "512", "-no-reboot",
				"-bios", ubootArm64,
				"-netdev", "tap,id=n0,ifname=" + labTap + ",script=no,downscript=no",
				"-device", "virtio-net-pci,netdev=n0,romfile="},
			files: []string{ubootArm64},
		},
	} {
		t.Run(arch.name, func(t *testing.T) {
			requireTools(t, arch.qemu[0], "mkimage")
			requireFiles(t, arch.files...)
			dir := artifactDir(t)
			l := newLab(t, dir)

			cmdPath := filepath.Join(dir, "boot.cmd")
			scrPath := filepath.Join(dir, "boot.scr.uimg")
			if err := os.WriteFile(cmdPath, []byte(ubootScript), 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "mkimage", "-A", arch.mkimageArch, "-O", "linux", "-T", "script", "-C", "none", "-n", "caddy-tftp firmware test", "-d", cmdPath, scrPath)
			scr, err := os.ReadFile(scrPath)
			if err != nil {
				t.Fatal(err)
			}
			big := randomImage(t)
			hostCRC := fmt.Sprintf("%08x", crc32.ChecksumIEEE(big))
			files := map[string][]byte{"boot.scr.uimg": scr, "big.bin": big}
			seed(t, l.ns, l.tftpAddr(), files)
			seeded := l.server.seededMetrics(t, len(files))

			g := startGuest(t, dir, "uboot-"+arch.name, l.ns, 150*time.Second, arch.qemu...)
			g.expect(t, "boot.scr.uimg", regexp.MustCompile(`FWTEST-1 `), ubootFailure)
			crcLine := `\s+crc32 for [0-9a-f]+ \.\.\. [0-9a-f]+ ==> ([0-9a-f]{8})`
			m1, ws1At := g.expect(t, "CRC32 of the windowsize 1 copy", regexp.MustCompile(`FWTEST-WS1 size 0x([0-9a-f]+)`+crcLine), ubootFailure)
			m8, ws8At := g.expect(t, "CRC32 of the windowsize 8 copy", regexp.MustCompile(`FWTEST-WS8 size 0x([0-9a-f]+)`+crcLine), ubootFailure)
			_, doneAt := g.expect(t, "the end of the script", regexp.MustCompile(`FWTEST-DONE`), ubootFailure)
			g.finish(t, 20*time.Second)
			t.Logf("TIMING U-Boot %s: windowsize 1 copy checked %.2fs, windowsize 8 copy checked %.2fs (%.2fs for it), script done %.2fs",
				arch.name, ws1At.Seconds(), ws8At.Seconds(), (ws8At - ws1At).Seconds(), doneAt.Seconds())

			for _, c := range []struct {
				ws string
				m  []string
			}{{"1", m1}, {"8", m8}} {
				size, _ := strconv.ParseInt(c.m[1], 16, 64)
				if size != bigSize {
					t.Errorf("windowsize %s: U-Boot got %d bytes, want %d", c.ws, size, bigSize)
				}
				if c.m[2] != hostCRC {
					t.Errorf("windowsize %s: U-Boot crc32 %s, host CRC32 %s", c.ws, c.m[2], hostCRC)
				} else {
					t.Logf("windowsize %s: U-Boot crc32 %s = host CRC32 (hash/crc32 IEEE)", c.ws, c.m[2])
				}
			}

			reads := l.server.waitReads(t, "big.bin", 2, 5*time.Second)
			l.server.logNegotiated(t, "U-Boot "+arch.name)
			// Only the tftpwindowsize 8 run asks for windowsize; the
			// access log check below pins it to that read.
			opts, _ := l.server.firmwareMetrics(t, "U-Boot "+arch.name, seeded)
			for _, o := range []string{"blksize", "windowsize"} {
				if opts[o] == 0 {
					t.Errorf("metrics: no %s negotiated by U-Boot %s", o, arch.name)
				}
			}
			if r := l.server.reads(t, "boot.scr.uimg"); len(r) != 1 || r[0].Outcome != "ok" || r[0].Bytes != int64(len(scr)) {
				t.Errorf("access log reads of boot.scr.uimg: %+v, want one ok read of %d bytes", r, len(scr))
			}
			if len(reads) != 2 {
				t.Fatalf("access log has %d reads of big.bin, want 2", len(reads))
			}
			for i, want := range []int{1, 8} {
				e := reads[i]
				if e.Outcome != "ok" || e.Bytes != bigSize {
					t.Errorf("big.bin read %d: outcome %q, %d bytes, want ok and %d (%s)", i+1, e.Outcome, e.Bytes, bigSize, e.line)
				}
				if e.Windowsize != want {
					t.Errorf("big.bin read %d: windowsize %d, want %d (tftpwindowsize %d)", i+1, e.Windowsize, want, want)
				}
				if e.Blksize != 1468 {
					t.Errorf("big.bin read %d: blksize %d, want 1468 as U-Boot asks", i+1, e.Blksize)
				}
			}
			l.server.checkNoErrors(t)
		})
	}
}
