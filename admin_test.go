package tftp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/metrics" // the admin /metrics endpoint
)

func init() {
	caddy.RegisterModule(testEventRecorder{})
}

// recordedEvent is an event seen by the test recorder handler.
type recordedEvent struct {
	name string
	data map[string]any
}

// recordedEvents receives every event the recorder handles. Handlers run
// on the transfer's goroutine, so the recorder never blocks: events beyond
// the buffer are dropped.
var recordedEvents = make(chan recordedEvent, 1024)

// testEventRecorder is an events handler (events.handlers.tftp_test_recorder)
// that puts each event into recordedEvents.
type testEventRecorder struct{}

func (testEventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "events.handlers.tftp_test_recorder",
		New: func() caddy.Module { return new(testEventRecorder) },
	}
}

func (testEventRecorder) Handle(_ context.Context, e caddy.Event) error {
	data := make(map[string]any, len(e.Data))
	for k, v := range e.Data {
		data[k] = v
	}
	select {
	case recordedEvents <- recordedEvent{name: e.Name(), data: data}:
	default:
	}
	return nil
}

// drainEvents discards events recorded so far.
func drainEvents() {
	for range cap(recordedEvents) {
		select {
		case <-recordedEvents:
		default:
			return
		}
	}
}

// awaitEvent waits for the named event about file; other events are
// discarded.
func awaitEvent(t testing.TB, name, file string) recordedEvent {
	t.Helper()
	timer := time.NewTimer(20 * time.Second)
	defer timer.Stop()
	for {
		select {
		case e := <-recordedEvents:
			if e.name == name && e.data["file"] == file {
				return e
			}
		case <-timer.C:
			t.Fatalf("no %s event for %q", name, file)
			return recordedEvent{}
		}
	}
}

// adminInstance is an in-process Caddy whose admin API listens on a
// loopback TCP port.
type adminInstance struct {
	t      testing.TB
	addr   string // host:port of the admin API
	body   string // the tftp block
	client *http.Client
}

// adminFreeTCPPort returns a TCP port that was free on 127.0.0.1.
func adminFreeTCPPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// adminTFTPEvents subscribes the test recorder to the tftp events.
const adminTFTPEvents = `{"subscriptions":[{"events":["tftp_upload_complete","tftp_download_complete","tftp_transfer_failed"],"handlers":[{"handler":"tftp_test_recorder"}]}]}`

// config returns the JSON config of the instance: the tftp block adapted
// from a Caddyfile with the admin API on a.addr, and an events app that
// feeds recordedEvents.
func (a *adminInstance) config(body string) []byte {
	a.t.Helper()
	cf := fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n\ttftp {\n%s\n\t}\n}\n", a.addr, body)
	cfg := adaptCaddyfile(a.t, string(caddyfile.Format([]byte(cf))))
	var m map[string]any
	if err := json.Unmarshal(cfg, &m); err != nil {
		a.t.Fatal(err)
	}
	apps, _ := m["apps"].(map[string]any)
	if apps == nil {
		apps = make(map[string]any)
		m["apps"] = apps
	}
	apps["events"] = json.RawMessage(adminTFTPEvents)
	out, err := json.Marshal(m)
	if err != nil {
		a.t.Fatal(err)
	}
	return out
}

// startAdminCaddy loads a config with the given tftp block and the admin
// API on a free loopback port; Caddy is stopped when the test ends.
func startAdminCaddy(t testing.TB, body string) *adminInstance {
	t.Helper()
	a := &adminInstance{
		t:      t,
		addr:   "127.0.0.1:" + strconv.Itoa(adminFreeTCPPort(t)),
		body:   body,
		client: &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 30 * time.Second},
	}
	drainEvents()
	if err := caddy.Load(a.config(body), true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() {
		a.client.CloseIdleConnections()
		stopCaddyAndAdmin(t)
	})
	return a
}

// do sends a request to the admin API and returns the status and body.
func (a *adminInstance) do(method, path string, body io.Reader, header ...string) (int, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, "http://"+a.addr+path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// expect sends a request and fails unless the status is want.
func (a *adminInstance) expect(want int, method, path string, body []byte) []byte {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	status, b := a.do(method, path, r)
	if status != want {
		a.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, b)
	}
	return b
}

// expectError checks an error answer: the status and a JSON error body.
func (a *adminInstance) expectError(want int, method, path string, body io.Reader) string {
	a.t.Helper()
	status, b := a.do(method, path, body)
	if status != want {
		a.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, b)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
		a.t.Fatalf("%s %s: error body %q is not JSON with an error message (%v)", method, path, b, err)
	}
	return e.Error
}

// reload posts the config (with a new tftp block, or the same one when
// body is empty) to /load, forcing a reload.
func (a *adminInstance) reload(body string) {
	a.t.Helper()
	if body == "" {
		body = a.body
	}
	status, b := a.do(http.MethodPost, "/load", bytes.NewReader(a.config(body)),
		"Content-Type", "application/json", "Cache-Control", "must-revalidate")
	if status != http.StatusOK {
		a.t.Fatalf("POST /load: status %d: %s", status, b)
	}
	a.body = body
}

type adminStore struct {
	Name        string `json:"name"`
	Module      string `json:"module"`
	Files       int    `json:"files"`
	Bytes       int64  `json:"bytes"`
	MaxBytes    int64  `json:"max_bytes"`
	MaxFileSize int64  `json:"max_file_size"`
}

type adminFile struct {
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
	SHA256  string    `json:"sha256"`
}

func (a *adminInstance) stores() []adminStore {
	a.t.Helper()
	var out []adminStore
	if err := json.Unmarshal(a.expect(http.StatusOK, http.MethodGet, "/tftp/stores", nil), &out); err != nil {
		a.t.Fatal(err)
	}
	return out
}

// files lists a store's files by name.
func (a *adminInstance) files(store string) map[string]adminFile {
	a.t.Helper()
	var list []adminFile
	if err := json.Unmarshal(a.expect(http.StatusOK, http.MethodGet, "/tftp/stores/"+store+"/files", nil), &list); err != nil {
		a.t.Fatal(err)
	}
	out := make(map[string]adminFile, len(list))
	for i, f := range list {
		if i > 0 && list[i-1].Name >= f.Name {
			a.t.Errorf("file list not sorted: %q before %q", list[i-1].Name, f.Name)
		}
		out[f.Name] = f
	}
	return out
}

func (a *adminInstance) transfers() []TransferInfo {
	a.t.Helper()
	var out []TransferInfo
	if err := json.Unmarshal(a.expect(http.StatusOK, http.MethodGet, "/tftp/transfers", nil), &out); err != nil {
		a.t.Fatal(err)
	}
	return out
}

// metric sums the samples of a metric in a /metrics scrape whose labels
// include every name="value" pair given.
func (a *adminInstance) metric(name string, labels ...string) float64 {
	a.t.Helper()
	body := a.expect(http.StatusOK, http.MethodGet, "/metrics", nil)
	var sum float64
	found := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(rest, labels[i]+`="`+labels[i+1]+`"`) {
				match = false
			}
		}
		if !match {
			continue
		}
		fields := strings.Fields(rest)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			a.t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0
	}
	return sum
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// adminCtx bounds one real client run.
func adminCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	t.Cleanup(cancel)
	return ctx
}

// TestAdminFilesRoundTrip uploads over HTTP and downloads over TFTP with
// curl, then the reverse with busybox, checking sizes and SHA-256 from the
// file listing; it also covers replace, delete, download and the store list.
func TestAdminFilesRoundTrip(t *testing.T) {
	requireClient(t, curlBin)
	requireClient(t, busyboxBin)
	port := freePort(t)
	a := startAdminCaddy(t, lines(
		fmt.Sprintf("listen udp4/127.0.0.1:%d", port),
		"store default {",
		"max_bytes 1MiB",
		"max_file_size 512KiB",
		"}",
		"store spare memory {",
		"}",
	))
	server := loopback4(port)
	dir := t.TempDir()

	stores := a.stores()
	if len(stores) != 2 || stores[0].Name != "default" || stores[1].Name != "spare" {
		t.Fatalf("stores = %+v, want default and spare", stores)
	}
	if s := stores[0]; s.Module != "memory" || s.MaxBytes != 1<<20 || s.MaxFileSize != 512<<10 || s.Files != 0 {
		t.Fatalf("default store = %+v", s)
	}

	// HTTP PUT, then TFTP get with curl.
	data := randomBytes(t, 300_001)
	var put adminFile
	if err := json.Unmarshal(a.expect(http.StatusCreated, http.MethodPut, "/tftp/stores/default/files/boot/images/kernel.img", data), &put); err != nil {
		t.Fatal(err)
	}
	if put.Name != "boot/images/kernel.img" || put.Size != int64(len(data)) || put.SHA256 != sha256Hex(data) {
		t.Fatalf("PUT answered %+v", put)
	}
	local := filepath.Join(dir, "kernel.img")
	if err := curlGet(adminCtx(t), server, "boot/images/kernel.img", local, clientOpts{BlockSize: 1428}); err != nil {
		t.Fatal(err)
	}
	requireSameBytes(t, "curl get of an HTTP upload", readLocal(t, local), data)
	f := a.files("default")["boot/images/kernel.img"]
	if f.Size != int64(len(data)) || f.SHA256 != sha256Hex(data) || f.ModTime.IsZero() {
		t.Fatalf("listing shows %+v", f)
	}

	// Replace: 200, new contents everywhere.
	data2 := randomBytes(t, 1000)
	a.expect(http.StatusOK, http.MethodPut, "/tftp/stores/default/files/boot/images/kernel.img", data2)
	if got, err := (&testClient{server: server}).get("boot/images/kernel.img"); err != nil || !bytes.Equal(got, data2) {
		t.Fatalf("TFTP get after replace: %d bytes, %v", len(got), err)
	}

	// HTTP GET of the file.
	req, _ := http.NewRequest(http.MethodGet, "http://"+a.addr+"/tftp/stores/default/files/boot/images/kernel.img", nil)
	resp, err := a.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data2) ||
		resp.Header.Get("Content-Type") != "application/octet-stream" || resp.ContentLength != int64(len(data2)) {
		t.Fatalf("GET: status %d, %d bytes, type %q, length %d", resp.StatusCode, len(got), resp.Header.Get("Content-Type"), resp.ContentLength)
	}

	// TFTP put with busybox, then HTTP GET, compared by the listing's hash.
	up := randomBytes(t, 70_000)
	upLocal := writeLocal(t, dir, "up.bin", up)
	if err := busyboxPut(adminCtx(t), server, "cfg/router-1.conf", upLocal, clientOpts{BlockSize: 1024}); err != nil {
		t.Fatal(err)
	}
	if f := a.files("default")["cfg/router-1.conf"]; f.SHA256 != sha256Hex(up) || f.Size != int64(len(up)) {
		t.Fatalf("listing of the TFTP upload: %+v, want sha256 %s", f, sha256Hex(up))
	}
	got = a.expect(http.StatusOK, http.MethodGet, "/tftp/stores/default/files/cfg/router-1.conf", nil)
	if sha256Hex(got) != sha256Hex(up) {
		t.Fatalf("HTTP GET of the TFTP upload: sha256 %s, want %s", sha256Hex(got), sha256Hex(up))
	}

	// Usage in the store list.
	if s := a.stores()[0]; s.Files != 2 || s.Bytes != int64(len(data2)+len(up)) {
		t.Fatalf("default store after uploads = %+v", s)
	}
	// Stores are separate.
	if n := len(a.files("spare")); n != 0 {
		t.Fatalf("spare store has %d files", n)
	}

	// Delete: 204, then gone for HTTP and TFTP; a second delete is 404.
	a.expect(http.StatusNoContent, http.MethodDelete, "/tftp/stores/default/files/cfg/router-1.conf", nil)
	a.expectError(http.StatusNotFound, http.MethodDelete, "/tftp/stores/default/files/cfg/router-1.conf", nil)
	a.expectError(http.StatusNotFound, http.MethodGet, "/tftp/stores/default/files/cfg/router-1.conf", nil)
	if _, err := (&testClient{server: server}).get("cfg/router-1.conf"); errorCode(err) != int(ErrCodeFileNotFound) {
		t.Fatalf("TFTP get after delete: %v, want ERROR 1", err)
	}
	if _, ok := a.files("default")["cfg/router-1.conf"]; ok {
		t.Fatal("deleted file still listed")
	}
}

// chunkedBody hides the length of a body so the request is sent chunked.
type chunkedBody struct{ r io.Reader }

func (c chunkedBody) Read(p []byte) (int, error) { return c.r.Read(p) }

// TestAdminErrors covers limits (413), bad names (400), missing stores and
// files (404) and methods (405), all with JSON error bodies.
func TestAdminErrors(t *testing.T) {
	port := freePort(t)
	a := startAdminCaddy(t, lines(
		fmt.Sprintf("listen udp4/127.0.0.1:%d", port),
		"store default {",
		"max_bytes 40000",
		"max_file_size 16384",
		"}",
	))

	// Per-file limit, with and without a declared length.
	a.expectError(http.StatusRequestEntityTooLarge, http.MethodPut, "/tftp/stores/default/files/big", bytes.NewReader(make([]byte, 16385)))
	a.expectError(http.StatusRequestEntityTooLarge, http.MethodPut, "/tftp/stores/default/files/big", chunkedBody{bytes.NewReader(make([]byte, 16385))})
	a.expect(http.StatusCreated, http.MethodPut, "/tftp/stores/default/files/exact", make([]byte, 16384))
	status, _ := a.do(http.MethodPut, "/tftp/stores/default/files/chunked", chunkedBody{bytes.NewReader(make([]byte, 16000))})
	if status != http.StatusCreated {
		t.Fatalf("chunked PUT within limits: status %d", status)
	}
	// Store capacity: 16384 + 16000 + 16000 > 40000.
	a.expectError(http.StatusRequestEntityTooLarge, http.MethodPut, "/tftp/stores/default/files/third", bytes.NewReader(make([]byte, 16000)))
	a.expectError(http.StatusRequestEntityTooLarge, http.MethodPut, "/tftp/stores/default/files/third", chunkedBody{bytes.NewReader(make([]byte, 16000))})
	// Replacing a file counts only the difference.
	a.expect(http.StatusOK, http.MethodPut, "/tftp/stores/default/files/chunked", make([]byte, 16384))
	files := a.files("default")
	if len(files) != 2 || files["chunked"].Size != 16384 {
		t.Fatalf("files after refused uploads: %+v", files)
	}
	if _, err := (&testClient{server: loopback4(port)}).get("third"); errorCode(err) != int(ErrCodeFileNotFound) {
		t.Fatalf("a refused upload is visible over TFTP: %v", err)
	}

	// Bad names: the TFTP rules apply.
	for _, name := range []string{"..%5Cescape", "a%5C..%5C..%5Cb", "nul%00byte", strings.Repeat("x", maxNameLen+1), "%2E%2E%2Fetc"} {
		a.expectError(http.StatusBadRequest, http.MethodPut, "/tftp/stores/default/files/"+name, strings.NewReader("x"))
		a.expectError(http.StatusBadRequest, http.MethodGet, "/tftp/stores/default/files/"+name, nil)
		a.expectError(http.StatusBadRequest, http.MethodDelete, "/tftp/stores/default/files/"+name, nil)
	}
	// Names are cleaned like TFTP names: a backslash is a separator.
	a.expect(http.StatusCreated, http.MethodPut, "/tftp/stores/default/files/dir%5Cfile", []byte("x"))
	if _, ok := a.files("default")["dir/file"]; !ok {
		t.Fatal(`"dir\file" was not stored as "dir/file"`)
	}

	// Missing store, file and routes.
	a.expectError(http.StatusNotFound, http.MethodGet, "/tftp/stores/nope/files", nil)
	a.expectError(http.StatusNotFound, http.MethodGet, "/tftp/stores/nope", nil)
	a.expectError(http.StatusNotFound, http.MethodPut, "/tftp/stores/nope/files/x", strings.NewReader("x"))
	a.expectError(http.StatusNotFound, http.MethodGet, "/tftp/stores/default/files/missing", nil)
	a.expectError(http.StatusNotFound, http.MethodGet, "/tftp/stores/default/other", nil)
	a.expectError(http.StatusNotFound, http.MethodGet, "/tftp/nothing", nil)
	a.expect(http.StatusOK, http.MethodGet, "/tftp/stores/default", nil)

	// Methods.
	a.expectError(http.StatusMethodNotAllowed, http.MethodPost, "/tftp/stores/default/files/x", strings.NewReader("x"))
	a.expectError(http.StatusMethodNotAllowed, http.MethodPut, "/tftp/stores", strings.NewReader("x"))
	a.expectError(http.StatusMethodNotAllowed, http.MethodDelete, "/tftp/stores/default/files", nil)
	a.expectError(http.StatusMethodNotAllowed, http.MethodPost, "/tftp/transfers", nil)
}

// TestAdminLiveTransfer holds a read open with a raw client that does not
// ACK and checks that /tftp/transfers lists it.
func TestAdminLiveTransfer(t *testing.T) {
	port := freePort(t)
	a := startAdminCaddy(t, lines(fmt.Sprintf("listen udp4/127.0.0.1:%d", port), "timeout 5s"))
	data := randomBytes(t, 5000)
	a.expect(http.StatusCreated, http.MethodPut, "/tftp/stores/default/files/live/held.bin", data)
	if got := a.transfers(); got == nil {
		t.Fatal("/tftp/transfers is not a JSON list")
	}

	raw := dialRaw(t)
	raw.send(loopback4(port), appendRequest(nil, opRRQ, "live/held.bin", "octet", option{"blksize", "1024"}))
	pkt, tid := raw.mustRecv(5 * time.Second)
	if opcode(pkt) != opOACK {
		t.Fatalf("got opcode %d, want OACK", opcode(pkt))
	}
	raw.send(tid, appendAck(nil, 0))
	pkt, _ = raw.mustRecv(5 * time.Second)
	if blk, _, ok := parseBlockPacket(pkt); !ok || opcode(pkt) != opDATA || blk != 1 {
		t.Fatalf("want DATA 1, got %x", pkt[:min(len(pkt), 8)])
	}
	// The server now waits for ACK 1, which never comes.
	me := netip.MustParseAddrPort(raw.conn.LocalAddr().String())
	var found *TransferInfo
	list := a.transfers()
	for i := range list {
		if list[i].Remote == me.String() {
			found = &list[i]
		}
	}
	if found == nil {
		t.Fatalf("transfer from %s not listed: %+v", me, list)
	}
	if found.File != "live/held.bin" || found.Direction != "read" || found.Mode != "octet" ||
		found.BlockSize != 1024 || found.Bytes > 1024 || found.Size != int64(len(data)) || found.Listen != loopback4(port).String() || found.Start.IsZero() {
		t.Fatalf("listed transfer = %+v", *found)
	}

	// End it from the client side and wait for the server to notice.
	raw.send(tid, appendError(nil, ErrCodeUndefined, "test done"))
	awaitEvent(t, eventTransferFailed, "live/held.bin")
	deadline := time.Now().Add(10 * time.Second)
	for listed := true; listed; {
		listed = false
		for _, tr := range a.transfers() {
			listed = listed || tr.Remote == me.String()
		}
		if listed && time.Now().After(deadline) {
			t.Fatal("ended transfer still listed")
		}
		if listed {
			time.Sleep(10 * time.Millisecond) // unregistering has no signal
		}
	}
}

// TestAdminEvents subscribes a handler module to tftp_upload_complete in
// the events app and awaits it after a TFTP put.
func TestAdminEvents(t *testing.T) {
	port := freePort(t)
	startAdminCaddy(t, fmt.Sprintf("server evsrv {\nlisten udp4/127.0.0.1:%d\n}", port))
	data := randomBytes(t, 3000)
	if err := (&testClient{server: loopback4(port)}).put("events/up.bin", data); err != nil {
		t.Fatal(err)
	}
	e := awaitEvent(t, eventUploadComplete, "events/up.bin")
	if e.data["server"] != "evsrv" || e.data["direction"] != "write" || e.data["outcome"] != "ok" || e.data["bytes"] != int64(3000) {
		t.Fatalf("event data = %v", e.data)
	}
	if got, err := (&testClient{server: loopback4(port)}).get("events/up.bin"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get: %v", err)
	}
	if e := awaitEvent(t, eventDownloadComplete, "events/up.bin"); e.data["direction"] != "read" || e.data["bytes"] != int64(3000) {
		t.Fatalf("download event data = %v", e.data)
	}
}

// TestAdminMetricsAcrossReload scrapes /metrics before and after transfers
// and across a reload through POST /load: the TFTP counters keep counting.
func TestAdminMetricsAcrossReload(t *testing.T) {
	requireClient(t, curlBin)
	port := freePort(t)
	body := fmt.Sprintf("server metricsrv {\nlisten udp4/127.0.0.1:%d\n}", port)
	a := startAdminCaddy(t, body)
	server := loopback4(port)
	dir := t.TempDir()
	data := randomBytes(t, 4000)
	local := writeLocal(t, dir, "m.bin", data)

	reads := func() float64 {
		return a.metric("caddy_tftp_transfers_total", "server", "metricsrv", "direction", "read", "outcome", "ok")
	}
	writes := func() float64 {
		return a.metric("caddy_tftp_transfers_total", "server", "metricsrv", "direction", "write", "outcome", "ok")
	}
	sent := func() float64 { return a.metric("caddy_tftp_bytes_sent_total", "server", "metricsrv") }
	r0, w0, s0 := reads(), writes(), sent()

	transfer := func(n int) {
		t.Helper()
		if err := curlPut(adminCtx(t), server, "m.bin", local, clientOpts{}); err != nil {
			t.Fatal(err)
		}
		awaitEvent(t, eventUploadComplete, "m.bin")
		for range n {
			out := filepath.Join(dir, "out.bin")
			if err := curlGet(adminCtx(t), server, "m.bin", out, clientOpts{}); err != nil {
				t.Fatal(err)
			}
			// The event is emitted after the transfer is counted.
			awaitEvent(t, eventDownloadComplete, "m.bin")
		}
	}
	transfer(3)
	r1, w1, s1 := reads(), writes(), sent()
	if r1-r0 != 3 || w1-w0 != 1 || s1-s0 != 3*4000 {
		t.Fatalf("after 1 put and 3 gets: reads %v→%v, writes %v→%v, bytes sent %v→%v", r0, r1, w0, w1, s0, s1)
	}
	if b := a.metric("caddy_tftp_store_bytes", "store", "default"); b != 4000 {
		t.Fatalf("caddy_tftp_store_bytes = %v, want 4000", b)
	}
	if d := a.metric("caddy_tftp_transfer_duration_seconds_count", "server", "metricsrv"); d < 4 {
		t.Fatalf("duration histogram count = %v, want >= 4", d)
	}

	a.reload("")
	if r, w := reads(), writes(); r != r1 || w != w1 {
		t.Fatalf("counters changed by the reload: reads %v→%v, writes %v→%v", r1, r, w1, w)
	}
	transfer(2)
	if r, w, s := reads(), writes(), sent(); r-r1 != 2 || w-w1 != 1 || s-s1 != 2*4000 {
		t.Fatalf("after the reload: reads %v→%v, writes %v→%v, bytes sent %v→%v", r1, r, w1, w, s1, s)
	}
	// The admin API follows the reload too.
	if f := a.files("default")["m.bin"]; f.SHA256 != sha256Hex(data) {
		t.Fatalf("after reload the listing shows %+v", f)
	}
}

// TestAdminStoreSurvivesFailedPreload checks that a load failing on a
// missing preload directory names the problem and leaves the running
// config and its files alone.
func TestAdminStoreSurvivesFailedPreload(t *testing.T) {
	port := freePort(t)
	body := fmt.Sprintf("listen udp4/127.0.0.1:%d", port)
	a := startAdminCaddy(t, body)
	a.expect(http.StatusCreated, http.MethodPut, "/tftp/stores/default/files/keep.bin", []byte("kept"))
	missing := filepath.Join(t.TempDir(), "does-not-exist")
	bad := a.config(body + "\nstore default {\npreload " + missing + "\n}")
	status, b := a.do(http.MethodPost, "/load", bytes.NewReader(bad), "Content-Type", "application/json", "Cache-Control", "must-revalidate")
	if status < 400 || !strings.Contains(string(b), "preload") || !strings.Contains(string(b), missing) || !strings.Contains(string(b), "no such file or directory") {
		t.Fatalf("load with a missing preload dir: status %d, body %s", status, b)
	}
	if got, err := (&testClient{server: loopback4(port)}).get("keep.bin"); err != nil || string(got) != "kept" {
		t.Fatalf("after the failed load: %q, %v", got, err)
	}
	if _, ok := a.files("default")["keep.bin"]; !ok {
		t.Fatal("file gone from the listing after the failed load")
	}
}
