package tftp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The caddy tftp-server and caddy tftp commands, run as real processes of
// the development binary.

// commandCaddy is the dev binary (see buildDevCaddy).
func commandCaddy(t *testing.T) string {
	t.Helper()
	return buildDevCaddy(t)
}

// commandProcess is a caddy process started by a test.
type commandProcess struct {
	cmd    *exec.Cmd
	done   chan struct{}
	mu     sync.Mutex
	output bytes.Buffer // stdout and stderr
}

func (p *commandProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.Write(b)
}

func (p *commandProcess) out() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// startCommand starts the binary with args; it is killed when the test ends
// if it is still running.
func startCommand(t *testing.T, args ...string) *commandProcess {
	t.Helper()
	p := &commandProcess{cmd: exec.Command(commandCaddy(t), args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("caddy %s output:\n%s", strings.Join(args, " "), p.out())
		}
	})
	return p
}

// awaitTFTP polls the server with a request for a missing file until it
// answers with error 1, or fails when the process exits or 30 s pass.
func (p *commandProcess) awaitTFTP(t *testing.T, server netip.AddrPort) {
	t.Helper()
	c := &testClient{server: server, timeout: 200 * time.Millisecond, retries: 1}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.get("no-such-file-probe")
		if errorCode(err) == int(ErrCodeFileNotFound) {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("caddy exited during start: %s", p.out())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy not answering TFTP on %s: %v", server, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runCaddy runs the binary to completion, with a timeout, and returns its
// stdout, stderr and exit code.
func runCaddy(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, commandCaddy(t), args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	cmd.Stdin = stdin
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("caddy %s: timed out\n%s%s", strings.Join(args, " "), o.String(), e.String())
	}
	if exit, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), exit.ExitCode()
	} else if err != nil {
		t.Fatalf("caddy %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), 0
}

// mustRunCaddy runs the binary and fails the test unless it exits with 0.
func mustRunCaddy(t *testing.T, args ...string) string {
	t.Helper()
	stdout, stderr, code := runCaddy(t, nil, args...)
	if code != 0 {
		t.Fatalf("caddy %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// TestCommandTFTPServer serves a temporary directory with caddy tftp-server
// to curl and tftp-hpa, checks that uploads are refused with error 2 when
// --writable is off, and that SIGINT stops the process within a second.
func TestCommandTFTPServer(t *testing.T) {
	curl, hpa := interopClient(t, "curl"), interopClient(t, "tftp-hpa")
	root := t.TempDir()
	data := randomBytes(t, 100_000)
	if err := os.MkdirAll(filepath.Join(root, "pxelinux.cfg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "pxelinux.cfg", "default"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	server := loopback4(port)
	p := startCommand(t, "tftp-server", "--root", root, "--listen", server.String())
	p.awaitTFTP(t, server)
	if out := p.out(); !strings.Contains(out, server.String()) || !strings.Contains(out, "read-only") {
		t.Errorf("tftp-server does not say where it listens and that it is read-only:\n%s", out)
	}

	ctx := context.Background()
	local := t.TempDir()
	for _, c := range []tftpClient{curl, hpa} {
		dst := filepath.Join(local, c.name)
		if err := c.get(ctx, server, "pxelinux.cfg/default", dst, clientOpts{}); err != nil {
			t.Fatalf("%s get: %v", c.name, err)
		}
		requireSameBytes(t, c.name+" get", readLocal(t, dst), data)
	}
	// A file added to the directory is served at once.
	added := randomBytes(t, 3000)
	if err := os.WriteFile(filepath.Join(root, "added.bin"), added, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := (&testClient{server: server}).get("added.bin"); err != nil {
		t.Fatalf("get of a file added while serving: %v", err)
	} else {
		requireSameBytes(t, "added file", got, added)
	}

	// Uploads are refused with error 2.
	up := filepath.Join(local, "up.bin")
	if err := os.WriteFile(up, randomBytes(t, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	err := hpa.put(ctx, server, "up.bin", up, clientOpts{})
	if err == nil || !strings.Contains(err.Error(), "Error code 2") {
		t.Fatalf("tftp-hpa put to a read-only tftp-server: %v, want Error code 2", err)
	}
	if err := (&testClient{server: server}).put("up2.bin", []byte("x")); errorCode(err) != int(ErrCodeAccessViolated) {
		t.Fatalf("put to a read-only tftp-server: %v, want error 2", err)
	}
	if _, err := os.Stat(filepath.Join(root, "up.bin")); err == nil {
		t.Fatal("a refused upload created a file")
	}

	// Ctrl-C stops it within a second.
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(time.Second):
		t.Fatal("tftp-server still running one second after SIGINT")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("tftp-server exit code %d after SIGINT, want 0", code)
	}
}

// TestCommandTFTPServerWritable uploads into the directory with --writable.
func TestCommandTFTPServerWritable(t *testing.T) {
	curl := interopClient(t, "curl")
	root := t.TempDir()
	server := loopback4(freePort(t))
	p := startCommand(t, "tftp-server", "--root", root, "--listen", server.String(), "--writable", "--max-block-size", "1468")
	p.awaitTFTP(t, server)
	if out := p.out(); !strings.Contains(out, "any client that can reach the port may upload") {
		t.Errorf("--writable prints no warning:\n%s", out)
	}
	data := randomBytes(t, 20_000)
	src := filepath.Join(t.TempDir(), "cfg.txt")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := curl.put(context.Background(), server, "backup.cfg", src, clientOpts{}); err != nil {
		t.Fatalf("curl put: %v", err)
	}
	requireSameBytes(t, "uploaded file on disk", readLocal(t, filepath.Join(root, "backup.cfg")), data)
}

// TestCommandTFTPServerPrivilege checks that binding port 69 without the
// privilege fails with the fix in the message and a non-zero exit.
func TestCommandTFTPServerPrivilege(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil && strings.TrimSpace(string(b)) != "" {
		var start int
		fmt.Sscan(string(b), &start)
		if start <= 69 {
			t.Skipf("this machine lets anyone bind port 69 (ip_unprivileged_port_start=%d)", start)
		}
	}
	args := []string{commandCaddy(t), "tftp-server", "--root", "/", "--listen", "127.0.0.1:69"}
	if os.Getuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Fatalf("setpriv (util-linux) is needed to drop root: %v", err)
		}
		args = append([]string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "HOME=/nonexistent")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("tftp-server on port 69 without privilege exited 0:\n%s", out)
	}
	if ctx.Err() != nil {
		t.Fatalf("tftp-server on port 69 without privilege kept running:\n%s", out)
	}
	for _, want := range []string{"permission denied", "--listen :6969", "setcap cap_net_bind_service=+ep"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestCommandAdmin runs the caddy tftp commands against a Caddy started
// from a config file with the admin API on a free port.
func TestCommandAdmin(t *testing.T) {
	dir := t.TempDir()
	admin := fmt.Sprintf("127.0.0.1:%d", adminFreeTCPPort(t))
	port := freePort(t)
	server := loopback4(port)
	config := filepath.Join(dir, "Caddyfile")
	cf := fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n\ttftp {\n\t\tlisten %s\n\t\ttimeout 5s\n\t}\n}\n", admin, server)
	if err := os.WriteFile(config, []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startCommand(t, "run", "--config", config, "--adapter", "caddyfile")
	p.awaitTFTP(t, server)
	addr := []string{"--address", admin}

	// put, ls, get round-trip.
	data := randomBytes(t, 300_000)
	src := filepath.Join(dir, "fw.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustRunCaddy(t, append([]string{"tftp", "put", "default", src, "firmware/fw.bin"}, addr...)...)
	if !strings.Contains(out, "firmware/fw.bin") || !strings.Contains(out, sha256Hex(data)) {
		t.Errorf("put output %q lacks the name and sha256", out)
	}
	out = mustRunCaddy(t, append([]string{"tftp", "ls", "default"}, addr...)...)
	if !strings.Contains(out, "firmware/fw.bin") || !strings.Contains(out, "293 KiB") || !strings.Contains(out, sha256Hex(data)) {
		t.Errorf("ls default:\n%s\nwant firmware/fw.bin, 293 KiB and its sha256", out)
	}
	// The admin address is also found in the config file, as caddy reload does.
	out = mustRunCaddy(t, "tftp", "ls", "--config", config, "--adapter", "caddyfile")
	if !strings.Contains(out, "default") || !strings.Contains(out, "memory") {
		t.Errorf("ls with --config:\n%s\nwant the default memory store", out)
	}
	dst := filepath.Join(dir, "copy.bin")
	mustRunCaddy(t, append([]string{"tftp", "get", "default", "firmware/fw.bin", dst}, addr...)...)
	requireSameBytes(t, "tftp get", readLocal(t, dst), data)
	requireSameBytes(t, "tftp get to stdout", []byte(mustRunCaddy(t, append([]string{"tftp", "get", "default", "firmware/fw.bin", "-"}, addr...)...)), data)

	// rm of a missing file fails with the API's message; rm of a file works.
	stdout, stderr, code := runCaddy(t, nil, append([]string{"tftp", "rm", "default", "missing.bin"}, addr...)...)
	if code == 0 || !strings.Contains(stderr, "missing.bin") || !strings.Contains(stderr, "404") {
		t.Errorf("rm of a missing file: exit %d, stdout %q, stderr %q; want non-zero and the API's message", code, stdout, stderr)
	}
	if _, stderr, code := runCaddy(t, nil, append([]string{"tftp", "get", "default", "missing.bin", filepath.Join(dir, "none")}, addr...)...); code == 0 || !strings.Contains(stderr, "missing.bin") {
		t.Errorf("get of a missing file: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "none")); err == nil {
		t.Error("a failed get left a file")
	}
	mustRunCaddy(t, append([]string{"tftp", "rm", "default", "firmware/fw.bin"}, addr...)...)
	if out := mustRunCaddy(t, append([]string{"tftp", "ls", "default"}, addr...)...); strings.Contains(out, "fw.bin") {
		t.Errorf("ls after rm still lists the file:\n%s", out)
	}

	// transfers lists a read the test holds open by never sending ACK 1.
	held := randomBytes(t, 5000)
	if _, stderr, code := runCaddy(t, bytes.NewReader(held), append([]string{"tftp", "put", "default", "-", "held.bin"}, addr...)...); code != 0 {
		t.Fatalf("put from stdin: exit %d: %s", code, stderr)
	}
	raw := dialRaw(t)
	raw.send(server, appendRequest(nil, opRRQ, "held.bin", "octet", option{"tsize", "0"}))
	pkt, tid := raw.mustRecv(5 * time.Second)
	if opcode(pkt) != opOACK {
		t.Fatalf("got opcode %d, want OACK", opcode(pkt))
	}
	raw.send(tid, appendAck(nil, 0))
	if pkt, _ = raw.mustRecv(5 * time.Second); opcode(pkt) != opDATA {
		t.Fatalf("got opcode %d, want DATA", opcode(pkt))
	}
	me := raw.conn.LocalAddr().String()
	out = mustRunCaddy(t, append([]string{"tftp", "transfers"}, addr...)...)
	if !strings.Contains(out, me) || !strings.Contains(out, "held.bin") || !strings.Contains(out, "4.9 KiB") || !strings.Contains(out, "read") {
		t.Errorf("transfers:\n%s\nwant the read of held.bin (4.9 KiB) by %s", out, me)
	}

	// transfers --watch, piped, prints the table until SIGINT.
	w := startCommand(t, append([]string{"tftp", "transfers", "--watch", "--interval", "100ms"}, addr...)...)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(w.out(), me) {
		if time.Now().After(deadline) {
			t.Fatalf("transfers --watch did not list the transfer:\n%s", w.out())
		}
		select {
		case <-w.done:
			t.Fatalf("transfers --watch exited:\n%s", w.out())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := w.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		t.Fatal("transfers --watch still running after SIGINT")
	}
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("transfers --watch exit code %d after SIGINT", code)
	}
	raw.send(tid, appendError(nil, ErrCodeUndefined, "test done"))
}
