//go:build firmware

package firmware

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tftpServer is the caddy binary running the tftp app.
type tftpServer struct {
	*proc
	logPath string
	netns   string // where caddy runs, "" for the host
	admin   string // the admin endpoint, host:port on 127.0.0.1 in netns
}

// startServer writes a Caddyfile that serves one memory store on listen,
// with all logs as JSON at DEBUG level on stderr and the admin endpoint
// (for /metrics) on 127.0.0.1, and runs caddy with it.
// netns, when not empty, is the network namespace to run it in. It returns
// once the server logged that it is serving.
func startServer(t *testing.T, dir, netns, listen string) *tftpServer {
	t.Helper()
	admin := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	caddyfile := fmt.Sprintf(`{
	admin %s
	persist_config off
	log {
		output stderr
		format json
		level DEBUG
	}
	tftp {
		grace_period 1s
		listen %s
		# The lab seeds the store from the host side of the namespace and
		# U-Boot uploads from the guest: uploads are open to the lab's
		# private network, not only to loopback (the default).
		allow_write private_ranges
		store boot {
			max_file_size 64MiB
		}
	}
}
`, admin, listen)
	return startCaddy(t, dir, netns, admin, caddyfile, "serving TFTP")
}

// startCaddy runs the dev binary with caddyfile, whose admin endpoint is
// admin, in netns ("" for the host) with its log in server.log of dir. It
// returns once every message in ready has been logged.
func startCaddy(t *testing.T, dir, netns, admin, caddyfile string, ready ...string) *tftpServer {
	t.Helper()
	bin := caddyBinary(t)
	cfPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfPath, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	for _, sub := range []string{"xdg-config", "xdg-data"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	argv := []string{bin, "run", "--config", cfPath, "--adapter", "caddyfile"}
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	// The server lives until the test ends; the context only bounds a
	// server that hangs longer than any test.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	t.Cleanup(cancel)
	env := []string{
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "xdg-config"),
		"XDG_DATA_HOME=" + filepath.Join(dir, "xdg-data"),
	}
	p := startProc(t, ctx, "caddy", logFile, env, argv...)
	s := &tftpServer{proc: p, logPath: logPath, netns: netns, admin: admin}

	deadline := time.Now().Add(20 * time.Second)
	for {
		seen := map[string]string{}
		for _, e := range s.entries(t) {
			if _, ok := seen[e.Msg]; !ok {
				seen[e.Msg] = e.Listen
			}
		}
		missing := 0
		for _, msg := range ready {
			if _, ok := seen[msg]; !ok {
				missing++
			}
		}
		if missing == 0 {
			for _, msg := range ready {
				t.Logf("caddy (PID %d): %s on %s", p.pid(), msg, seen[msg])
			}
			return s
		}
		if p.exited() || time.Now().After(deadline) {
			p.stop()
			log, _ := os.ReadFile(logPath)
			t.Fatalf("caddy did not log %q (exited: %v, %v)\n--- server log ---\n%s", ready, p.exited(), p.err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logEntry is one JSON log line of the server. The access log's "transfer
// finished" lines fill the transfer fields.
type logEntry struct {
	Level       string          `json:"level"`
	Logger      string          `json:"logger"`
	Msg         string          `json:"msg"`
	Listen      string          `json:"listen"`
	Remote      string          `json:"remote"`
	File        string          `json:"file"`
	Direction   string          `json:"direction"`
	Options     string          `json:"options"`
	Blksize     int             `json:"blksize"`
	Windowsize  int             `json:"windowsize"`
	Bytes       int64           `json:"bytes"`
	Blocks      int64           `json:"blocks"`
	Retransmits int64           `json:"retransmits"`
	Duration    json.RawMessage `json:"duration"`
	Outcome     string          `json:"outcome"`
	ErrorCode   int             `json:"error_code"`
	Error       string          `json:"error"`
	line        string
}

// entries parses the server log so far; lines that are not JSON are
// skipped.
func (s *tftpServer) entries(t *testing.T) []logEntry {
	t.Helper()
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []logEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e logEntry
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		e.line = line
		out = append(out, e)
	}
	return out
}

// reads returns the access log's finished read transfers of file (all
// files when file is empty), in log order.
func (s *tftpServer) reads(t *testing.T, file string) []logEntry {
	t.Helper()
	return s.finished(t, "read", file)
}

// finished returns the access log's finished transfers in direction
// ("read" or "write") of file (all files when file is empty), in log
// order.
func (s *tftpServer) finished(t *testing.T, direction, file string) []logEntry {
	t.Helper()
	var out []logEntry
	for _, e := range s.entries(t) {
		if e.Logger == "tftp.access" && e.Msg == "transfer finished" && e.Direction == direction && (file == "" || e.File == file) {
			out = append(out, e)
		}
	}
	return out
}

// waitReads waits up to d for at least n finished reads of file to be
// logged (the guest may see the last block before the server logs).
func (s *tftpServer) waitReads(t *testing.T, file string, n int, d time.Duration) []logEntry {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		r := s.reads(t, file)
		if len(r) >= n || time.Now().After(deadline) {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkNoErrors fails the test for every server log line at error level or
// above.
func (s *tftpServer) checkNoErrors(t *testing.T) {
	t.Helper()
	for _, e := range s.entries(t) {
		switch e.Level {
		case "error", "dpanic", "panic", "fatal":
			t.Errorf("server logged an error: %s", e.line)
		}
	}
}

// logNegotiated logs what each finished read negotiated, from the access
// log.
func (s *tftpServer) logNegotiated(t *testing.T, who string) {
	t.Helper()
	for _, e := range s.reads(t, "") {
		opts := e.Options
		if opts == "" {
			opts = "(none)"
		}
		t.Logf("%s negotiated: file=%s outcome=%s oack=[%s] blksize=%d windowsize=%d bytes=%d blocks=%d retransmits=%d duration=%s level=%s",
			who, e.File, e.Outcome, opts, e.Blksize, e.Windowsize, e.Bytes, e.Blocks, e.Retransmits, e.Duration, e.Level)
	}
}

// option returns the value of name in an access log options string such
// as "blksize=1468 tsize=850528", or "".
func option(opts, name string) string {
	for _, f := range strings.Fields(opts) {
		if k, v, ok := strings.Cut(f, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// freeUDPPort returns a UDP port that is free on 127.0.0.1 right now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
