package tftp

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// relNetnsScript runs in a new network namespace (unshare -n) that has
// only loopback, which is also given 10.9.0.1/24. It starts Caddy with the
// given config, waits (bounded) until it serves, uploads with curl from
// 10.9.0.1 (a non-loopback source) and from 127.0.0.1, prints each exit
// code, and stops Caddy.
const relNetnsScript = `
set -u
bin=$1 config=$2 file=$3
ip link set lo up && ip addr add 10.9.0.1/24 dev lo || exit 90
"$bin" run --config "$config" --adapter caddyfile >"$config.log" 2>&1 &
pid=$!
for i in $(seq 200); do
	grep -q '"serving TFTP"' "$config.log" && break
	kill -0 $pid 2>/dev/null || break
	sleep 0.05
done
curl -sS --connect-timeout 3 -T "$file" tftp://10.9.0.1:6969/from-network; echo "network-exit=$?"
curl -sS --connect-timeout 3 -T "$file" tftp://127.0.0.1:6969/from-loopback; echo "loopback-exit=$?"
kill $pid; wait $pid
echo "--- log"; cat "$config.log"
`

// TestReliabilityUploadsClosedToNetwork runs a real Caddy and curl in a
// network namespace of its own: with no allow_write, an upload from a
// non-loopback address is refused (curl exits 69, access violation) while
// one from loopback works, and nothing is logged about uploads; with
// allow_write naming the network, the upload from it works (and loopback,
// not in the list, is refused) and the server logs, once, that it accepts
// uploads from beyond loopback.
func TestReliabilityUploadsClosedToNetwork(t *testing.T) {
	t.Parallel() // a real process, not the in-process Caddy
	requireClient(t, curlBin)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is needed to create a network namespace: %v", err)
	}
	bin := buildDevCaddy(t)
	dir := t.TempDir()
	file := writeLocal(t, dir, "payload", randomBytes(t, 3000))
	cases := []struct {
		name, extra                       string
		networkExit, loopbackExit, warned string
	}{
		{"default", "", "network-exit=69", "loopback-exit=0", ""},
		// The list replaces the default: loopback is not in it.
		{"allow_write 10.9.0.0/24", "\t\tallow_write 10.9.0.0/24\n", "network-exit=0", "loopback-exit=69", "x"},
	}
	for _, c := range cases {
		config := filepath.Join(dir, strings.ReplaceAll(c.name, "/", "_")+".Caddyfile")
		cf := "{\n\tadmin off\n\tpersist_config off\n\ttftp {\n\t\tlisten :6969\n" + c.extra + "\t}\n}\n"
		if err := os.WriteFile(config, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("unshare", "-n", "bash", "-c", relNetnsScript, "bash", bin, config, file)
		cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir, "HOME="+dir)
		outb, err := cmd.CombinedOutput()
		out := string(outb)
		if err != nil && !strings.Contains(out, "network-exit=") {
			t.Fatalf("%s: running Caddy in a network namespace: %v\n%s", c.name, err, out)
		}
		if !strings.Contains(out, c.networkExit+"\n") {
			t.Errorf("%s: upload from 10.9.0.1: want %s\n%s", c.name, c.networkExit, out)
		}
		if !strings.Contains(out, c.loopbackExit+"\n") {
			t.Errorf("%s: upload from 127.0.0.1: want %s\n%s", c.name, c.loopbackExit, out)
		}
		if n := strings.Count(out, "uploads accepted from beyond loopback"); (c.warned != "") != (n == 1) || n > 1 {
			t.Errorf("%s: %d log lines about uploads from beyond loopback\n%s", c.name, n, out)
		}
	}
}
