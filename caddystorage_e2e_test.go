package tftp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-tftp/tftp/modules/caddystorage"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"
)

func TestStorageStoreCaddyfile(t *testing.T) {
	cfg := adaptCaddyfile(t, tftpCaddyfile(lines(
		"store shared caddy_storage {",
		"	storage file_system /srv/tftp",
		"	cache_max_bytes 64MiB",
		"	cache_ttl 2s",
		"	max_file_size 100MiB",
		"	max_bytes 10GiB",
		"}",
		"server b {",
		"	listen 127.0.0.1:6969",
		"	store other caddy_storage {",
		"		storage file_system {",
		"			root /srv/other",
		"		}",
		"	}",
		"}",
		"server c {",
		"	listen 127.0.0.1:6970",
		"	store tls caddy_storage",
		"}",
	)))
	var got struct {
		Apps struct {
			TFTP struct {
				Stores  map[string]json.RawMessage `json:"stores"`
				Servers map[string]struct {
					Store string `json:"store"`
				} `json:"servers"`
			} `json:"tftp"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"shared": `{"cache_max_bytes":67108864,"cache_ttl":2000000000,"max_bytes":10737418240,"max_file_size":104857600,"module":"caddy_storage","storage":{"module":"file_system","root":"/srv/tftp"}}`,
		"other":  `{"module":"caddy_storage","storage":{"module":"file_system","root":"/srv/other"}}`,
		"tls":    `{"module":"caddy_storage"}`,
	}
	for name, w := range want {
		var norm any
		_ = json.Unmarshal(got.Apps.TFTP.Stores[name], &norm)
		b, _ := json.Marshal(norm)
		if string(b) != w {
			t.Errorf("store %s:\n got %s\nwant %s", name, b, w)
		}
	}
	if got.Apps.TFTP.Servers["b"].Store != "other" || got.Apps.TFTP.Servers["c"].Store != "tls" {
		t.Errorf("servers: %+v", got.Apps.TFTP.Servers)
	}

	for input, wantErr := range map[string]string{
		"store x caddy_storage {\n bogus 1\n}":                                         "unrecognized caddy_storage store directive: bogus",
		"store x caddy_storage {\n storage nosuch\n}":                                  "caddy.storage.nosuch",
		"store x caddy_storage {\n storage\n}":                                         "wrong argument count",
		"store x caddy_storage {\n storage file_system /a\n storage file_system /b\n}": "storage is already set",
		"store x caddy_storage {\n cache_ttl 0s\n}":                                    "cache_ttl must be positive",
		"store x caddy_storage {\n cache_max_bytes lots\n}":                            "bad size",
		"store x caddy_storage {\n storage file_system\n}":                             "missing root path",
	} {
		s := new(caddystorage.StorageStore)
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: error %v, want %q", input, err, wantErr)
		}
	}
}

// TestStorageStoreTwoInstances runs two Caddy processes sharing one
// file_system storage.
func TestStorageStoreTwoInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Caddy processes")
	}
	bin := ssBuildDevCaddy(t)
	shared := t.TempDir()
	const ttl = time.Second
	a := newSSCaddyProcess(t, bin, "a", shared, ttl)
	b := newSSCaddyProcess(t, bin, "b", shared, ttl)
	a.start(t)
	b.start(t)
	ca := &testClient{server: loopback4(a.tftpPort)}
	cb := &testClient{server: loopback4(b.tftpPort)}

	// Put through one, get through the other.
	files := map[string][]byte{
		"kernel.img":           randomBytes(t, 300_000),
		"pxelinux.cfg/default": []byte("DEFAULT linux\nLABEL linux\n  KERNEL kernel.img\n"),
		"empty":                {},
	}
	for name, data := range files {
		if err := ca.put(name, data); err != nil {
			t.Fatalf("put %s through a: %v", name, err)
		}
		got, err := cb.get(name)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("get %s through b: %d bytes, %v; want %d identical bytes", name, len(got), err, len(data))
		}
	}

	// Replace through b; a, which has the old version cached, serves the
	// new one within the TTL.
	if got, err := ca.get("kernel.img"); err != nil || !bytes.Equal(got, files["kernel.img"]) {
		t.Fatalf("get through a: %v", err)
	}
	v2 := randomBytes(t, 250_000)
	if err := cb.put("kernel.img", v2); err != nil {
		t.Fatalf("replace through b: %v", err)
	}
	replaced := time.Now()
	for {
		got, err := ca.get("kernel.img")
		if err != nil {
			t.Fatalf("get through a: %v", err)
		}
		if bytes.Equal(got, v2) {
			t.Logf("a served the replacement %v after it was written (cache_ttl %v)", time.Since(replaced).Round(time.Millisecond), ttl)
			break
		}
		if !bytes.Equal(got, files["kernel.img"]) {
			t.Fatal("a served neither version")
		}
		if time.Since(replaced) > ttl+time.Second {
			t.Fatalf("a still serves the old version %v after the replacement", time.Since(replaced))
		}
		time.Sleep(50 * time.Millisecond)
	}
	files["kernel.img"] = v2

	// Concurrent puts of one name through both leave one whole version.
	for round := range 3 {
		name := fmt.Sprintf("race-%d.bin", round)
		inputs := [][]byte{randomBytes(t, 200_000+round), randomBytes(t, 150_000+round)}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, c := range []*testClient{{server: loopback4(a.tftpPort)}, {server: loopback4(b.tftpPort)}} {
			wg.Go(func() { errs[i] = c.put(name, inputs[i]) })
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: concurrent puts: %v; %v", round, errs[0], errs[1])
		}
		onDisk, err := os.ReadFile(filepath.Join(shared, "tftp", "shared", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(onDisk, inputs[0]) && !bytes.Equal(onDisk, inputs[1]) {
			t.Fatalf("round %d: storage holds %d bytes matching neither put", round, len(onDisk))
		}
		// Both instances converge on that version within the TTL.
		deadline := time.Now().Add(ttl + time.Second)
		for _, c := range []*testClient{ca, cb} {
			for {
				got, err := c.get(name)
				if err != nil {
					t.Fatalf("get %s: %v", name, err)
				}
				if bytes.Equal(got, onDisk) {
					break
				}
				if !bytes.Equal(got, inputs[0]) && !bytes.Equal(got, inputs[1]) {
					t.Fatalf("round %d: served %d bytes matching neither put", round, len(got))
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d: instance still serves the losing version", round)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		files[name] = onDisk
	}
	if locks, _ := os.ReadDir(filepath.Join(shared, "locks")); len(locks) != 0 {
		t.Errorf("%d lock files left after the puts", len(locks))
	}

	// Stop a with `caddy stop`, run it again: everything is still served,
	// from storage since its cache is gone.
	a.stop(t)
	if _, err := ca.get("kernel.img"); err == nil {
		t.Fatal("a still answers after caddy stop")
	}
	a.start(t)
	for name, data := range files {
		got, err := ca.get(name)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("after restart, get %s through a: %d bytes, %v; want %d identical bytes", name, len(got), err, len(data))
		}
	}
}

// ssBuildDevCaddy builds the dev binary from the repo root into a
// temporary directory.
func ssBuildDevCaddy(t *testing.T) string {
	t.Helper()
	return relBuildCaddy(t) // one build per test run, shared with the other process tests
}

// ssCaddyProcess is one Caddy instance run from the dev binary.
type ssCaddyProcess struct {
	bin, name, dir, config, log string
	tftpPort, adminPort         uint16
	cmd                         *exec.Cmd
	done                        chan struct{}
}

func newSSCaddyProcess(t *testing.T, bin, name, sharedDir string, ttl time.Duration) *ssCaddyProcess {
	t.Helper()
	p := &ssCaddyProcess{bin: bin, name: name, dir: t.TempDir(), tftpPort: freePort(t), adminPort: ssFreeTCPPort(t)}
	p.config = filepath.Join(p.dir, "Caddyfile")
	p.log = filepath.Join(p.dir, "caddy.log")
	cf := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	tftp {
		listen 127.0.0.1:%d
		store shared
		store shared caddy_storage {
			storage file_system %s
			cache_ttl %s
		}
	}
}
`, p.adminPort, p.tftpPort, sharedDir, ttl)
	if err := os.WriteFile(p.config, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			if b, err := os.ReadFile(p.log); err == nil {
				t.Logf("caddy %s log:\n%s", p.name, ssTail(string(b), 40))
			}
		}
	})
	return p
}

func (p *ssCaddyProcess) env() []string {
	return append(os.Environ(),
		"XDG_CONFIG_HOME="+filepath.Join(p.dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(p.dir, "data"),
		"HOME="+p.dir,
	)
}

// start runs the process and waits until its TFTP server answers.
func (p *ssCaddyProcess) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(p.bin, "run", "--config", p.config, "--adapter", "caddyfile")
	p.cmd.Env = p.env()
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}(p.cmd, p.done)
	c := &testClient{server: loopback4(p.tftpPort), timeout: 200 * time.Millisecond, retries: 1}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.get("no-such-file-probe")
		if errorCode(err) == int(ErrCodeFileNotFound) {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("caddy %s exited during start", p.name)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy %s not answering TFTP: %v", p.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop runs `caddy stop` against the instance's admin endpoint and waits
// for the process to exit.
func (p *ssCaddyProcess) stop(t *testing.T) {
	t.Helper()
	cmd := exec.Command(p.bin, "stop", "--address", fmt.Sprintf("127.0.0.1:%d", p.adminPort))
	cmd.Env = p.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy stop: %v\n%s", err, out)
	}
	select {
	case <-p.done:
	case <-time.After(45 * time.Second):
		t.Fatalf("caddy %s did not exit after caddy stop", p.name)
	}
}

func (p *ssCaddyProcess) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func ssFreeTCPPort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func ssTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestStorageStoreAdminAPIAndMetrics checks that the admin API, the store
// metrics and the limits work on a caddy_storage store as on the memory
// store.
func TestStorageStoreAdminAPIAndMetrics(t *testing.T) {
	port := freePort(t)
	dir := t.TempDir()
	a := startAdminCaddy(t, lines(
		fmt.Sprintf("listen udp4/127.0.0.1:%d", port),
		"store shared caddy_storage {",
		"storage file_system "+dir,
		"max_file_size 64KiB",
		"}",
	))
	server := loopback4(port)

	// HTTP upload, TFTP download.
	data := randomBytes(t, 40_000)
	a.expect(http.StatusCreated, http.MethodPut, "/tftp/stores/shared/files/fw/image.bin", data)
	got, err := (&testClient{server: server}).get("fw/image.bin")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("TFTP get of an HTTP upload: %d bytes, %v", len(got), err)
	}
	// TFTP upload, listed with its checksum.
	up := randomBytes(t, 3000)
	if err := (&testClient{server: server}).put("cfg/switch1", up); err != nil {
		t.Fatal(err)
	}
	f := a.files("shared")["cfg/switch1"]
	if f.Size != int64(len(up)) || f.SHA256 != sha256Hex(up) {
		t.Fatalf("listing shows %+v", f)
	}
	stores := a.stores()
	if len(stores) != 1 || stores[0].Module != "caddy_storage" || stores[0].Files != 2 || stores[0].MaxFileSize != 64<<10 {
		t.Fatalf("stores = %+v", stores)
	}
	// Limits: 413 over HTTP, ERROR 3 over TFTP.
	a.expectError(http.StatusRequestEntityTooLarge, http.MethodPut, "/tftp/stores/shared/files/big", bytes.NewReader(make([]byte, 65<<10)))
	if err := (&testClient{server: server}).put("big", make([]byte, 65<<10)); errorCode(err) != int(ErrCodeDiskFull) {
		t.Fatalf("TFTP put over max_file_size: %v, want ERROR 3", err)
	}
	// Store metrics.
	if n := a.metric("caddy_tftp_store_files", "store", "shared"); n != 2 {
		t.Fatalf("caddy_tftp_store_files{store=shared} = %v, want 2", n)
	}
	// Delete.
	a.expect(http.StatusNoContent, http.MethodDelete, "/tftp/stores/shared/files/fw/image.bin", nil)
	if _, err := (&testClient{server: server}).get("fw/image.bin"); errorCode(err) != int(ErrCodeFileNotFound) {
		t.Fatalf("get after delete: %v, want ERROR 1", err)
	}
}
