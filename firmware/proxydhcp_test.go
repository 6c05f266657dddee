//go:build firmware

package firmware

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// ipxeUndionly is the BIOS iPXE boot file of the ipxe package.
const ipxeUndionly = "/usr/lib/ipxe/undionly.kpxe"

// labMarker is what the lab's iPXE script prints once it has been fetched
// over HTTP.
const labMarker = "FWTEST-LAB"

// TestProxyDHCPLab boots real firmware in a lab run by one Caddy process
// from one Caddyfile, the README's (section "A netboot lab in one
// Caddyfile", with its directories moved and admin and log options added): proxy_dhcp names the boot server and file, tftp
// serves the boot files (a memory store preloaded from a directory), and
// an HTTP site serves the iPXE script. The site's DHCP server is dnsmasq
// handing out addresses only, with no boot options at all, so everything
// the firmware boots comes from proxy_dhcp's answers.
//
//   - bios: SeaBIOS with QEMU's iPXE option ROM. iPXE sends user class
//     "iPXE" and gets the script URL, fetches it over HTTP and runs it.
//   - uefi: OVMF with EDK2's own PXE client (virtio NIC, no option ROM).
//     Its offer names ipxe.efi with no option 43, so EDK2 confirms with a
//     boot server request on port 4011, then loads ipxe.efi over TFTP;
//     iPXE asks again, gets the script URL and runs the script.
//   - uefi-http: OVMF with PXE switched off, so it does UEFI HTTP boot
//     (vendor class HTTPClient, architecture 16): the offer names
//     ipxe.efi's URL on the HTTP site, then as above.
func TestProxyDHCPLab(t *testing.T) {
	requireTools(t, "qemu-system-x86_64", "curl")
	requireFiles(t, ovmfFD, ipxeEFI, ipxeUndionly, ipxeE1000ROM)
	dir := artifactDir(t)
	ns := newNamespace(t)
	runDnsmasq(t, ns, dir) // addresses only: no boot options

	bootDir, webDir := labFiles(t, dir)

	admin := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	caddyfile := readmeLabCaddyfile(t, admin, bootDir, webDir)
	srv := startCaddy(t, dir, ns, admin, caddyfile, "serving proxyDHCP", "serving TFTP")

	t.Run("bios", func(t *testing.T) {
		before := len(proxyAnswers(t, srv))
		g := startGuest(t, dir, "lab-bios", ns, 120*time.Second,
			"qemu-system-x86_64", "-accel", "tcg", "-nographic", "-m", "256", "-no-reboot",
			"-boot", "order=n,reboot-timeout=0",
			"-netdev", "tap,id=n0,ifname="+labTap+",script=no,downscript=no",
			"-device", "e1000,netdev=n0")
		_, took := g.expect(t, "the script from the HTTP site", regexp.MustCompile(labMarker+` [^\n]*platform pcbios`), ipxeFailure)
		g.finish(t, 20*time.Second)
		t.Logf("TIMING lab BIOS iPXE: QEMU start to %s %.2fs", labMarker, took.Seconds())

		answers := proxyAnswers(t, srv)[before:]
		requireAnswer(t, answers, "offer", "bios", "ipxe", "dhcp", "http://"+labAddr+"/boot.ipxe")
	})

	t.Run("uefi", func(t *testing.T) {
		before := len(proxyAnswers(t, srv))
		g := startGuest(t, dir, "lab-ovmf", ns, 180*time.Second,
			"qemu-system-x86_64", "-accel", "tcg", "-nographic", "-m", "512", "-no-reboot",
			"-bios", ovmfFD,
			"-netdev", "tap,id=n0,ifname="+labTap+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=n0,romfile=,bootindex=1")
		g.expect(t, "EDK2 PXE start", regexp.MustCompile(`>>Start PXE over IPv4`), ovmfFailure)
		_, nbpAt := g.expect(t, "NBP download", regexp.MustCompile(`NBP file downloaded successfully`), ovmfFailure)
		g.expect(t, "the iPXE banner of ipxe.efi", regexp.MustCompile(`iPXE [^\n]*-- Open Source Network Boot Firmware`), ovmfFailure)
		_, took := g.expect(t, "the script from the HTTP site", regexp.MustCompile(labMarker+` [^\n]*platform efi`), ovmfFailure)
		g.finish(t, 0)
		t.Logf("TIMING lab UEFI (OVMF PXE): NBP downloaded %.2fs, %s %.2fs", nbpAt.Seconds(), labMarker, took.Seconds())

		answers := proxyAnswers(t, srv)[before:]
		requireAnswer(t, answers, "offer", "efi-x64", "pxe", "dhcp", "ipxe.efi")
		requireAnswer(t, answers, "ack", "efi-x64", "pxe", "pxe", "ipxe.efi")
		requireAnswer(t, answers, "offer", "efi-x64", "ipxe", "dhcp", "http://"+labAddr+"/boot.ipxe")
		reads := srv.waitReads(t, "ipxe.efi", 1, 5*time.Second)
		ok := false
		for _, r := range reads {
			ok = ok || r.Outcome == "ok"
		}
		if !ok {
			t.Errorf("access log: no complete TFTP read of ipxe.efi: %+v", reads)
		}
	})

	t.Run("uefi-http", func(t *testing.T) {
		before := len(proxyAnswers(t, srv))
		// PXE off, so OVMF goes straight to UEFI HTTP boot.
		g := startGuest(t, dir, "lab-ovmf-http", ns, 180*time.Second,
			"qemu-system-x86_64", "-accel", "tcg", "-nographic", "-m", "512", "-no-reboot",
			"-bios", ovmfFD,
			"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
			"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n",
			"-netdev", "tap,id=n0,ifname="+labTap+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=n0,romfile=,bootindex=1")
		g.expect(t, "EDK2 HTTP boot start", regexp.MustCompile(`>>Start HTTP Boot over IPv4`), ovmfFailure)
		g.expect(t, "the iPXE banner of ipxe.efi", regexp.MustCompile(`iPXE [^\n]*-- Open Source Network Boot Firmware`), ovmfFailure)
		_, took := g.expect(t, "the script from the HTTP site", regexp.MustCompile(labMarker+` [^\n]*platform efi`), ovmfFailure)
		g.finish(t, 0)
		t.Logf("TIMING lab UEFI HTTP boot (OVMF): %s %.2fs", labMarker, took.Seconds())

		answers := proxyAnswers(t, srv)[before:]
		requireAnswer(t, answers, "offer", "http-x64", "http", "dhcp", "http://"+labAddr+"/ipxe.efi")
		requireAnswer(t, answers, "offer", "efi-x64", "ipxe", "dhcp", "http://"+labAddr+"/boot.ipxe")
	})

	// The answer counters agree with the answers logged.
	m := srv.scrape(t)
	logged := map[[3]string]float64{}
	for _, a := range proxyAnswers(t, srv) {
		logged[[3]string{a.Arch, a.Type, a.Client}]++
	}
	for k, n := range logged {
		if got := m.sum("caddy_proxy_dhcp_answers_total", "arch", k[0], "type", k[1], "client", k[2]); got != n {
			t.Errorf("metrics: caddy_proxy_dhcp_answers_total{arch=%q,type=%q,client=%q} is %g, the log has %g such answers", k[0], k[1], k[2], got, n)
		}
	}
	for _, name := range []string{"caddy_proxy_dhcp_answers_total", "caddy_proxy_dhcp_ignored_total"} {
		for _, s := range m.samples(name) {
			t.Logf("metrics: %s", s)
		}
	}
	srv.checkNoErrors(t)
}

// labFiles writes the lab's files under dir: the TFTP root with
// Debian's ipxe.efi and undionly.kpxe, and the web root with ipxe.efi (for
// HTTP boot) and an iPXE script that prints labMarker.
func labFiles(t *testing.T, dir string) (bootDir, webDir string) {
	t.Helper()
	bootDir = filepath.Join(dir, "tftp-root")
	webDir = filepath.Join(dir, "www")
	for _, d := range []string{bootDir, webDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, src := range map[string]string{"ipxe.efi": ipxeEFI, "undionly.kpxe": ipxeUndionly} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bootDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Only the HTTP site has the script: printing the marker proves it
	// came over HTTP.
	script := "#!ipxe\n" +
		"echo " + labMarker + " boot.ipxe over HTTP from caddy, platform ${platform}, file ${filename}\n" +
		"exit\n"
	if err := os.WriteFile(filepath.Join(webDir, "boot.ipxe"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	// UEFI HTTP boot clients load ipxe.efi from the HTTP site.
	nbp, err := os.ReadFile(ipxeEFI)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(webDir, "ipxe.efi"), nbp, 0o644); err != nil {
		t.Fatal(err)
	}
	return bootDir, webDir
}

// TestProxyDHCPInterfaceName runs the lab with proxy_dhcp listening on the
// tap device by name instead of by address: its answers must name the
// address the kernel picks on that interface, and iPXE (BIOS) must boot.
func TestProxyDHCPInterfaceName(t *testing.T) {
	requireTools(t, "qemu-system-x86_64", "curl")
	requireFiles(t, ipxeEFI, ipxeUndionly, ipxeE1000ROM)
	dir := artifactDir(t)
	ns := newNamespace(t)
	runDnsmasq(t, ns, dir)
	bootDir, webDir := labFiles(t, dir)
	admin := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	caddyfile := readmeLabCaddyfile(t, admin, bootDir, webDir)
	byAddr := "\tproxy_dhcp {\n\t\tlisten " + labAddr + "\n"
	if !strings.Contains(caddyfile, byAddr) {
		t.Fatalf("README lab Caddyfile has no %q:\n%s", byAddr, caddyfile)
	}
	caddyfile = strings.Replace(caddyfile, byAddr, "\tproxy_dhcp {\n\t\tlisten "+labTap+"\n", 1)
	srv := startCaddy(t, dir, ns, admin, caddyfile, "serving proxyDHCP", "serving TFTP")

	g := startGuest(t, dir, "lab-bios-ifname", ns, 120*time.Second,
		"qemu-system-x86_64", "-accel", "tcg", "-nographic", "-m", "256", "-no-reboot",
		"-boot", "order=n,reboot-timeout=0",
		"-netdev", "tap,id=n0,ifname="+labTap+",script=no,downscript=no",
		"-device", "e1000,netdev=n0")
	_, took := g.expect(t, "the script from the HTTP site", regexp.MustCompile(labMarker+` [^\n]*platform pcbios`), ipxeFailure)
	g.finish(t, 20*time.Second)
	t.Logf("TIMING lab BIOS iPXE, proxy_dhcp on %s by name: %s %.2fs", labTap, labMarker, took.Seconds())
	requireAnswer(t, proxyAnswers(t, srv), "offer", "bios", "ipxe", "dhcp", "http://"+labAddr+"/boot.ipxe")
	srv.checkNoErrors(t)
}

// proxyAnswer is one "answered boot client" line of proxy_dhcp's log.
type proxyAnswer struct {
	Type    string `json:"type"`
	Arch    string `json:"arch"`
	Client  string `json:"client"`
	Service string `json:"service"`
	File    string `json:"file"`
	Server  string `json:"server"`
	MAC     string `json:"mac"`
	To      string `json:"to"`
	line    string
}

// proxyAnswers returns proxy_dhcp's answers logged so far, in order.
func proxyAnswers(t *testing.T, s *tftpServer) []proxyAnswer {
	t.Helper()
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []proxyAnswer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var head struct {
			Logger string `json:"logger"`
			Msg    string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &head) != nil || head.Logger != "proxy_dhcp" || head.Msg != "answered boot client" {
			continue
		}
		var a proxyAnswer
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("bad log line %s: %v", sc.Text(), err)
		}
		a.line = sc.Text()
		out = append(out, a)
	}
	return out
}

// requireAnswer fails the test unless answers hold one of the given kind.
func requireAnswer(t *testing.T, answers []proxyAnswer, typ, arch, client, service, file string) {
	t.Helper()
	for _, a := range answers {
		if a.Type == typ && a.Arch == arch && a.Client == client && a.Service == service && a.File == file {
			if a.Server != labAddr {
				t.Errorf("answer names server %s, want %s: %s", a.Server, labAddr, a.line)
			}
			t.Logf("proxy_dhcp answered: %s", a.line)
			return
		}
	}
	var lines []string
	for _, a := range answers {
		lines = append(lines, a.line)
	}
	t.Errorf("no %s for a %s %s client on the %s port with file %s; answers:\n%s", typ, arch, client, service, file, lines)
}

// readmeLabSection is the README section whose Caddyfile the lab runs.
const readmeLabSection = "## A netboot lab in one Caddyfile\n"

// readmeLabCaddyfile returns the README's lab Caddyfile with the TFTP
// preload directory and the web root moved to bootDir and webDir, and the
// admin endpoint, persist_config and a JSON debug log added to its global
// options.
func readmeLabCaddyfile(t *testing.T, admin, bootDir, webDir string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	i := strings.Index(readme, readmeLabSection)
	if i < 0 {
		t.Fatalf("README.md has no section %q", strings.TrimSpace(readmeLabSection))
	}
	section := readme[i+len(readmeLabSection):]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	start := strings.Index(section, "```caddyfile\n")
	if start < 0 {
		t.Fatal("README lab section has no caddyfile block")
	}
	body := section[start+len("```caddyfile\n"):]
	body = body[:strings.Index(body, "```")]
	for _, sub := range [][2]string{{"/srv/tftp", bootDir}, {"/srv/www", webDir}, {"192.168.77.1", labAddr}} {
		if strings.Count(body, sub[0]) == 0 {
			t.Fatalf("README lab Caddyfile does not contain %s:\n%s", sub[0], body)
		}
		body = strings.ReplaceAll(body, sub[0], sub[1])
	}
	if !strings.HasPrefix(body, "{\n") {
		t.Fatalf("README lab Caddyfile does not start with a global options block:\n%s", body)
	}
	global := fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n\tlog {\n\t\toutput stderr\n\t\tformat json\n\t\tlevel DEBUG\n\t}\n", admin)
	return global + strings.TrimPrefix(body, "{\n")
}
