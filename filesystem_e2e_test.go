package tftp

// End-to-end tests of the file_system store: a real directory served to
// the real clients, escapes refused over the wire, and uploads that never
// leave a truncated file whatever happens to the client, the server or the
// disk.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fsBody is the tftp block of a server on port that serves dir from a
// file_system store.
func fsBody(port uint16, dir string, extra ...string) string {
	return lines(append([]string{
		fmt.Sprintf("store disk file_system {\n root %s\n create_dirs\n}", dir),
		fmt.Sprintf("listen 127.0.0.1:%d [::1]:%d", port, port),
	}, extra...)...)
}

// fsTempFiles lists upload temporary files under dir.
func fsTempFiles(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tftp-upload-") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// writeTree writes data at name under dir, creating its directories.
func writeTree(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond every 10ms until it holds or the bound passes.
func waitFor(t testing.TB, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFileSystemStoreServesTreeToRealClients(t *testing.T) {
	requireAllClients(t)
	dir := t.TempDir()
	files := map[string][]byte{
		"pxelinux.0":             randomBytes(t, 42_000),
		"pxelinux.cfg/default":   []byte("DEFAULT linux\nLABEL linux\n  KERNEL vmlinuz\n"),
		"dir/sub/file.bin":       randomBytes(t, 512),
		"with space.bin":         randomBytes(t, 1500),
		"empty":                  {},
		"deep/a/b/c/d/e/f/g.bin": randomBytes(t, 3000),
	}
	for name, data := range files {
		writeTree(t, dir, name, data)
	}
	port := freePort(t)
	startCaddy(t, tftpCaddyfile(fsBody(port, dir)))
	server := loopback4(port)

	for _, c := range realClients {
		t.Run(c.name, func(t *testing.T) {
			for name, data := range files {
				if c.name == "busybox" && name == "empty" {
					// busybox asks for tsize and reports an empty file
					// as an error of its own; the other three cover it.
					continue
				}
				dst := filepath.Join(t.TempDir(), "out")
				if err := c.get(t.Context(), server, name, dst, clientOpts{}); err != nil {
					t.Fatalf("get %s: %v", name, err)
				}
				requireSameBytes(t, c.name+" get "+name, readLocal(t, dst), data)
			}
		})
	}

	// A file created, replaced and deleted on disk is seen by the next
	// request, with no reload.
	hpa := interopClient(t, "tftp-hpa")
	dst := filepath.Join(t.TempDir(), "out")
	v1, v2 := randomBytes(t, 700), randomBytes(t, 900)
	writeLocal(t, dir, "live.bin", v1)
	if err := hpa.get(t.Context(), server, "live.bin", dst, clientOpts{}); err != nil {
		t.Fatal(err)
	}
	requireSameBytes(t, "created on disk", readLocal(t, dst), v1)
	writeLocal(t, dir, "live.bin", v2)
	if err := hpa.get(t.Context(), server, "live.bin", dst, clientOpts{}); err != nil {
		t.Fatal(err)
	}
	requireSameBytes(t, "replaced on disk", readLocal(t, dst), v2)
	if err := os.Remove(filepath.Join(dir, "live.bin")); err != nil {
		t.Fatal(err)
	}
	_, err := (&testClient{server: server}).get("live.bin")
	if errorCode(err) != int(ErrCodeFileNotFound) {
		t.Fatalf("deleted on disk: %v", err)
	}

	// Netascii is translated as it streams, and tftp-hpa turns it back.
	if err := hpa.get(t.Context(), server, "pxelinux.cfg/default", dst, clientOpts{Netascii: true}); err != nil {
		t.Fatal(err)
	}
	requireSameBytes(t, "netascii get", readLocal(t, dst), files["pxelinux.cfg/default"])

	// An upload from a real client lands on disk.
	up := randomBytes(t, 5000)
	src := writeLocal(t, t.TempDir(), "src", up)
	if err := interopClient(t, "curl").put(t.Context(), server, "uploads/new.bin", src, clientOpts{}); err != nil {
		t.Fatal(err)
	}
	requireSameBytes(t, "uploaded file on disk", readLocal(t, filepath.Join(dir, "uploads/new.bin")), up)
}

// TestFileSystemStoreRollover reads a 40 MiB file at blksize 512, so block
// numbers wrap past 65535.
func TestFileSystemStoreRollover(t *testing.T) {
	requireAllClients(t)
	dir := t.TempDir()
	data := randomBytes(t, 40<<20)
	writeLocal(t, dir, "big.img", data)
	port := freePort(t)
	startCaddy(t, tftpCaddyfile(fsBody(port, dir)))
	dst := filepath.Join(t.TempDir(), "out")
	if err := interopClient(t, "curl").get(t.Context(), loopback4(port), "big.img", dst, clientOpts{BlockSize: 512}); err != nil {
		t.Fatal(err)
	}
	requireSameBytes(t, "40 MiB at blksize 512", readLocal(t, dst), data)
}

func TestFileSystemStoreRefusesEscapes(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "root")
	writeLocal(t, base, "secret", []byte("secret"))
	writeTree(t, base, "outdir/secret2", []byte("secret2"))
	writeTree(t, dir, "a/f.txt", []byte("inside"))
	for link, target := range map[string]string{
		"out_file": "../secret",
		"out_dir":  "../outdir",
		"out_abs":  filepath.Join(base, "secret"),
		"etc":      "/etc/hostname",
		"loop1":    "loop2",
		"loop2":    "loop1",
		"in_rel":   "a/f.txt",
		"in_abs":   filepath.Join(dir, "a/f.txt"),
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	startCaddy(t, tftpCaddyfile(fsBody(port, dir)))
	c := &testClient{server: loopback4(port)}

	for _, name := range []string{"in_rel", "in_abs", "/a/f.txt", `a\f.txt`, `\a\f.txt`} {
		if got, err := c.get(name); err != nil || string(got) != "inside" {
			t.Errorf("%q: %q, %v", name, got, err)
		}
	}
	for name, want := range map[string]ErrorCode{
		"../secret":            ErrCodeAccessViolated,
		`..\secret`:            ErrCodeAccessViolated,
		"a/../../secret":       ErrCodeAccessViolated,
		`a\..\..\secret`:       ErrCodeAccessViolated,
		"out_file":             ErrCodeAccessViolated,
		"out_dir/secret2":      ErrCodeAccessViolated,
		"out_abs":              ErrCodeAccessViolated,
		"etc":                  ErrCodeAccessViolated,
		"loop1":                ErrCodeAccessViolated,
		"/etc/passwd":          ErrCodeAccessViolated, // through the root's etc link
		"/var/lib/passwd":      ErrCodeFileNotFound,   // the root's var/lib/passwd
		"a":                    ErrCodeAccessViolated,
		"a/f.txt/x":            ErrCodeFileNotFound,
		".tftp-upload-1-x.tmp": ErrCodeFileNotFound,
	} {
		got, err := c.get(name)
		if errorCode(err) != int(want) {
			t.Errorf("%q: got %q, %v; want error %d", name, got, err, want)
		}
	}
	for _, name := range []string{"out_file", "out_dir/new", "../new", `..\new`} {
		if err := c.put(name, []byte("written")); errorCode(err) != int(ErrCodeAccessViolated) {
			t.Errorf("put %q: %v, want error 2", name, err)
		}
	}
	if got := readLocal(t, filepath.Join(base, "secret")); string(got) != "secret" {
		t.Errorf("file outside the root changed: %q", got)
	}
	for _, p := range []string{"outdir/new", "new"} {
		if _, err := os.Stat(filepath.Join(base, p)); err == nil {
			t.Errorf("%s written outside the root", p)
		}
	}
}

// TestFileSystemStoreReaderKeepsVersion replaces a file on disk, as mv
// does, in the middle of a read: the read finishes with the old bytes.
func TestFileSystemStoreReaderKeepsVersion(t *testing.T) {
	dir := t.TempDir()
	old := randomBytes(t, 20*512+100)
	writeLocal(t, dir, "fw.bin", old)
	port := freePort(t)
	startCaddy(t, tftpCaddyfile(fsBody(port, dir)))

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.WriteToUDPAddrPort(appendRequest(nil, opRRQ, "fw.bin", "octet"), loopback4(port)); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 1024)
	for want := uint16(1); ; want++ {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, peer, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("block %d: %v", want, err)
		}
		block, payload, ok := parseBlockPacket(buf[:n])
		if !ok || block != want {
			t.Fatalf("expected DATA %d, got % x", want, buf[:min(n, 8)])
		}
		got = append(got, payload...)
		if want == 3 {
			// Replace the file while the read is under way.
			writeLocal(t, dir, "fw.new", randomBytes(t, len(old)))
			if err := os.Rename(filepath.Join(dir, "fw.new"), filepath.Join(dir, "fw.bin")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.WriteToUDPAddrPort(appendAck(nil, block), peer); err != nil {
			t.Fatal(err)
		}
		if len(payload) < 512 {
			break
		}
		if want > 100 {
			t.Fatal("read does not end")
		}
	}
	requireSameBytes(t, "read across a replacement", got, old)
}

// TestFileSystemStoreUploadSafety ends uploads badly in every way a real
// network and machine can: the previous version, or nothing, is always
// what is on disk, never a truncated file.
func TestFileSystemStoreUploadSafety(t *testing.T) {
	requireAllClients(t)
	t.Run("client killed", func(t *testing.T) {
		dir := t.TempDir()
		old := randomBytes(t, 4000)
		writeLocal(t, dir, "fw.bin", old)
		port := freePort(t)
		// Without options the client cannot stretch the server's timeout.
		startCaddy(t, tftpCaddyfile(fsBody(port, dir, "timeout 100ms", "retries 2", "disable_options")))
		// curl sends a large file at blksize 512; kill it once the upload
		// has begun writing its temporary file.
		src := writeLocal(t, t.TempDir(), "src", randomBytes(t, 64<<20))
		cmd := exec.Command(curlBin, "-s", "-T", src, curlURL(loopback4(port), "fw.bin", false))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the upload's temporary file", 20*time.Second, func() bool { return len(fsTempFiles(dir)) == 1 })
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		// The server gives up after its retries and removes the file.
		waitFor(t, "the abandoned upload to be discarded", 20*time.Second, func() bool { return len(fsTempFiles(dir)) == 0 })
		requireSameBytes(t, "after a killed client", readLocal(t, filepath.Join(dir, "fw.bin")), old)
	})

	t.Run("server killed", func(t *testing.T) {
		bin := buildDevCaddy(t)
		dir := t.TempDir()
		old := randomBytes(t, 4000)
		writeLocal(t, dir, "fw.bin", old)
		port := freePort(t)
		cfg := writeLocal(t, t.TempDir(), "Caddyfile", []byte(tftpCaddyfile(fsBody(port, dir))))
		start := func() *exec.Cmd {
			cmd := exec.Command(bin, "run", "--config", string(cfg), "--adapter", "caddyfile")
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			c := &testClient{server: loopback4(port), timeout: 200 * time.Millisecond, retries: 1}
			waitFor(t, "the server to answer", 30*time.Second, func() bool {
				_, err := c.get("probe-missing")
				return errorCode(err) == int(ErrCodeFileNotFound)
			})
			return cmd
		}
		server := start()
		src := writeLocal(t, t.TempDir(), "src", randomBytes(t, 64<<20))
		client := exec.Command(curlBin, "-s", "-T", src, curlURL(loopback4(port), "fw.bin", false))
		if err := client.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = client.Process.Kill(); _ = client.Wait() }()
		waitFor(t, "the upload's temporary file", 20*time.Second, func() bool { return len(fsTempFiles(dir)) == 1 })
		if err := server.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = server.Wait()
		requireSameBytes(t, "after the server was killed", readLocal(t, filepath.Join(dir, "fw.bin")), old)
		if len(fsTempFiles(dir)) != 1 {
			t.Fatal("expected the killed upload's temporary file to remain until restart")
		}
		server = start()
		defer func() { _ = server.Process.Signal(syscall.SIGKILL); _ = server.Wait() }()
		if tmp := fsTempFiles(dir); len(tmp) != 0 {
			t.Fatalf("restart left %v", tmp)
		}
		got, err := (&testClient{server: loopback4(port)}).get("fw.bin")
		if err != nil {
			t.Fatal(err)
		}
		requireSameBytes(t, "served after restart", got, old)
	})

	t.Run("disk full", func(t *testing.T) {
		mnt := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", mnt).CombinedOutput(); err != nil {
			t.Fatalf("mounting a small tmpfs (needs root, as in CI): %v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
		old := randomBytes(t, 100_000)
		writeLocal(t, mnt, "fw.bin", old)
		port := freePort(t)
		startCaddy(t, tftpCaddyfile(fsBody(port, mnt)))
		err := (&testClient{server: loopback4(port)}).put("fw.bin", randomBytes(t, 600_000))
		if errorCode(err) != int(ErrCodeDiskFull) {
			t.Fatalf("upload onto a full disk: %v, want error 3", err)
		}
		requireSameBytes(t, "after a full disk", readLocal(t, filepath.Join(mnt, "fw.bin")), old)
		waitFor(t, "the temporary file to go", 5*time.Second, func() bool { return len(fsTempFiles(mnt)) == 0 })
		// Room is there again once the failed upload is gone.
		if err := (&testClient{server: loopback4(port)}).put("fw.bin", randomBytes(t, 200_000)); err != nil {
			t.Fatalf("upload after a full disk: %v", err)
		}
	})
}

// TestFileSystemStoreAdminAndMetrics runs the admin API and the store
// metrics on a directory store.
func TestFileSystemStoreAdminAndMetrics(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, "cfg/a.txt", []byte("hello"))
	port := freePort(t)
	a := startAdminCaddy(t, fsBody(port, dir))
	files := a.files("disk")
	if f, ok := files["cfg/a.txt"]; !ok || f.Size != 5 {
		t.Fatalf("listing: %+v", files)
	}
	body := randomBytes(t, 3000)
	a.expect(201, "PUT", "/tftp/stores/disk/files/new/b.bin", body)
	requireSameBytes(t, "admin put on disk", readLocal(t, filepath.Join(dir, "new/b.bin")), body)
	requireSameBytes(t, "admin get", a.expect(200, "GET", "/tftp/stores/disk/files/new/b.bin", nil), body)
	a.expect(204, "DELETE", "/tftp/stores/disk/files/cfg/a.txt", nil)
	if _, err := os.Stat(filepath.Join(dir, "cfg/a.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("deleted through the admin API, still on disk: %v", err)
	}
	a.expectError(404, "DELETE", "/tftp/stores/disk/files/cfg/a.txt", nil)
	var found bool
	for _, s := range a.stores() {
		if s.Name == "disk" {
			found = true
			if s.Module != "file_system" {
				t.Errorf("module %q", s.Module)
			}
		}
	}
	if !found {
		t.Fatal("store not listed")
	}
	// The store's size reaches the metrics (counted when first asked).
	if n := a.metric("caddy_tftp_store_files", "store", "disk"); n < 1 {
		t.Errorf("caddy_tftp_store_files{store=disk} = %v", n)
	}
	if got, err := (&testClient{server: loopback4(port)}).get("new/b.bin"); err != nil || !bytes.Equal(got, body) {
		t.Errorf("TFTP get of an admin upload: %v", err)
	}
}
