package tftp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

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

// TestCaddyfileValidateErrors checks configs that adapt but that the app
// refuses when it is provisioned and validated.
func TestCaddyfileValidateErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{
			name: "max_block_size below 512",
			body: "listen :6969\nmax_block_size 100",
			want: "max_block_size 100 is outside 512..65464",
		},
		{
			name: "max_block_size above 65464",
			body: "listen :6969\nmax_block_size 65465",
			want: "max_block_size 65465 is outside 512..65464",
		},
		{
			name: "max_window_size above 65535",
			body: "listen :6969\nmax_window_size 65536",
			want: "max_window_size 65536 is outside 1..65535",
		},
		{
			name: "negative retries",
			body: "listen :6969\nretries -1",
			want: "retries must not be negative",
		},
		{
			name: "negative timeout",
			body: "listen :6969\ntimeout -1s",
			want: "timeout must not be negative",
		},
		{
			name: "negative grace period",
			body: "grace_period -5s\nlisten :6969",
			want: "grace_period must not be negative",
		},
		{
			name: "two servers on one address",
			body: "server a {\nlisten :6969\n}\nserver b {\nlisten udp/:6969\n}",
			want: "servers a and b both listen on udp/:6969",
		},
		{
			name: "two servers on the default address",
			body: "server a\nserver b",
			want: "servers a and b both listen on udp/:69",
		},
		{
			name: "overlapping port ranges",
			body: "server a {\nlisten :7000-7002\n}\nserver b {\nlisten :7002\n}",
			want: "servers a and b both listen on udp/:7002",
		},
		{
			name: "store not configured",
			body: "listen :6969\nstore x",
			want: `store "x" is not configured`,
		},
		{
			name: "store not configured in a server block",
			body: "server a {\nlisten :6969\nstore x\n}",
			want: `server a: store "x" is not configured`,
		},
		{
			name: "tcp network",
			body: "listen tcp/:69",
			want: `listen address "tcp/:69": network "tcp" is not UDP`,
		},
		{
			name: "unix network",
			body: "listen unixgram//tmp/tftp.sock",
			want: `network "unixgram" is not UDP`,
		},
		{
			name: "bad listen address",
			body: "listen :notaport",
			want: `parsing listen address ":notaport"`,
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
