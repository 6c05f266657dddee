package tftp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	// The netboot lab's HTTP site serves its iPXE script with file_server.
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
)

// The README's examples are what these tests run: every caddyfile block is
// adapted (and validated when it is a whole config), and the worked examples
// (Quick start, Admin API, Security, Rewrites, Single-port mode, Metrics)
// run against an in-process Caddy with the admin API on a loopback port,
// executing the README's own command lines after substituting only ports
// and file paths.

// readmeBlock is one fenced code block of README.md.
type readmeBlock struct {
	lang    string
	line    int    // README line of the opening fence
	section string // the "## " heading the block is under
	body    string
}

func readREADME(t testing.TB) (string, []readmeBlock) {
	t.Helper()
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var (
		blocks  []readmeBlock
		cur     *readmeBlock
		section string
	)
	for i, l := range strings.Split(string(raw), "\n") {
		switch {
		case cur != nil && strings.TrimSpace(l) == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.body += l + "\n"
		case strings.HasPrefix(l, "```"):
			cur = &readmeBlock{lang: strings.TrimSpace(strings.TrimPrefix(l, "```")), line: i + 1, section: section}
		case strings.HasPrefix(l, "## "):
			section = strings.TrimSpace(strings.TrimPrefix(l, "## "))
		}
	}
	if cur != nil {
		t.Fatalf("README.md:%d: unterminated code block", cur.line)
	}
	return string(raw), blocks
}

// readmeBlocks returns the blocks of one language under one "## " section.
func readmeBlocks(t testing.TB, lang, section string) []readmeBlock {
	t.Helper()
	_, all := readREADME(t)
	var out []readmeBlock
	for _, b := range all {
		if b.lang == lang && (section == "" || b.section == section) {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		t.Fatalf("README.md has no %s block under %q", lang, section)
	}
	return out
}

// readmeCommands splits a sh block into command lines, joining lines
// continued with a backslash.
func readmeCommands(b readmeBlock) []string {
	var out []string
	cont := ""
	for _, l := range strings.Split(b.body, "\n") {
		if strings.HasSuffix(l, "\\") {
			cont += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		l = cont + l
		cont = ""
		if strings.TrimSpace(l) != "" {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// readmeCommand returns the one command line of the section's sh blocks
// that starts with prefix (and contains every string in also).
func readmeCommand(t testing.TB, section, prefix string, also ...string) (string, readmeBlock) {
	t.Helper()
	var found []string
	var where readmeBlock
	for _, b := range readmeBlocks(t, "sh", section) {
	next:
		for _, c := range readmeCommands(b) {
			if !strings.HasPrefix(c, prefix) {
				continue
			}
			for _, a := range also {
				if !strings.Contains(c, a) {
					continue next
				}
			}
			found = append(found, c)
			where = b
		}
	}
	if len(found) != 1 {
		t.Fatalf("README section %q: want one command starting with %q containing %q, found %q", section, prefix, also, found)
	}
	return found[0], where
}

// substitute applies replacements in order and fails if one of them does
// not occur, so a README change cannot silently skip a substitution.
func substitute(t testing.TB, where string, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("%s: %q does not contain %q, which the test substitutes", where, s, pairs[i])
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// runReadmeCommand runs one README command line with sh in dir, with a
// timeout, and returns its standard output. Proxies and the user's .curlrc are kept
// out of it.
func runReadmeCommand(t testing.TB, where, dir, command string) string {
	t.Helper()
	for _, leftover := range []string{"localhost:2019", ":6969", ":69/"} {
		if strings.Contains(command, leftover) {
			t.Fatalf("%s: %q still names %s after substitution", where, command, leftover)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "CURL_HOME="+dir, "NO_PROXY=*", "no_proxy=*")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %s: %v\n%s%s", where, command, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String()
}

// readmeSubstitutions are the placeholders and machine paths in the README's
// caddyfile blocks and what the test writes instead. Placeholders such as
// <duration> (in the syntax summaries) get a valid value; absolute paths
// that do not exist on a test machine (preload directories, storage
// directories, log files) are moved into a temporary directory so that
// Validate, which provisions modules, does not fail or write outside it.
func readmeSubstitutions(t testing.TB) []string {
	dir := t.TempDir()
	srv := filepath.Join(dir, "srv-tftp")
	if err := os.MkdirAll(filepath.Join(srv, "pxelinux.cfg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(srv, "pxelinux.cfg", "default"), []byte("DEFAULT local\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{
		// machine paths
		"/srv/tftp", srv,
		"/mnt/shared/tftp", filepath.Join(dir, "shared"),
		"/var/log/caddy/tftp-access.log", filepath.Join(dir, "tftp-access.log"),
		// placeholders of the syntax summaries
		"<duration>", "2s",
		"<addresses...>", "127.0.0.1:6969",
		"<name> [<module>]", "x",
		"<name>", "x",
		"<count>", "3",
		"<bytes>", "1468",
		"<blocks>", "16",
		"<size>", "1MiB",
		// the proxy_dhcp syntax summary
		"<addresses or interfaces...>", "127.0.0.1 lo",
		"<architecture> <file or URL>", "efi-x64 ipxe.efi",
		"<file or URL>", "http://127.0.0.1/boot.ipxe",
		"<ip>", "127.0.0.1",
		"<dhcp port>", "1067",
		"<pxe port>", "14011",
	}
}

func applySubstitutions(body string, pairs []string) string {
	body = strings.NewReplacer(pairs...).Replace(body)
	// "..." stands for "more directives" in the syntax summaries.
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.TrimSpace(l) != "..." {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func adaptReadme(t testing.TB, body string) ([]byte, error) {
	t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(body), map[string]any{"filename": "README.md"})
	for _, w := range warnings {
		t.Logf("warning: %s", w.String())
	}
	return cfg, err
}

func validateJSON(cfgJSON []byte) error {
	var cfg caddy.Config
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return err
	}
	return caddy.Validate(&cfg)
}

// TestReadmeCaddyfileBlocks requires every caddyfile block of the README
// to be a whole Caddyfile, which a reader can paste and run: it must adapt
// and validate (provision without binding). Syntax summaries are fenced as
// text, not caddyfile.
func TestReadmeCaddyfileBlocks(t *testing.T) {
	_, all := readREADME(t)
	n := 0
	for _, b := range all {
		if b.lang != "caddyfile" {
			continue
		}
		n++
		t.Run(fmt.Sprintf("line_%d", b.line), func(t *testing.T) {
			body := applySubstitutions(b.body, readmeSubstitutions(t))
			if !strings.HasPrefix(strings.TrimSpace(body), "{") {
				t.Fatalf("README.md:%d: a caddyfile block must be a whole Caddyfile, starting with the global options block:\n%s", b.line, b.body)
			}
			cfg, err := adaptReadme(t, body)
			if err != nil {
				t.Fatalf("README.md:%d: caddyfile block does not adapt: %v\n%s", b.line, err, b.body)
			}
			if err := validateJSON(cfg); err != nil {
				t.Fatalf("README.md:%d: caddyfile block does not validate: %v\n%s", b.line, err, cfg)
			}
		})
	}
	if n == 0 {
		t.Fatal("README.md has no caddyfile blocks")
	}
}

// TestReadmeJSONConfig validates the README's JSON configs (blocks with
// "apps"; the access log line is not one).
func TestReadmeJSONConfig(t *testing.T) {
	found := false
	for _, b := range readmeBlocks(t, "json", "") {
		var m map[string]json.RawMessage
		if json.Unmarshal([]byte(b.body), &m) != nil || m["apps"] == nil {
			continue
		}
		found = true
		t.Run(fmt.Sprintf("line_%d", b.line), func(t *testing.T) {
			body := applySubstitutions(b.body, readmeSubstitutions(t))
			if err := validateJSON([]byte(body)); err != nil {
				t.Fatalf("README.md:%d: JSON config does not validate: %v", b.line, err)
			}
		})
	}
	if !found {
		t.Fatal("README.md has no JSON config")
	}
}

// readmeInstance is an in-process Caddy running a README config with the
// admin API on a free loopback TCP port and the TFTP server on a free
// loopback UDP port.
type readmeInstance struct {
	t     testing.TB
	admin string // 127.0.0.1:port
	port  uint16 // TFTP
	http  *http.Client
}

var readmeListen = regexp.MustCompile(`listen :(69|6969)\n`)

// startReadmeCaddy loads a README Caddyfile (a whole one, or a "tftp {"
// block): the admin API goes to a free loopback port with config
// persistence off, and its one "listen :69" or "listen :6969" moves to
// 127.0.0.1 and a free port. Nothing else is changed.
func startReadmeCaddy(t testing.TB, where, caddyfileText string) *readmeInstance {
	t.Helper()
	r := &readmeInstance{
		t:     t,
		admin: "127.0.0.1:" + strconv.Itoa(adminFreeTCPPort(t)),
		port:  freePort(t),
		http:  &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second},
	}
	if got := len(readmeListen.FindAllString(caddyfileText, -1)); got != 1 {
		t.Fatalf("%s: want one `listen :69` or `listen :6969` line to move to a test port, found %d\n%s", where, got, caddyfileText)
	}
	body := readmeListen.ReplaceAllString(caddyfileText, fmt.Sprintf("listen 127.0.0.1:%d\n", r.port))
	head := fmt.Sprintf("\tadmin %s\n\tpersist_config off\n", r.admin)
	trimmed := strings.TrimSpace(regexp.MustCompile(`(?m)\A(\s*#.*\n)*`).ReplaceAllString(body, ""))
	switch {
	case strings.HasPrefix(trimmed, "{"):
		// examples/Caddyfile sets its own admin address; the test's replaces it.
		trimmed = regexp.MustCompile(`(?m)^\tadmin .*\n`).ReplaceAllString(trimmed, "")
		body = "{\n" + head + strings.TrimPrefix(trimmed, "{") + "\n"
	case strings.HasPrefix(trimmed, "tftp"):
		body = "{\n" + head + body + "}\n"
	default:
		t.Fatalf("%s: not a Caddyfile or tftp block:\n%s", where, caddyfileText)
	}
	cfg, err := adaptReadme(t, string(caddyfile.Format([]byte(body))))
	if err != nil {
		t.Fatalf("%s: adapting: %v\n%s", where, err, body)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("%s: loading: %v\n%s", where, err, cfg)
	}
	t.Cleanup(func() {
		r.http.CloseIdleConnections()
		stopCaddyAndAdmin(t)
	})
	return r
}

func (r *readmeInstance) server() netip.AddrPort { return loopback4(r.port) }

func (r *readmeInstance) do(method, path string, body []byte) (int, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(method, "http://"+r.admin+path, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// putFile uploads through the admin API.
func (r *readmeInstance) putFile(store, name string, data []byte) {
	r.t.Helper()
	if status, b := r.do(http.MethodPut, "/tftp/stores/"+store+"/files/"+name, data); status/100 != 2 {
		r.t.Fatalf("PUT %s/%s: status %d: %s", store, name, status, b)
	}
}

// substitutePorts moves a README command line to the test's ports.
func (r *readmeInstance) substitutePorts(t testing.TB, where, command string) string {
	t.Helper()
	if !strings.Contains(command, "localhost:2019") && !strings.Contains(command, "127.0.0.1:6969") {
		t.Fatalf("%s: %q names neither localhost:2019 nor 127.0.0.1:6969", where, command)
	}
	command = strings.ReplaceAll(command, "localhost:2019", r.admin)
	return strings.ReplaceAll(command, "127.0.0.1:6969", fmt.Sprintf("127.0.0.1:%d", r.port))
}

// quickStartCaddyfile is examples/Caddyfile, which the Quick start runs.
func quickStartCaddyfile(t testing.TB) string {
	t.Helper()
	cmd, _ := readmeCommand(t, "Quick start", "go run ./cmd/caddy run")
	path := strings.Fields(cmd)[len(strings.Fields(cmd))-1]
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("Quick start config %s: %v", path, err)
	}
	return string(b)
}

// TestReadmeQuickStart runs the Quick start's curl upload and download
// against examples/Caddyfile.
func TestReadmeQuickStart(t *testing.T) {
	r := startReadmeCaddy(t, "examples/Caddyfile", quickStartCaddyfile(t))
	dir := t.TempDir()
	data := randomBytes(t, 3000)
	up, b := readmeCommand(t, "Quick start", "curl -T")
	down, _ := readmeCommand(t, "Quick start", "curl -o")
	where := fmt.Sprintf("README.md:%d", b.line)
	// The upload line sends ./file and the download writes ./copy.
	if err := os.WriteFile(filepath.Join(dir, "file"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	runReadmeCommand(t, where, dir, r.substitutePorts(t, where, up))
	runReadmeCommand(t, where, dir, r.substitutePorts(t, where, down))
	requireSameBytes(t, "Quick start download", readLocal(t, filepath.Join(dir, "copy")), data)
}

// TestReadmeAdminAPI runs the "Admin API" example: upload firmware over
// HTTP, fetch it over TFTP, list the store.
func TestReadmeAdminAPI(t *testing.T) {
	r := startReadmeCaddy(t, "examples/Caddyfile", quickStartCaddyfile(t))
	blocks := readmeBlocks(t, "sh", "Admin API")
	if len(blocks) != 1 {
		t.Fatalf("want one sh block under Admin API, found %d", len(blocks))
	}
	where := fmt.Sprintf("README.md:%d", blocks[0].line)
	dir := t.TempDir()
	for _, d := range []string{"up", "down"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fw := randomBytes(t, 70000)
	if err := os.WriteFile(filepath.Join(dir, "up", "fw.bin"), fw, 0o644); err != nil {
		t.Fatal(err)
	}
	commands := readmeCommands(blocks[0])
	if len(commands) != 3 {
		t.Fatalf("%s: want 3 commands (upload, fetch, list), got %q", where, commands)
	}
	var listing string
	for i, c := range commands {
		c = r.substitutePorts(t, where, c)
		switch i {
		case 0:
			c = substitute(t, where, c, "@fw.bin", "@"+filepath.Join(dir, "up", "fw.bin"))
		case 1:
			c = substitute(t, where, c, "-o fw.bin", "-o "+filepath.Join(dir, "down", "fw.bin"))
		}
		out := runReadmeCommand(t, where, dir, c)
		if i == 2 {
			listing = out
		}
	}
	requireSameBytes(t, "firmware fetched over TFTP", readLocal(t, filepath.Join(dir, "down", "fw.bin")), fw)
	var files []adminFile
	if err := json.Unmarshal([]byte(listing), &files); err != nil {
		t.Fatalf("%s: file listing %q: %v", where, listing, err)
	}
	if len(files) != 1 || files[0].Name != "firmware/fw.bin" || files[0].Size != int64(len(fw)) || files[0].SHA256 != sha256Hex(fw) {
		t.Fatalf("%s: listing %s, want firmware/fw.bin with %d bytes and its sha256", where, listing, len(fw))
	}
}

// TestReadmeSwitchBackups runs the Security section's backup example:
// uploads only from 10.99.0.0/24 (so loopback is refused with error 2),
// reads from private ranges (which include loopback), files in the
// "backups" store.
func TestReadmeSwitchBackups(t *testing.T) {
	blocks := readmeBlocks(t, "caddyfile", "Security")
	if len(blocks) != 1 {
		t.Fatalf("want one caddyfile block under Security, found %d", len(blocks))
	}
	b := blocks[0]
	where := fmt.Sprintf("README.md:%d", b.line)
	for _, want := range []string{"allow_write 10.99.0.0/24", "allow_read private_ranges", "store backups"} {
		if !strings.Contains(b.body, want) {
			t.Fatalf("%s: the example no longer has %q", where, want)
		}
	}
	r := startReadmeCaddy(t, where, b.body)
	c := &testClient{server: r.server()}
	err := c.put("sw1.cfg", []byte("hostname sw1\n"))
	if errorCode(err) != int(ErrCodeAccessViolated) {
		t.Fatalf("%s: upload from 127.0.0.1 returned %v, want error 2", where, err)
	}
	// What a switch in 10.99.0.0/24 would have uploaded; the collected
	// backups are then read from loopback.
	cfg := randomBytes(t, 1500)
	r.putFile("backups", "sw2.cfg", cfg)
	got, err := (&testClient{server: r.server()}).get("sw2.cfg")
	if err != nil {
		t.Fatalf("%s: reading a backup from the backups store over TFTP: %v", where, err)
	}
	requireSameBytes(t, "backup read over TFTP", got, cfg)
}

// TestReadmeRewrites runs the "Rewrites and per-client files" example.
func TestReadmeRewrites(t *testing.T) {
	blocks := readmeBlocks(t, "caddyfile", "Rewrites and per-client files")
	if len(blocks) != 1 {
		t.Fatalf("want one caddyfile block under Rewrites, found %d", len(blocks))
	}
	where := fmt.Sprintf("README.md:%d", blocks[0].line)
	r := startReadmeCaddy(t, where, blocks[0].body)
	perClient, generic, image := []byte("per-client 127.0.0.1\n"), []byte("generic default\n"), randomBytes(t, 2000)
	r.putFile("default", "pxelinux.cfg/127.0.0.1", perClient)
	r.putFile("default", "pxelinux.cfg/default", generic)
	r.putFile("default", "images/x", image)
	for _, tc := range []struct {
		name string
		want []byte
	}{{"pxelinux.cfg/default", perClient}, {"boot/x", image}} {
		got, err := (&testClient{server: r.server()}).get(tc.name)
		if err != nil {
			t.Fatalf("%s: get %s: %v", where, tc.name, err)
		}
		requireSameBytes(t, where+": "+tc.name, got, tc.want)
	}
}

// TestReadmeSinglePort runs the single-port example: the README's curl
// put and get lines work, and replies come from the listening port.
func TestReadmeSinglePort(t *testing.T) {
	blocks := readmeBlocks(t, "caddyfile", "Single-port mode (NAT, containers, firewalls)")
	if len(blocks) != 1 {
		t.Fatalf("want one caddyfile block under Single-port mode, found %d", len(blocks))
	}
	where := fmt.Sprintf("README.md:%d", blocks[0].line)
	r := startReadmeCaddy(t, where, blocks[0].body)
	dir := t.TempDir()
	data := randomBytes(t, 5000)
	if err := os.WriteFile(filepath.Join(dir, "local.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	put, pb := readmeCommand(t, "Using TFTP clients", "curl -T local.bin", "# put")
	get, gb := readmeCommand(t, "Using TFTP clients", "curl -o local.bin", "# get")
	pw, gw := fmt.Sprintf("README.md:%d", pb.line), fmt.Sprintf("README.md:%d", gb.line)
	runReadmeCommand(t, pw, dir, r.substitutePorts(t, pw, put))
	if err := os.Remove(filepath.Join(dir, "local.bin")); err != nil {
		t.Fatal(err)
	}
	runReadmeCommand(t, gw, dir, r.substitutePorts(t, gw, get))
	requireSameBytes(t, "single-port curl get", readLocal(t, filepath.Join(dir, "local.bin")), data)

	raw := dialRaw(t)
	raw.send(r.server(), appendRequest(nil, opRRQ, "remote.bin", "octet"))
	for blk := uint16(1); ; blk++ {
		pkt, from := raw.mustRecv(2 * time.Second)
		if from != r.server() {
			t.Fatalf("%s: DATA %d came from %s, want the listening address %s", where, blk, from, r.server())
		}
		got, payload, ok := parseBlockPacket(pkt)
		if !ok || opcode(pkt) != opDATA || got != blk {
			t.Fatalf("%s: want DATA %d, got %v", where, blk, pkt[:min(len(pkt), 4)])
		}
		raw.send(from, appendAck(nil, blk))
		if len(payload) < 512 {
			break
		}
	}
}

// TestReadmeMetrics scrapes /metrics after an upload, a download, a refused
// request, a duplicate request and a transfer with a lost ACK, and checks
// that the README's metrics table and the exported caddy_tftp_ families are
// the same list.
func TestReadmeMetrics(t *testing.T) {
	raw, _ := readREADME(t)
	section := raw[strings.Index(raw, "\n## Metrics\n"):]
	section = section[:strings.Index(section[1:], "\n## ")+1]
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(caddy_tftp_[a-z_]+)`").FindAllStringSubmatch(section, -1) {
		documented = append(documented, m[1])
	}
	if len(documented) == 0 {
		t.Fatal("README.md: no metrics in the Metrics table")
	}

	r := startReadmeCaddy(t, "examples/Caddyfile", quickStartCaddyfile(t))
	server := r.server()
	data := randomBytes(t, 1500) // three blocks of 512
	if err := (&testClient{server: server}).put("m.bin", data); err != nil {
		t.Fatalf("upload: %v", err)
	}
	if got, err := (&testClient{server: server, options: []option{{"blksize", "1024"}}}).get("m.bin"); err != nil {
		t.Fatalf("download: %v", err)
	} else {
		requireSameBytes(t, "download", got, data)
	}
	if _, err := (&testClient{server: server}).get("missing"); errorCode(err) != int(ErrCodeFileNotFound) {
		t.Fatalf("refused request: got %v, want error 1", err)
	}
	// The first ACK 1 is lost and the client waits longer than the server's
	// 1s timeout, so the server sends DATA 1 again.
	lossy := &testClient{server: server, timeout: 3 * time.Second, dropOut: func(op, block uint16, n int) bool {
		return op == opACK && block == 1 && n == 0
	}}
	if got, err := lossy.get("m.bin"); err != nil {
		t.Fatalf("download with a lost ACK: %v", err)
	} else {
		requireSameBytes(t, "download with a lost ACK", got, data)
	}
	// A repeated request while its transfer runs is dropped; the client
	// then aborts the transfer with an ERROR.
	rc := dialRaw(t)
	rrq := appendRequest(nil, opRRQ, "m.bin", "octet")
	rc.send(server, rrq)
	rc.send(server, rrq)
	pkt, tid := rc.mustRecv(2 * time.Second)
	if blk, _, _ := parseBlockPacket(pkt); opcode(pkt) != opDATA || blk != 1 {
		t.Fatalf("want DATA 1, got %v", pkt[:min(len(pkt), 4)])
	}
	rc.send(tid, appendError(nil, ErrCodeUndefined, "client gives up"))
	if pkt, from, ok := rc.recv(300 * time.Millisecond); ok && opcode(pkt) == opDATA && from != tid {
		t.Fatalf("the duplicate request started a second transfer from %s", from)
	}

	_, body := r.do(http.MethodGet, "/metrics", nil)
	samples := map[string]bool{}
	exported := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name := strings.Fields(rest)[0]; strings.HasPrefix(name, "caddy_tftp_") {
				exported[name] = true
			}
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		samples[name] = true
	}
	for _, name := range documented {
		if !samples[name] && !samples[name+"_count"] {
			t.Errorf("README metric %s has no sample in /metrics", name)
		}
		delete(exported, name)
	}
	for name := range exported {
		t.Errorf("/metrics exports %s, which the README's Metrics table does not list", name)
	}
	if !bytes.Contains(body, []byte(`caddy_tftp_requests_dropped_total{reason="duplicate"`)) {
		t.Errorf("no duplicate request counted in caddy_tftp_requests_dropped_total")
	}
}

// TestReadmeDnsmasqMatchesFirmware checks that every flag of the README's
// dnsmasq command line is one the firmware suite runs dnsmasq with
// (firmware/netns_test.go), so the example cannot drift from what boots
// real firmware. String constants of that file are resolved where flags are
// built by concatenation.
func TestReadmeDnsmasqMatchesFirmware(t *testing.T) {
	cmd, b := readmeCommand(t, "Booting machines", "dnsmasq ")
	where := fmt.Sprintf("README.md:%d", b.line)
	src, err := os.ReadFile(filepath.Join("firmware", "netns_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(\w+)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(string(src), -1) {
		consts[m[1]] = m[2]
	}
	term := `(?:"[^"]*"|\w+)`
	firmwareFlags := map[string]bool{}
	for _, expr := range regexp.MustCompile(`"--[^"]*"(?:\s*\+\s*`+term+`)*`).FindAllString(string(src), -1) {
		var s strings.Builder
		for _, part := range regexp.MustCompile(term).FindAllString(expr, -1) {
			if strings.HasPrefix(part, `"`) {
				s.WriteString(strings.Trim(part, `"`))
			} else if v, ok := consts[part]; ok {
				s.WriteString(v)
			} else {
				t.Fatalf("firmware/netns_test.go: cannot resolve %s in %s", part, expr)
			}
		}
		firmwareFlags[s.String()] = true
	}
	// The interface is the lab's own (tap0 in the firmware suite, the
	// guest's tap device); only the flag itself must match.
	siteSpecific := map[string]bool{"--interface": true}
	var flags int
	for _, f := range strings.Fields(cmd) {
		if !strings.HasPrefix(f, "--") {
			continue
		}
		flags++
		if firmwareFlags[f] {
			continue
		}
		name, _, _ := strings.Cut(f, "=")
		if siteSpecific[name] {
			matched := false
			for ff := range firmwareFlags {
				matched = matched || strings.HasPrefix(ff, name+"=")
			}
			if matched {
				continue
			}
		}
		t.Errorf("%s: dnsmasq flag %s is not in firmware/netns_test.go", where, f)
	}
	if flags == 0 {
		t.Fatalf("%s: no flags in %q", where, cmd)
	}
}

// TestReadmeServeDirectory runs the "Serving a directory" Caddyfile as
// written, on a directory the test fills: a real client downloads from it,
// a file added on disk is served at once, and uploads are refused.
func TestReadmeServeDirectory(t *testing.T) {
	blocks := readmeBlocks(t, "caddyfile", "Serving a directory")
	if len(blocks) == 0 {
		t.Fatal("no Caddyfile under \"Serving a directory\"")
	}
	dir := t.TempDir()
	where := fmt.Sprintf("README.md:%d", blocks[0].line)
	r := startReadmeCaddy(t, where, strings.ReplaceAll(blocks[0].body, "/srv/tftp", dir))
	curl := interopClient(t, "curl")
	data := randomBytes(t, 4000)
	writeTree(t, dir, "pxelinux.cfg/default", data)
	dst := filepath.Join(t.TempDir(), "out")
	if err := curl.get(t.Context(), r.server(), "/pxelinux.cfg/default", dst, clientOpts{}); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	requireSameBytes(t, where, readLocal(t, dst), data)
	if err := (&testClient{server: r.server()}).put("new.bin", data); errorCode(err) != int(ErrCodeAccessViolated) {
		t.Fatalf("%s: upload to a read_only server: %v", where, err)
	}
}

// TestReadmeJSONReferenceComplete holds the README's JSON reference to the
// config structs: every json field of the app, its servers, rewrite rules
// and every tftp.stores module has a row in its table, and no row names a
// field that does not exist. A table belongs to the struct named on the
// line that introduces it: `apps.tftp`, `apps.tftp.servers.<name>`,
// `apps.tftp.servers.<name>.rewrites[]`, or `"module": "<name>"`.
func TestReadmeJSONReferenceComplete(t *testing.T) {
	raw, _ := readREADME(t)
	start := strings.Index(raw, "\n## JSON reference\n")
	if start < 0 {
		t.Fatal("README.md has no JSON reference section")
	}
	section := raw[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	structs := map[string]any{
		"`apps.tftp`":                           App{},
		"`apps.tftp.servers.<name>`":            Server{},
		"`apps.tftp.servers.<name>.rewrites[]`": Rewrite{},
	}
	for _, mi := range caddy.GetModules("tftp.stores") {
		structs[fmt.Sprintf("`\"module\": \"%s\"`", mi.ID.Name())] = mi.New()
	}
	documented := make(map[string]map[string]bool) // table key -> fields
	var current string
	for _, l := range strings.Split(section, "\n") {
		if !strings.HasPrefix(l, "|") {
			if strings.TrimSpace(l) != "" {
				current = ""
				for key := range structs {
					if strings.Contains(l, key) {
						current = key
					}
				}
			}
			continue
		}
		m := regexp.MustCompile("^\\| `([a-z_0-9]+)` \\|").FindStringSubmatch(l)
		if m == nil || current == "" {
			continue
		}
		if documented[current] == nil {
			documented[current] = make(map[string]bool)
		}
		documented[current][m[1]] = true
	}
	for key, v := range structs {
		typ := reflect.Indirect(reflect.ValueOf(v)).Type()
		fields := make(map[string]bool)
		for i := range typ.NumField() {
			tag := typ.Field(i).Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = true
			if !documented[key][name] {
				t.Errorf("README JSON reference: %s field %q (%s.%s) is not documented", key, name, typ.Name(), typ.Field(i).Name)
			}
		}
		for name := range documented[key] {
			if !fields[name] {
				t.Errorf("README JSON reference: %s documents %q, which %s does not have", key, name, typ.Name())
			}
		}
	}
}

// TestReadmeQuickStartDirectory runs the Quick start's first commands as
// written: make a folder, serve it with caddy tftp-server (the dev binary
// stands for "go run ./cmd/caddy", and the port is the test's), fetch the
// file with curl.
func TestReadmeQuickStartDirectory(t *testing.T) {
	bin := buildDevCaddy(t)
	dir := t.TempDir()
	mkdir, b := readmeCommand(t, "Quick start", "mkdir -p boot")
	where := fmt.Sprintf("README.md:%d", b.line)
	runReadmeCommand(t, where, dir, mkdir)
	serve, _ := readmeCommand(t, "Quick start", "go run ./cmd/caddy tftp-server")
	fetch, _ := readmeCommand(t, "Quick start", "curl tftp://")
	port := freePort(t)
	serve = strings.Replace(serve, "go run ./cmd/caddy", bin, 1)
	serve = strings.Replace(serve, "--listen :6969", fmt.Sprintf("--listen 127.0.0.1:%d", port), 1)
	args := strings.Fields(serve)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	c := &testClient{server: loopback4(port), timeout: 200 * time.Millisecond, retries: 1}
	waitFor(t, "caddy tftp-server to answer", 30*time.Second, func() bool {
		_, err := c.get("hello.txt")
		return err == nil
	})
	fetch = strings.Replace(fetch, "127.0.0.1:6969", fmt.Sprintf("127.0.0.1:%d", port), 1)
	args = strings.Fields(fetch)
	got, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", where, fetch, err, out.String())
	}
	if string(got) != "hello\n" {
		t.Fatalf("%s: %s printed %q", where, fetch, got)
	}
}

// TestReadmeListModules runs `caddy list-modules | grep tftp` on the dev
// binary and compares its output with the README's.
func TestReadmeListModules(t *testing.T) {
	var want []string
	found := false
	for _, b := range readmeBlocks(t, "sh", "Building Caddy with the app") {
		cmds := strings.Split(strings.TrimSpace(b.body), "\n")
		if len(cmds) > 0 && cmds[0] == "$ caddy list-modules | grep tftp" {
			want, found = cmds[1:], true
		}
	}
	if !found {
		t.Fatal("README: no `$ caddy list-modules | grep tftp` block")
	}
	out, err := exec.Command(buildDevCaddy(t), "list-modules").Output()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "tftp") {
			got = append(got, strings.TrimSpace(l))
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("caddy list-modules | grep tftp prints:\n%s\nthe README says:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
