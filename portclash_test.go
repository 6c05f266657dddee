package tftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReliabilityPortClash starts two real Caddy processes with the same
// listen address: the second must exit non-zero with an error naming the
// address, and the first keeps serving. (Reloads inside one process, which
// hand the socket over, are covered by the TestReload tests.)
func TestReliabilityPortClash(t *testing.T) {
	t.Parallel() // a real process, not the in-process Caddy
	bin := buildDevCaddy(t)
	dir := t.TempDir()
	port := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	config := filepath.Join(dir, "Caddyfile")
	cf := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\ttftp {\n\t\tlisten %s\n\t}\n}\n", listen)
	if err := os.WriteFile(config, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir, "HOME="+dir)

	firstLog, err := os.Create(filepath.Join(dir, "first.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer firstLog.Close()
	firstOut := func() string { b, _ := os.ReadFile(firstLog.Name()); return string(b) }
	first := exec.Command(bin, "run", "--config", config, "--adapter", "caddyfile")
	first.Env, first.Stdout, first.Stderr = env, firstLog, firstLog
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Wait() }()
	t.Cleanup(func() {
		_ = first.Process.Kill()
		<-firstDone
	})
	server := loopback4(port)
	// Wait (bounded) until the first process answers.
	for deadline := time.Now().Add(20 * time.Second); ; {
		_, err := (&testClient{server: server, timeout: 100 * time.Millisecond, retries: 1}).get("missing")
		if errorCode(err) == int(ErrCodeFileNotFound) {
			break
		}
		select {
		case err := <-firstDone:
			t.Fatalf("first Caddy exited: %v\n%s", err, firstOut())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("first Caddy never answered on %s\n%s", listen, firstOut())
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, bin, "run", "--config", config, "--adapter", "caddyfile")
	second.Env = env
	out, err := second.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("a second Caddy with the same listen address %s started and kept running (the kernel splits requests between the two)\n%s", listen, out)
	case !errors.As(err, &exit):
		t.Fatalf("second Caddy: %v\n%s", err, out)
	}
	t.Logf("second Caddy exited %d: %s", exit.ExitCode(), lastLine(out))
	if !strings.Contains(string(out), listen) || !strings.Contains(string(out), "in use") {
		t.Errorf("second Caddy exited %d, but its error does not name %s as in use:\n%s", exit.ExitCode(), listen, out)
	}
	// The first keeps serving.
	data := randomBytes(t, 2000)
	if err := (&testClient{server: server}).put("after", data); err != nil {
		t.Fatalf("first Caddy after the clash: %v\n%s", err, firstOut())
	}
	if got, err := (&testClient{server: server}).get("after"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("first Caddy after the clash: got %d bytes, err %v", len(got), err)
	}
}

// lastLine returns the last non-empty line of out.
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}
