package tftp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// caddytestSeparator splits a .caddytest file into the Caddyfile and what
// adapting it must give.
const caddytestSeparator = "\n----------\n"

// errorLocation is what every expected adapt error must name, so the tests
// pin the line a user is pointed to.
var errorLocation = regexp.MustCompile(`Caddyfile:\d+`)

// tryAdaptCaddyfile adapts a Caddyfile like adaptCaddyfile does, but returns
// the error instead of failing the test.
func tryAdaptCaddyfile(t testing.TB, body string) ([]byte, error) {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		t.Fatal("the caddyfile config adapter is not registered")
	}
	cfg, warnings, err := adapter.Adapt([]byte(body), map[string]any{"filename": "Caddyfile"})
	for _, w := range warnings {
		if !strings.Contains(w.Message, "not formatted") {
			t.Logf("Caddyfile warning: %s", w.String())
		}
	}
	return cfg, err
}

// normalizeJSON re-encodes a JSON document with sorted keys and tabs, and
// numbers kept exactly as written, so two documents compare as text.
func normalizeJSON(raw []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", err
	}
	if dec.More() {
		return "", fmt.Errorf("trailing data after the JSON document")
	}
	out, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// lineDiff describes the first differing line of two texts.
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("first difference at line %d:\n got: %q\nwant: %q", i+1, gl, wl)
		}
	}
	return "no difference"
}

// TestCaddyfileAdapt adapts every testdata/caddyfile_adapt/*.caddytest file.
// Each file is a Caddyfile, a line of ten dashes, and then either the
// expected JSON (when it starts with "{") or a substring of the expected
// adapt error, which must name the file and line (Caddyfile:N).
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "caddyfile_adapt", "*.caddytest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/caddyfile_adapt/*.caddytest files found")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".caddytest")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			body, expected, ok := strings.Cut(strings.ReplaceAll(string(raw), "\r\n", "\n"), caddytestSeparator)
			if !ok {
				t.Fatalf("%s: no %q separator line", file, strings.Trim(caddytestSeparator, "\n"))
			}
			expected = strings.TrimSpace(expected)
			got, adaptErr := tryAdaptCaddyfile(t, body+"\n")

			if strings.HasPrefix(expected, "{") {
				if adaptErr != nil {
					t.Fatalf("adapting failed: %v", adaptErr)
				}
				want, err := normalizeJSON([]byte(expected))
				if err != nil {
					t.Fatalf("%s: expected JSON is invalid: %v", file, err)
				}
				have, err := normalizeJSON(got)
				if err != nil {
					t.Fatalf("adapted config is invalid JSON: %v\n%s", err, got)
				}
				if have != want {
					t.Errorf("adapted JSON differs from %s; %s\n--- got ---\n%s", file, lineDiff(have, want), have)
				}
				return
			}

			if !errorLocation.MatchString(expected) {
				t.Fatalf("%s: expected error %q must name the file and line, like Caddyfile:3", file, expected)
			}
			if adaptErr == nil {
				t.Fatalf("adapting succeeded, want an error containing %q; got:\n%s", expected, got)
			}
			if !strings.Contains(adaptErr.Error(), expected) {
				t.Errorf("adapt error:\n  %v\nwant it to contain:\n  %s", adaptErr, expected)
			}
		})
	}
}

// provisionCaddyfile adapts a Caddyfile and runs caddy.Validate on it, which
// provisions and validates every module without starting anything (no
// socket is bound), then cleans the modules up again.
func provisionCaddyfile(t testing.TB, body string) error {
	t.Helper()
	raw, err := tryAdaptCaddyfile(t, body)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, body)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("decoding adapted config: %v\n%s", err, raw)
	}
	return caddy.Validate(&cfg)
}

// TestCaddyfileProvision checks that configs using every Caddyfile option
// adapt into JSON the app accepts.
func TestCaddyfileProvision(t *testing.T) {
	tests := map[string]string{
		"every option": `{
	tftp {
		grace_period 45s
		listen :6969 [::1]:6969 udp4/127.0.0.1:6970
		listen udp6/[::1]:6971
		store boot
		read_only
		no_overwrite
		timeout 2s
		retries 3
		max_block_size 1468
		max_window_size 16
		disable_options
		store boot {
			max_bytes 64MiB
			max_file_size 1GiB
		}
		server uploads {
			listen 127.0.0.1:6972
			store incoming memory {
				max_bytes 1GB
				max_file_size 100MB
			}
			no_overwrite
			timeout 500ms
			retries 8
			max_block_size 512
			max_window_size 1
		}
		server mirror {
			listen udp/127.0.0.1:6973-6974
			store boot
			max_block_size 65464
			max_window_size 65535
		}
	}
}`,
		"defaults only": `{
	tftp
}`,
		"one server with defaults": `{
	tftp {
		server a
	}
}`,
		"default store configured": `{
	tftp {
		listen :6969
		store default {
			max_bytes 1MiB
		}
	}
}`,
	}
	example, err := os.ReadFile(filepath.Join("examples", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	tests["examples/Caddyfile"] = string(example)

	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			if err := provisionCaddyfile(t, body); err != nil {
				t.Fatalf("caddy.Validate: %v", err)
			}
			// Validate cleans up what it provisioned, so no store
			// contents outlive it to leak into other tests.
			for _, store := range []string{"default", "boot", "incoming"} {
				if n, ok := memoryPool.References(store); ok {
					t.Errorf("memory store %q still has %d references after caddy.Validate", store, n)
				}
			}
		})
	}
}

// TestCaddyfileAdaptErrors checks that every mistake that can be seen in
// the Caddyfile is reported by the adapter, at the line to fix, before
// anything runs. In tftpCaddyfile the body's first line is line 5.
func TestCaddyfileAdaptErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
		line             int
	}{
		{"unknown directive", "listen :6969\nbogus 1", "unrecognized tftp directive: bogus", 6},
		{"unknown server directive", "server a {\nlisten :6969\nbogus\n}", "unrecognized tftp directive: bogus", 7},
		{"missing argument", "listen :6969\ntimeout", "wrong argument count", 6},
		{"extra argument", "read_only yes", "wrong argument count", 5},
		{"max_block_size below 512", "max_block_size 100", `max_block_size: "100" is not a whole number from 512 to 65464`, 5},
		{"max_block_size above 65464", "listen :6969\nmax_block_size 70000", `max_block_size: "70000" is not a whole number from 512 to 65464`, 6},
		{"max_window_size above 65535", "max_window_size 65536", `max_window_size: "65536" is not a whole number from 1 to 65535`, 5},
		{"negative retries", "listen :6969\nretries -3", `retries: "-3" is not a whole number`, 6},
		{"bad duration", "timeout soon", `timeout: bad duration "soon"`, 5},
		{"zero timeout", "timeout 0s", "timeout: the duration must be above zero", 5},
		{"negative grace period", "grace_period -5s\nlisten :6969", "grace_period must not be negative", 5},
		{"unknown store", "listen :6969\nstore x", `store "x" is not declared`, 6},
		{"unknown store in a server block", "server a {\nlisten :6969\nstore x\n}", `store "x" is not declared`, 7},
		{"tcp network", "listen tcp/:69", `listen: "tcp/:69" uses network "tcp"`, 5},
		{"unix network", "listen unixgram//tmp/tftp.sock", `uses network "unixgram"`, 5},
		{"bad listen address", "listen :notaport", `listen: ":notaport" is not a network address`, 5},
		{"bad CIDR", "allow_read 10.0.0.0/33", "allow_read:", 5},
		{"bad rewrite", "rewrite ([a-z 1", "rewrite: bad regular expression", 5},
		{"root outside the store", "root ../x", `root: "../x" is not a usable path`, 5},
		{"two servers on one address", "server a {\nlisten :6969\n}\nserver b {\nlisten udp/:6969\n}", "listen: udp/:6969 is already used by server a (Caddyfile:6)", 9},
		{"overlapping port ranges", "server a {\nlisten :7000-7002\n}\nserver b {\nlisten :7002\n}", "listen: udp/:7002 is already used by server a", 9},
		{"one address twice", "listen :6969 :6969", "listen: udp/:6969 is already used by the top-level server", 5},
		{"bad transfer limit", "max_transfers 0", `max_transfers: "0" is not a whole number from 1`, 5},
		{"bad memory store size", "store boot {\nmax_bytes lots\n}", `max_bytes: bad size "lots"`, 6},
		{"unknown store module", "store boot nosuch", `unknown store module "nosuch"`, 5},
		{"unknown file_system directive", "store boot file_system {\nroot /srv\nbogus\n}", "unrecognized file_system store directive: bogus", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tftpCaddyfile(tt.body)), map[string]any{"filename": "Caddyfile"})
			if err == nil {
				t.Fatalf("adapted, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasSuffix(err.Error(), fmt.Sprintf(", at Caddyfile:%d", tt.line)) {
				t.Errorf("error:\n  %v\nwant it to contain %q and end with the place Caddyfile:%d", err, tt.want, tt.line)
			}
		})
	}
}

// TestCaddyAdaptCommandFails runs the real `caddy adapt` and `caddy
// validate` on broken Caddyfiles: each exits non-zero and names the line.
func TestCaddyAdaptCommandFails(t *testing.T) {
	bin := buildDevCaddy(t)
	for _, tc := range []struct{ body, want string }{
		{"{\n\ttftp {\n\t\tlisten :6969\n\t\tmax_block_size 70000\n\t}\n}\n", "Caddyfile:4"},
		{"{\n\ttftp {\n\t\tlisten tcp/:69\n\t}\n}\n", "Caddyfile:3"},
		{"{\n\ttftp {\n\t\tserver a {\n\t\t\tstore missing\n\t\t}\n\t}\n}\n", "Caddyfile:4"},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(path, []byte(tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, verb := range []string{"adapt", "validate"} {
			out, err := exec.Command(bin, verb, "--config", path, "--adapter", "caddyfile").CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Errorf("caddy %s of %q: %v, want a non-zero exit\n%s", verb, tc.body, err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("caddy %s: output does not name %s:\n%s", verb, tc.want, out)
			}
		}
	}
}

// TestCaddyfileValidateErrors checks configs that the app refuses when it
// is provisioned and validated, where the Caddyfile alone cannot tell.
func TestCaddyfileValidateErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{
			name: "two servers on the default address",
			body: "server a\nserver b",
			want: "servers a and b both listen on udp/:69",
		},
		{
			name: "missing preload directory",
			body: "store boot {\npreload /nonexistent/tftp\n}",
			want: "preload",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := provisionCaddyfile(t, tftpCaddyfile(tt.body))
			if err == nil {
				t.Fatalf("caddy.Validate succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("caddy.Validate error:\n  %v\nwant it to contain:\n  %s", err, tt.want)
			}
		})
	}
}

// TestRetriesZeroMeansNone checks that "retries 0" in a Caddyfile reaches
// the server as no retransmission at all (in JSON a zero would mean the
// default): a client that never answers gets one DATA packet.
func TestRetriesZeroMeansNone(t *testing.T) {
	port := startDefaultServer(t, "timeout 50ms", "retries 0")
	c := &testClient{server: loopback4(port)}
	if err := c.put("f", randomBytes(t, 2000)); err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.WriteToUDPAddrPort(appendRequest(nil, opRRQ, "f", "octet"), loopback4(port)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	got := 0
	// With the default 5 retries, copies would arrive at 50, 150, 350 ms.
	_ = conn.SetReadDeadline(time.Now().Add(600 * time.Millisecond))
	for {
		if _, _, err := conn.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
		got++
	}
	if got != 1 {
		t.Fatalf("a silent client got %d DATA packets, want 1", got)
	}
}
