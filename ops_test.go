package tftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// opsWriteTree creates files (name → contents, "/"-separated) under dir.
func opsWriteTree(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// opsLoadFails posts a config to /load and returns the error message, failing
// the test if the load succeeds.
func opsLoadFails(t testing.TB, a *adminInstance, body string) string {
	t.Helper()
	status, b := a.do(http.MethodPost, "/load", bytes.NewReader(a.config(body)),
		"Content-Type", "application/json", "Cache-Control", "must-revalidate")
	if status < 400 {
		t.Fatalf("load succeeded (%d), want failure:\n%s", status, body)
	}
	return string(b)
}

// TestOpsPreload loads a nested directory into the store, serves it over
// TFTP with real clients, and checks reload and failure behaviour.
func TestOpsPreload(t *testing.T) {
	requireClient(t, curlBin)
	requireClient(t, busyboxBin)
	port := freePort(t)
	src := t.TempDir()
	tree := map[string][]byte{
		"pxelinux.0":                    randomBytes(t, 20_000),
		"pxelinux.cfg/default":          []byte("DEFAULT linux\nLABEL linux\n  KERNEL images/vmlinuz\n"),
		"images/deep/nested/initrd.img": randomBytes(t, 150_000),
		"empty.txt":                     {},
	}
	opsWriteTree(t, src, tree)
	if err := os.MkdirAll(filepath.Join(src, "no-files", "here"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(src, "pxelinux.0"), filepath.Join(src, "link.0")); err != nil {
		t.Fatal(err)
	}
	tree["link.0"] = tree["pxelinux.0"]

	body := lines(
		fmt.Sprintf("listen udp4/127.0.0.1:%d", port),
		"store default {",
		"max_file_size 200KiB",
		"max_bytes 1MiB",
		"preload "+src,
		"}",
	)
	if cfg := adaptCaddyfile(t, tftpCaddyfile(body)); !bytes.Contains(cfg, []byte(`"preload":"`+src+`"`)) {
		t.Fatalf("adapted config lacks the preload directory: %s", cfg)
	}
	a := startAdminCaddy(t, body)
	server := loopback4(port)
	dir := t.TempDir()

	files := a.files("default")
	if len(files) != len(tree) {
		t.Fatalf("store holds %d files, want %d: %v", len(files), len(tree), files)
	}
	for name, data := range tree {
		if f, ok := files[name]; !ok || f.Size != int64(len(data)) || f.SHA256 != sha256Hex(data) {
			t.Fatalf("%s: listed as %+v, want %d bytes with sha256 %s", name, f, len(data), sha256Hex(data))
		}
	}
	local := filepath.Join(dir, "initrd.img")
	if err := curlGet(adminCtx(t), server, "images/deep/nested/initrd.img", local, clientOpts{BlockSize: 1468}); err != nil {
		t.Fatal(err)
	}
	requireSameBytes(t, "curl get of a preloaded file", readLocal(t, local), tree["images/deep/nested/initrd.img"])
	local = filepath.Join(dir, "default")
	if err := busyboxGet(adminCtx(t), server, "pxelinux.cfg/default", local, clientOpts{}); err != nil {
		t.Fatal(err)
	}
	requireSameBytes(t, "busybox get of a preloaded file", readLocal(t, local), tree["pxelinux.cfg/default"])

	// Preloaded files are ordinary files: they can be replaced and are
	// joined by uploads; a reload loads the directory again over them and
	// keeps the rest.
	putFile(t, server, "pxelinux.cfg/default", []byte("changed"))
	putFile(t, server, "uploaded.txt", []byte("kept across reloads"))
	a.reload("")
	files = a.files("default")
	if f := files["pxelinux.cfg/default"]; f.SHA256 != sha256Hex(tree["pxelinux.cfg/default"]) {
		t.Fatal("reload did not restore the preloaded pxelinux.cfg/default")
	}
	if f := files["uploaded.txt"]; f.SHA256 != sha256Hex([]byte("kept across reloads")) {
		t.Fatal("an uploaded file did not survive the reload")
	}
	// New contents on disk are picked up by the next load.
	opsWriteTree(t, src, map[string][]byte{"pxelinux.cfg/default": []byte("v2"), "new/file": []byte("new")})
	a.reload("")
	for name, want := range map[string]string{"pxelinux.cfg/default": "v2", "new/file": "new"} {
		if got, err := (&testClient{server: server}).get(name); err != nil || string(got) != want {
			t.Fatalf("%s after reload: %q, %v; want %q", name, got, err, want)
		}
	}

	// Loads that must fail, leaving the running config serving.
	if msg := opsLoadFails(t, a, strings.Replace(body, src, filepath.Join(src, "missing"), 1)); !strings.Contains(msg, "preload") ||
		!strings.Contains(msg, filepath.Join(src, "missing")) || !strings.Contains(msg, "no such file or directory") {
		t.Fatalf("missing preload directory: %s", msg)
	}
	if msg := opsLoadFails(t, a, strings.Replace(body, "max_file_size 200KiB", "max_file_size 100KiB", 1)); !strings.Contains(msg, "initrd.img") ||
		!strings.Contains(msg, "max_file_size") {
		t.Fatalf("preloaded file over max_file_size: %s", msg)
	}
	if msg := opsLoadFails(t, a, strings.Replace(body, "max_bytes 1MiB", "max_bytes 150000", 1)); !strings.Contains(msg, "max_bytes") {
		t.Fatalf("preload over max_bytes: %s", msg)
	}
	notDir := filepath.Join(src, "pxelinux.0")
	if msg := opsLoadFails(t, a, strings.Replace(body, src, notDir, 1)); !strings.Contains(msg, "not a directory") {
		t.Fatalf("preload of a file: %s", msg)
	}
	// Preloaded files must fit next to the files already in the store:
	// uploads are never dropped to make room.
	bigUpload := bytes.Repeat([]byte("u"), 60_000)
	a.expect(http.StatusCreated, http.MethodPut, "/tftp/stores/default/files/big-upload", bigUpload)
	used := 0
	for _, f := range a.files("default") {
		used += int(f.Size)
	}
	limit := used - len(bigUpload)/2
	if msg := opsLoadFails(t, a, strings.Replace(body, "max_bytes 1MiB", "max_bytes "+strconv.Itoa(limit), 1)); !strings.Contains(msg, "max_bytes") {
		t.Fatalf("preload into a store without room: %s", msg)
	}
	if got, err := (&testClient{server: server}).get("images/deep/nested/initrd.img"); err != nil || !bytes.Equal(got, tree["images/deep/nested/initrd.img"]) {
		t.Fatalf("after failed loads: %d bytes, %v", len(got), err)
	}
}

// TestOpsPreloadBadName refuses a preload directory holding a file whose
// name is not a valid TFTP name.
func TestOpsPreloadBadName(t *testing.T) {
	src := t.TempDir()
	opsWriteTree(t, src, map[string][]byte{"ok.bin": []byte("ok")})
	long := strings.Repeat("d", 250)
	deep := filepath.Join(src, long, long, long, long, long)
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deep, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	err := reloadCaddyAdminOff(t, lines(fmt.Sprintf("listen udp4/127.0.0.1:%d", port), "store default {", "preload "+src, "}"))
	if err == nil || !strings.Contains(err.Error(), "not usable as a TFTP file name") {
		t.Fatalf("load with a too-long name: %v", err)
	}
}

// reloadCaddyAdminOff loads a tftp block with the admin API off and returns
// the load error; a successful load is stopped when the test ends.
func reloadCaddyAdminOff(t testing.TB, body string) error {
	t.Helper()
	err := caddy.Load(adaptCaddyfile(t, tftpCaddyfile(body)), true)
	if err == nil {
		t.Cleanup(func() { _ = caddy.Stop() })
	}
	return err
}

// TestOpsRewritesAndRoot serves per-client files through placeholder
// rewrites and group references under a root prefix, next to a plain server
// sharing the store.
func TestOpsRewritesAndRoot(t *testing.T) {
	requireClient(t, curlBin)
	requireClient(t, busyboxBin)
	requireClient(t, atftpBin)
	pxePort, plainPort := freePort(t), freePort(t)
	a := startAdminCaddy(t, lines(
		"server pxe {",
		fmt.Sprintf("listen :%d", pxePort),
		"root lab1",
		"rewrite ^pxelinux.cfg/default$ pxelinux.cfg/{remote_host}",
		"rewrite ^boot/(.*)$ images/$1",
		"rewrite ^(.*)\\.legacy$ old/$1-{tftp.server}",
		"rewrite ^legacy/(?P<base>.+)$ old/${base}-{tftp.server}",
		"}",
		"server plain {",
		fmt.Sprintf("listen udp4/127.0.0.1:%d", plainPort),
		"}",
	))
	kernel := randomBytes(t, 100_000)
	for name, data := range map[string][]byte{
		"lab1/pxelinux.cfg/127.0.0.1": []byte("per-client v4"),
		"lab1/pxelinux.cfg/::1":       []byte("per-client v6"),
		"lab1/pxelinux.cfg/default":   []byte("generic"),
		"lab1/images/vmlinuz":         kernel,
		"lab1/other.txt":              []byte("under the root"),
		"lab1/old/menu-pxe":           []byte("legacy"),
		"pxelinux.cfg/default":        []byte("top level"),
	} {
		a.expect(http.StatusCreated, http.MethodPut, "/tftp/stores/default/files/"+name, data)
	}
	pxe4, pxe6, plain := loopback4(pxePort), loopback6(pxePort), loopback4(plainPort)
	dir := t.TempDir()
	ctx := adminCtx(t)

	local := filepath.Join(dir, "cfg")
	if err := curlGet(ctx, pxe4, "pxelinux.cfg/default", local, clientOpts{}); err != nil {
		t.Fatal(err)
	}
	requireSameBytes(t, "per-client file for 127.0.0.1", readLocal(t, local), []byte("per-client v4"))
	if err := busyboxGet(ctx, pxe6, "pxelinux.cfg/default", local, clientOpts{}); err != nil {
		t.Fatal(err)
	}
	requireSameBytes(t, "per-client file for ::1", readLocal(t, local), []byte("per-client v6"))
	if err := atftpGet(ctx, pxe4, "boot/vmlinuz", local, clientOpts{BlockSize: 1024}); err != nil {
		t.Fatal(err)
	}
	requireSameBytes(t, "group reference rewrite", readLocal(t, local), kernel)

	for _, tc := range []struct {
		server netip.AddrPort
		name   string
		want   string
	}{
		{pxe4, `\pxelinux.cfg\default`, "per-client v4"}, // cleaned before matching
		{pxe4, "/other.txt", "under the root"},
		{pxe4, "menu.legacy", "legacy"},
		{pxe4, "legacy/menu", "legacy"}, // ${name} group reference next to a placeholder
		{plain, "pxelinux.cfg/default", "top level"},
		{plain, "lab1/pxelinux.cfg/default", "generic"},
	} {
		got, err := (&testClient{server: tc.server}).get(tc.name)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s get %q: %q, %v; want %q", tc.server, tc.name, got, err, tc.want)
		}
	}
	// The root cannot be escaped, before or after rewriting.
	for _, name := range []string{"../pxelinux.cfg/default", "boot/../../x"} {
		if _, err := (&testClient{server: pxe4}).get(name); errorCode(err) != int(ErrCodeAccessViolated) && errorCode(err) != int(ErrCodeFileNotFound) {
			t.Fatalf("get %q: %v, want ERROR 1 or 2", name, err)
		}
	}
	if _, err := (&testClient{server: pxe4}).get("../pxelinux.cfg/default"); errorCode(err) != int(ErrCodeAccessViolated) {
		t.Fatalf("get above the root: %v, want ERROR 2", err)
	}
	// Uploads land under the root too.
	putFile(t, pxe4, "uploads/dev.conf", []byte("conf"))
	if f, ok := a.files("default")["lab1/uploads/dev.conf"]; !ok || f.SHA256 != sha256Hex([]byte("conf")) {
		t.Fatal("upload through the root server not stored under lab1/")
	}
}

// opsRawGet reads a file in lock-step from a raw socket and fails if any
// packet comes from an address other than server.
func opsRawGet(server netip.AddrPort, name string, blksize int) ([]byte, error) {
	network := "udp4"
	if server.Addr().Is6() {
		network = "udp6"
	}
	conn, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	req := appendRequest(nil, opRRQ, name, "octet", option{"blksize", strconv.Itoa(blksize)})
	if _, err := conn.WriteToUDPAddrPort(req, server); err != nil {
		return nil, err
	}
	var out []byte
	last, bs, expected, retries := req, defaultBlockSize, uint16(1), 0
	buf := make([]byte, 70000)
	for range 100_000 {
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if isTimeout(err) {
			if retries++; retries > 5 {
				return out, errors.New("timed out")
			}
			if _, err := conn.WriteToUDPAddrPort(last, server); err != nil {
				return out, err
			}
			continue
		}
		if err != nil {
			return out, err
		}
		if from = unmapAddrPort(from); from != server {
			return out, fmt.Errorf("packet from %s, want every packet from the listening address %s", from, server)
		}
		pkt := buf[:n]
		switch opcode(pkt) {
		case opOACK:
			opts, err := parseOACK(pkt)
			if err != nil {
				return out, err
			}
			for _, o := range opts {
				if o.name == "blksize" {
					bs, _ = strconv.Atoi(o.value)
				}
			}
			last = appendAck(nil, 0)
		case opDATA:
			blk, payload, _ := parseBlockPacket(pkt)
			if blk == expected {
				out = append(out, payload...)
				last = appendAck(nil, blk)
				expected++
				if len(payload) < bs {
					_, err := conn.WriteToUDPAddrPort(last, server)
					return out, err
				}
			}
		case opERROR:
			code, msg, _ := parseError(pkt)
			return out, &serverError{code, msg}
		default:
			return out, fmt.Errorf("unexpected opcode %d", opcode(pkt))
		}
		retries = 0
		if _, err := conn.WriteToUDPAddrPort(last, server); err != nil {
			return out, err
		}
	}
	return out, errors.New("too many packets")
}

// TestOpsSinglePort runs real clients and concurrent transfers against a
// single-port server, checking that every reply leaves from the listening
// port.
func TestOpsSinglePort(t *testing.T) {
	requireClient(t, curlBin)
	requireClient(t, busyboxBin)
	requireClient(t, atftpBin)
	port := freePort(t)
	a := startAdminCaddy(t, lines("server single {", fmt.Sprintf("listen :%d", port), "single_port", "}"))
	dir := t.TempDir()

	// Real clients, both families.
	type realCase struct {
		name     string
		put, get func(ctx context.Context, server netip.AddrPort, remote, local string, o clientOpts) error
		o        clientOpts
	}
	for _, c := range []realCase{
		{"curl", curlPut, curlGet, clientOpts{BlockSize: 1024}},
		{"busybox", busyboxPut, busyboxGet, clientOpts{BlockSize: 1468}},
		{"atftp", atftpPut, atftpGet, clientOpts{BlockSize: 1024, WindowSize: 4, Tsize: true}},
	} {
		for _, server := range []netip.AddrPort{loopback4(port), loopback6(port)} {
			data := randomBytes(t, 200_000+len(c.name))
			remote := "single/" + c.name + "-" + familyName(server) + ".bin"
			src := writeLocal(t, dir, c.name+"-"+familyName(server)+".src", data)
			if err := c.put(adminCtx(t), server, remote, src, c.o); err != nil {
				t.Fatalf("%s put via %s: %v", c.name, server, err)
			}
			dst := filepath.Join(dir, c.name+"-"+familyName(server)+".dst")
			if err := c.get(adminCtx(t), server, remote, dst, c.o); err != nil {
				t.Fatalf("%s get via %s: %v", c.name, server, err)
			}
			requireSameBytes(t, c.name+" via "+server.String(), readLocal(t, dst), data)
			if f := a.files("default")[remote]; f.SHA256 != sha256Hex(data) {
				t.Fatalf("%s: stored %+v", remote, f)
			}
		}
	}

	// Uploads with blocks larger than a request datagram arrive whole.
	for _, bs := range []int{2048, 8192, maxBlockSize} {
		data := randomBytes(t, 3*bs+100)
		name := fmt.Sprintf("single/big-blocks-%d.bin", bs)
		c := &testClient{server: loopback4(port), options: []option{{"blksize", strconv.Itoa(bs)}, {"windowsize", "4"}}}
		if err := c.put(name, data); err != nil {
			t.Errorf("single-port put with blksize %d: %v", bs, err)
		}
		if f := a.files("default")[name]; f.Size != int64(len(data)) || f.SHA256 != sha256Hex(data) {
			t.Errorf("single-port put with blksize %d: stored %d bytes, want %d identical bytes", bs, f.Size, len(data))
		}
	}

	// Replies come from the listening port, not a transfer port.
	shared := randomBytes(t, 40_000)
	a.expect(http.StatusCreated, http.MethodPut, "/tftp/stores/default/files/single/shared.bin", shared)
	for _, server := range []netip.AddrPort{loopback4(port), loopback6(port)} {
		got, err := opsRawGet(server, "single/shared.bin", 512)
		if err != nil {
			t.Fatalf("raw get via %s: %v", server, err)
		}
		requireSameBytes(t, "raw get via "+server.String(), got, shared)
	}

	// Concurrent transfers from many client ports: 8 Go clients each put
	// and get their own file while 8 raw clients read a shared one.
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for i := range workers {
		server := loopback4(port)
		if i%2 == 1 {
			server = loopback6(port)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			data := make([]byte, 100_000+i*1111)
			for j := range data {
				data[j] = byte(i*31 + j*7)
			}
			name := fmt.Sprintf("single/worker-%d.bin", i)
			c := &testClient{server: server, options: []option{{"blksize", strconv.Itoa(512 << (i % 3))}, {"windowsize", strconv.Itoa(1 + i%4)}}}
			if err := c.put(name, data); err != nil {
				errs <- fmt.Errorf("worker %d put: %w", i, err)
				return
			}
			c = &testClient{server: server, options: c.options}
			got, err := c.get(name)
			if err != nil {
				errs <- fmt.Errorf("worker %d get: %w", i, err)
				return
			}
			if !bytes.Equal(got, data) {
				errs <- fmt.Errorf("worker %d: got %d bytes back, want %d identical bytes", i, len(got), len(data))
			}
		}()
		go func() {
			defer wg.Done()
			got, err := opsRawGet(server, "single/shared.bin", 1024)
			if err != nil {
				errs <- fmt.Errorf("raw reader %d: %w", i, err)
				return
			}
			if !bytes.Equal(got, shared) {
				errs <- fmt.Errorf("raw reader %d: got %d bytes, want %d identical bytes", i, len(got), len(shared))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
