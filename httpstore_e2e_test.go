package tftp

// End-to-end tests of the http store: Caddy's own HTTP app (file_server
// and templates) in the same process as the upstream, and a Go test server
// where the upstream has to stall, break off or take uploads; the real
// clients read through the TFTP server.

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/standard"
)

// httpE2E is a running Caddy with an HTTP site and tftp servers in front
// of it: "files" reads the site's file_server, "gen" its templates, and
// "goup" the Go upstream (chunked responses without a length, stalls,
// breaks, uploads).
type httpE2E struct {
	dir, genDir string
	files, gen  uint16 // TFTP ports
	goup        uint16
	httpPort    int
	up          *goUpstream
}

// goUpstream is a Go HTTP server that takes PUTs, stalls after 4 KiB
// until released, or breaks off mid-body.
type goUpstream struct {
	*httptest.Server
	mu        sync.Mutex
	puts      map[string][]byte
	lengths   map[string]int64
	chunks    map[string][]byte // served chunked, without a length
	sized     atomic.Int64      // GETs of sized/ files
	unstalled atomic.Bool       // stall.bin has sent the rest of its body
	chunked   bool
	gets      atomic.Int64
	released  chan struct{}
	once      sync.Once
}

func (u *goUpstream) release() { u.once.Do(func() { close(u.released) }) }

func newGoUpstream(t *testing.T) *goUpstream {
	u := &goUpstream{puts: map[string][]byte{}, lengths: map[string]int64{}, chunks: map[string][]byte{}, released: make(chan struct{})}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		switch {
		case r.Method == http.MethodPut && strings.HasPrefix(name, "fail/"):
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusInternalServerError)
		case r.Method == http.MethodPut:
			b, _ := io.ReadAll(r.Body)
			u.mu.Lock()
			u.puts[name], u.lengths[name] = b, r.ContentLength
			u.chunked = u.chunked || len(r.TransferEncoding) > 0
			u.mu.Unlock()
			w.WriteHeader(http.StatusCreated)
		case strings.HasPrefix(name, "chunked/"):
			u.mu.Lock()
			data, ok := u.chunks[strings.TrimPrefix(name, "chunked/")]
			u.mu.Unlock()
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush() // headers out first: no length
			for len(data) > 0 {
				n := min(len(data), 1000)
				_, _ = w.Write(data[:n])
				w.(http.Flusher).Flush()
				data = data[n:]
			}
		case strings.HasPrefix(name, "sized/"):
			u.sized.Add(1)
			u.mu.Lock()
			data, ok := u.chunks[strings.TrimPrefix(name, "sized/")]
			u.mu.Unlock()
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			// The first 64 KiB, then the rest once released.
			_, _ = w.Write(data[:64<<10])
			w.(http.Flusher).Flush()
			data = data[64<<10:]
			select {
			case <-u.released:
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Second):
			}
			for len(data) > 0 {
				n := min(len(data), 64<<10)
				if _, err := w.Write(data[:n]); err != nil {
					return
				}
				data = data[n:]
			}
		case name == "stall.bin":
			u.gets.Add(1)
			data := e2ePattern(64 << 10)
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			_, _ = w.Write(data[:4096])
			w.(http.Flusher).Flush()
			select {
			case <-u.released:
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Second):
			}
			u.unstalled.Store(true)
			_, _ = w.Write(data[4096:])
		case name == "broken.bin":
			w.Header().Set("Content-Length", "100000")
			_, _ = w.Write(e2ePattern(20000))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case name == "forbidden.bin":
			w.WriteHeader(http.StatusForbidden)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(func() { u.release(); u.Close() })
	return u
}

func e2ePattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>9)
	}
	return b
}

func startHTTPE2E(t *testing.T) *httpE2E {
	t.Helper()
	e := &httpE2E{dir: t.TempDir(), genDir: t.TempDir(), files: freePort(t), gen: freePort(t), goup: freePort(t), up: newGoUpstream(t)}
	httpPort := adminFreeTCPPort(t)
	cf := fmt.Sprintf(`{
	admin off
	persist_config off
	tftp {
		store files http {
			url http://127.0.0.1:%[1]d/files/
		}
		store gen http {
			url http://127.0.0.1:%[1]d/gen/{file}
		}
		store goup http {
			url %[2]s/
			idle_timeout 2s
		}
		server files {
			listen 127.0.0.1:%[3]d
			store files
		}
		server gen {
			listen 127.0.0.1:%[4]d
			store gen
		}
		server goup {
			listen 127.0.0.1:%[5]d
			store goup
		}
	}
}
http://127.0.0.1:%[1]d {
	handle_path /files/* {
		root * %[6]s
		file_server
	}
	handle_path /gen/* {
		root * %[7]s
		templates
		file_server
	}
}
`, httpPort, e.up.URL, e.files, e.gen, e.goup, e.dir, e.genDir)
	startCaddy(t, cf)
	e.httpPort = httpPort
	return e
}

// text makes n bytes of template-safe text (no "{{").
func e2eText(n int) []byte {
	line := []byte("DEFAULT menu.c32 APPEND initrd=initrd.img console=ttyS0,115200n8 quiet\n")
	var b bytes.Buffer
	for b.Len() < n {
		b.Write(line)
	}
	return b.Bytes()[:n]
}

func TestHTTPStoreRealClients(t *testing.T) {
	requireAllClients(t)
	e := startHTTPE2E(t)
	files := map[string][]byte{
		"odd.bin":       randomBytes(t, 5000),
		"multiple.bin":  randomBytes(t, 4096),
		"empty.bin":     {},
		"dir/space x.b": randomBytes(t, 1000),
	}
	for name, data := range files {
		writeTree(t, e.dir, name, data)
	}
	gen := map[string][]byte{
		"odd.txt":      e2eText(5000),
		"multiple.txt": e2eText(4096),
		"empty.txt":    {},
	}
	for name, data := range gen {
		writeTree(t, e.genDir, name, data)
	}
	chunked := map[string][]byte{
		"odd.bin":      randomBytes(t, 5000),
		"multiple.bin": randomBytes(t, 4096),
		"empty.bin":    {},
	}
	e.up.mu.Lock()
	maps.Copy(e.up.chunks, chunked)
	e.up.mu.Unlock()
	prefixed := map[string][]byte{}
	for name, data := range chunked {
		prefixed["chunked/"+name] = data
	}
	// The Go upstream's responses really come without a length.
	resp, err := http.Get(e.up.URL + "/chunked/odd.bin")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ContentLength != -1 {
		t.Fatalf("the chunked upstream sent Content-Length %d", resp.ContentLength)
	}
	cases := []struct {
		client, what string
		opts         clientOpts
	}{
		{"curl", "tsize_blksize_timeout", clientOpts{}},
		{"curl", "no_options", clientOpts{NoOptions: true}},
		{"tftp-hpa", "no_options", clientOpts{}},
		{"atftp", "tsize_blksize", clientOpts{Tsize: true, BlockSize: 1428}},
		{"atftp", "no_options", clientOpts{}},
		{"atftp", "windowsize", clientOpts{WindowSize: 4, BlockSize: 512}},
		{"busybox", "tsize", clientOpts{}},
	}
	for _, c := range cases {
		cl := interopClient(t, c.client)
		t.Run(c.client+"/"+c.what, func(t *testing.T) {
			for _, set := range []struct {
				port  uint16
				files map[string][]byte
			}{{e.files, files}, {e.gen, gen}, {e.goup, prefixed}} {
				for name, data := range set.files {
					if c.client == "busybox" && len(data) == 0 {
						continue // busybox reports an empty file as its own error
					}
					dst := filepath.Join(t.TempDir(), "out")
					if err := cl.get(t.Context(), loopback4(set.port), name, dst, c.opts); err != nil {
						t.Fatalf("port %d get %s: %v", set.port, name, err)
					}
					requireSameBytes(t, fmt.Sprintf("%s from port %d", name, set.port), readLocal(t, dst), data)
				}
			}
		})
	}

	// tsize: from Content-Length for file_server and templates, and after
	// the whole download for a chunked response; none for an empty file.
	for _, tc := range []struct {
		port  uint16
		name  string
		tsize string
	}{
		{e.files, "odd.bin", "5000"}, {e.gen, "odd.txt", "5000"}, {e.goup, "chunked/odd.bin", "5000"},
		{e.goup, "chunked/multiple.bin", "4096"}, {e.files, "empty.bin", ""}, {e.goup, "chunked/empty.bin", ""},
	} {
		c := &testClient{server: loopback4(tc.port), options: []option{{"tsize", "0"}, {"blksize", "1468"}}, timeout: time.Second, retries: 3}
		if _, err := c.get(tc.name); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := ""
		for _, o := range c.stats.oack {
			if o.name == "tsize" {
				got = o.value
			}
		}
		if got != tc.tsize {
			t.Errorf("%s: OACK tsize %q, want %q (OACK %v)", tc.name, got, tc.tsize, c.stats.oack)
		}
	}

	// A chunked response read without tsize, a window at a time: no tsize
	// in the OACK.
	for name, data := range chunked {
		c := &testClient{server: loopback4(e.goup), options: []option{{"windowsize", "8"}, {"blksize", "1024"}}, timeout: time.Second, retries: 3}
		got, err := c.get("chunked/" + name)
		if err != nil {
			t.Fatal(err)
		}
		requireSameBytes(t, "windowed read of chunked "+name, got, data)
	}
	// The server saw the last ACK of every read: no transfer is left
	// waiting for an ACK of a block beyond the end.
	waitFor(t, "the transfers to end", 3*time.Second, func() bool { return len(ActiveTransfers()) == 0 })
}

// TestHTTPStoreFirstBlockBeforeUpstreamEnds: the upstream sends 4 KiB and
// stalls until the client has its first DATA block, in lock-step and with
// a window (whose batch must not wait for the window's later blocks).
func TestHTTPStoreFirstBlockBeforeUpstreamEnds(t *testing.T) {
	for _, opts := range [][]option{
		{{"tsize", "0"}},
		{{"tsize", "0"}, {"windowsize", "8"}},
	} {
		t.Run(formatOptions(opts), func(t *testing.T) {
			e := startHTTPE2E(t)
			var releasedFirst atomic.Bool
			var sawData bool
			c := &testClient{server: loopback4(e.goup), options: opts, timeout: time.Second, retries: 5,
				dropIn: func(op, block uint16, n int) bool {
					if op == opDATA && block == 1 && !sawData {
						sawData = true
						releasedFirst.Store(e.up.unstalled.Load())
						e.up.release()
					}
					return false
				}}
			got, err := c.get("stall.bin")
			if err != nil {
				t.Fatal(err)
			}
			requireSameBytes(t, "stalled upstream", got, e2ePattern(64<<10))
			if releasedFirst.Load() || !sawData {
				t.Fatal("the first DATA block came only after the upstream finished")
			}
		})
	}
}

func TestHTTPStoreErrorsOverTFTP(t *testing.T) {
	e := startHTTPE2E(t)
	c := &testClient{server: loopback4(e.goup), timeout: time.Second, retries: 5}
	for _, tc := range []struct {
		name string
		code ErrorCode
		msg  string
	}{
		{"missing.bin", ErrCodeFileNotFound, "file not found"},
		{"forbidden.bin", ErrCodeAccessViolated, "access violation"},
		{"broken.bin", ErrCodeUndefined, "upstream unavailable"},
		// Stalls after 4 KiB for longer than the store's idle_timeout (2s).
		{"stall.bin", ErrCodeUndefined, "upstream unavailable"},
	} {
		_, err := c.get(tc.name)
		se, ok := err.(*serverError)
		if !ok || se.code != tc.code || se.msg != tc.msg {
			t.Errorf("%s: %v, want error %d %q", tc.name, err, tc.code, tc.msg)
		}
	}
}

func TestHTTPStoreUploadsOverTFTP(t *testing.T) {
	requireAllClients(t)
	e := startHTTPE2E(t)
	data := randomBytes(t, 70000)
	src := writeLocal(t, t.TempDir(), "up.bin", data)
	for _, name := range []string{"curl", "tftp-hpa", "atftp", "busybox"} {
		cl := interopClient(t, name)
		if err := cl.put(t.Context(), loopback4(e.goup), "cfg/"+name+".bin", src, clientOpts{}); err != nil {
			t.Fatalf("%s put: %v", name, err)
		}
		e.up.mu.Lock()
		got, length := e.up.puts["cfg/"+name+".bin"], e.up.lengths["cfg/"+name+".bin"]
		e.up.mu.Unlock()
		requireSameBytes(t, name+" upload as received upstream", got, data)
		if length != int64(len(data)) {
			t.Errorf("%s: Content-Length %d, want %d", name, length, len(data))
		}
	}
	e.up.mu.Lock()
	chunked := e.up.chunked
	e.up.mu.Unlock()
	if chunked {
		t.Error("an upload went upstream chunked")
	}
	// The upstream refuses: the client gets an ERROR instead of the final
	// ACK.
	c := &testClient{server: loopback4(e.goup), timeout: time.Second, retries: 3}
	err := c.put("fail/x.bin", data[:3000])
	if se, ok := err.(*serverError); !ok || se.code != ErrCodeUndefined {
		t.Fatalf("upload the upstream refused: %v, want ERROR 0", err)
	}
}

const readmeHTTPSection = "Serving files from an HTTP server"

// TestReadmeHTTPArtifacts runs the README's artifact server example as
// written, with its URL moved to a local upstream that checks the bearer
// token, and the README's curl command.
func TestReadmeHTTPArtifacts(t *testing.T) {
	blocks := readmeBlocks(t, "caddyfile", readmeHTTPSection)
	where := fmt.Sprintf("README.md:%d", blocks[0].line)
	data := randomBytes(t, 100_000)
	var gets atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/netboot/ipxe.efi" {
			http.NotFound(w, r)
			return
		}
		if r.Method == http.MethodDelete {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		gets.Add(1)
		w.Header().Set("ETag", `"1"`)
		_, _ = w.Write(data)
	}))
	t.Cleanup(up.Close)
	t.Setenv("ARTIFACT_TOKEN", "s3cret")
	cf := substitute(t, where, blocks[0].body, "https://artifacts.example.com/netboot/", up.URL+"/netboot/")
	r := startReadmeCaddy(t, where, cf)
	cmd, b := readmeCommand(t, readmeHTTPSection, "curl -o ipxe.efi")
	where = fmt.Sprintf("README.md:%d", b.line)
	dir := t.TempDir()
	requireClient(t, curlBin)
	for range 2 {
		runReadmeCommand(t, where, dir, r.substitutePorts(t, where, cmd))
		requireSameBytes(t, where, readLocal(t, filepath.Join(dir, "ipxe.efi")), data)
	}
	if n := gets.Load(); n != 1 {
		t.Errorf("%s: the upstream served %d GETs for two reads within the cache's ttl, want 1", where, n)
	}
	// The admin API: get is a GET upstream, delete a DELETE (refused by
	// this upstream: 501), and listing is not supported (501).
	if status, body := r.do(http.MethodGet, "/tftp/stores/artifacts/files/ipxe.efi", nil); status != http.StatusOK || !bytes.Equal(body, data) {
		t.Errorf("admin GET: status %d, %d bytes", status, len(body))
	}
	if status, body := r.do(http.MethodGet, "/tftp/stores/artifacts/files", nil); status != http.StatusNotImplemented || !strings.Contains(string(body), "http store") {
		t.Errorf("admin list: status %d: %s", status, body)
	}
	if status, body := r.do(http.MethodDelete, "/tftp/stores/artifacts/files/ipxe.efi", nil); status != http.StatusNotImplemented {
		t.Errorf("admin DELETE refused upstream: status %d: %s", status, body)
	}
	if status, _ := r.do(http.MethodGet, "/tftp/stores/artifacts/files/nope.efi", nil); status != http.StatusNotFound {
		t.Errorf("admin GET of a missing file: status %d", status)
	}
	// A wrong name is error 1 over TFTP.
	if _, err := (&testClient{server: r.server(), timeout: time.Second, retries: 3}).get("nope.efi"); errorCode(err) != int(ErrCodeFileNotFound) {
		t.Errorf("%s: missing file: %v", where, err)
	}
}

// TestReadmeHTTPTemplates runs the README's one-Caddyfile templates
// example: the HTTP site and the TFTP server in one config, the README's
// template file, and the README's curl command.
func TestReadmeHTTPTemplates(t *testing.T) {
	blocks := readmeBlocks(t, "caddyfile", readmeHTTPSection)
	if len(blocks) < 2 {
		t.Fatal("no templates Caddyfile in the README section")
	}
	where := fmt.Sprintf("README.md:%d", blocks[1].line)
	tmpl := readmeBlocks(t, "ipxe", readmeHTTPSection)[0]
	dir := t.TempDir()
	writeTree(t, dir, "boot.ipxe", []byte(tmpl.body))
	httpPort := strconv.Itoa(adminFreeTCPPort(t))
	cf := substitute(t, where, blocks[1].body, "127.0.0.1:8080", "127.0.0.1:"+httpPort, "/srv/ipxe", dir)
	r := startReadmeCaddy(t, where, cf)
	cmd, b := readmeCommand(t, readmeHTTPSection, "curl tftp://")
	where = fmt.Sprintf("README.md:%d", b.line)
	requireClient(t, curlBin)
	out := runReadmeCommand(t, where, t.TempDir(), r.substitutePorts(t, where, cmd))
	want := "#!ipxe\necho Booting 127.0.0.1\nchain http://boot.example.com/hosts/127.0.0.1.ipxe || shell\n"
	if out != want {
		t.Errorf("%s: got\n%s\nwant\n%s", where, out, want)
	}
}

// TestHTTPStoreUnknownSizeTransfers: files whose size the server does not
// know (chunked responses, no tsize asked) end at the first short block
// whatever the block and window sizes: exactly one DATA per block without
// loss, none past the end, the end found again after a lost last block,
// and no transfer left waiting.
func TestHTTPStoreUnknownSizeTransfers(t *testing.T) {
	e := startHTTPE2E(t)
	sizes := []int{0, 1, 511, 512, 4096, 5000, 70000}
	e.up.mu.Lock()
	for _, n := range sizes {
		e.up.chunks[strconv.Itoa(n)] = e2ePattern(n)
	}
	e.up.mu.Unlock()
	for _, bs := range []int{512, 1428} {
		for _, w := range []int{1, 4, 16} {
			for _, n := range sizes {
				opts := []option{{"blksize", strconv.Itoa(bs)}, {"windowsize", strconv.Itoa(w)}}
				c := &testClient{server: loopback4(e.goup), options: opts, timeout: time.Second, retries: 3}
				got, err := c.get("chunked/" + strconv.Itoa(n))
				if err != nil {
					t.Fatalf("blksize %d window %d size %d: %v", bs, w, n, err)
				}
				requireSameBytes(t, fmt.Sprintf("blksize %d window %d size %d", bs, w, n), got, e2ePattern(n))
				if want := n/bs + 1; c.stats.dataIn != want {
					t.Errorf("blksize %d window %d size %d: %d DATA packets, want %d", bs, w, n, c.stats.dataIn, want)
				}
			}
		}
	}
	// The last DATA lost once: resent, and the transfer still ends there.
	for _, w := range []int{1, 4} {
		lastBlock := uint16(5000/512 + 1)
		c := &testClient{server: loopback4(e.goup), options: []option{{"windowsize", strconv.Itoa(w)}}, timeout: 200 * time.Millisecond, retries: 20,
			dropIn: func(op, blk uint16, n int) bool { return op == opDATA && blk == lastBlock && n == 0 }}
		got, err := c.get("chunked/5000")
		if err != nil {
			t.Fatalf("window %d, last block lost: %v", w, err)
		}
		requireSameBytes(t, fmt.Sprintf("window %d, last block lost", w), got, e2ePattern(5000))
	}
	waitFor(t, "the transfers to end", 3*time.Second, func() bool { return len(ActiveTransfers()) == 0 })
}

// TestHTTPStoreUEFIProbeOneFetch: UEFI firmware asks for tsize, aborts
// with ERROR 8 after the OACK, and asks again; both requests share one
// upstream GET, with no cache configured. The upstream holds the body
// after 64 KiB until the second request has its first block, so the
// download is still running when the second request comes.
func TestHTTPStoreUEFIProbeOneFetch(t *testing.T) {
	e := startHTTPE2E(t)
	data := randomBytes(t, 8<<20)
	e.up.mu.Lock()
	e.up.chunks["bootx64.efi"] = data
	e.up.mu.Unlock()
	server := loopback4(e.goup)
	probe := dialRaw(t)
	probe.send(server, appendRequest(nil, opRRQ, "sized/bootx64.efi", "octet", option{"tsize", "0"}, option{"blksize", "1468"}))
	pkt, tid := probe.mustRecv(5 * time.Second)
	opts, err := parseOACK(pkt)
	if err != nil || formatOptions(opts) != fmt.Sprintf("tsize=%d blksize=1468", len(data)) {
		t.Fatalf("want an OACK with the size, got %v (%v)", pkt, err)
	}
	probe.send(tid, appendError(nil, ErrCodeBadOptions, "User aborted the transfer"))
	c := &testClient{server: server, options: []option{{"tsize", "0"}, {"blksize", "1468"}, {"windowsize", "4"}}, timeout: time.Second, retries: 3,
		dropIn: func(op, blk uint16, n int) bool {
			if op == opDATA && blk == 1 {
				e.up.release()
			}
			return false
		}}
	got, err := c.get("sized/bootx64.efi")
	if err != nil {
		t.Fatal(err)
	}
	requireSameBytes(t, "second request", got, data)
	if n := e.up.sized.Load(); n != 1 {
		t.Errorf("the probe and the read cost %d upstream GETs, want 1", n)
	}
}

// TestHTTPStoreBootStormOverTFTP: 64 clients read the same file through
// the TFTP server at once; the upstream serves one GET and every client
// gets the same bytes. The upstream holds the body after 64 KiB until
// every client has its first block, so all of them are in before the
// download ends (there is no cache).
func TestHTTPStoreBootStormOverTFTP(t *testing.T) {
	const clients = 64
	e := startHTTPE2E(t)
	data := randomBytes(t, 4<<20)
	e.up.mu.Lock()
	e.up.chunks["kernel"] = data
	e.up.mu.Unlock()
	var started atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i := range clients {
		wg.Go(func() {
			first := true
			c := &testClient{server: loopback4(e.goup), options: []option{{"blksize", "65464"}, {"windowsize", "4"}}, timeout: 2 * time.Second, retries: 5,
				dropIn: func(op, blk uint16, n int) bool {
					if op == opDATA && blk == 1 && first {
						first = false
						if started.Add(1) == clients {
							e.up.release()
						}
					}
					return false
				}}
			got, err := c.get("sized/kernel")
			if err == nil && !bytes.Equal(got, data) {
				err = fmt.Errorf("%d bytes differ from the %d sent", len(got), len(data))
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	if n := e.up.sized.Load(); n != 1 {
		t.Errorf("%d clients cost %d upstream GETs, want 1", clients, n)
	}
}

// TestHTTPStoreStopWakesWaitingRead: a read waiting for a silent upstream
// (idle_timeout one minute) ends with "server shutting down" once the
// grace period of a stopped server is over, not after the idle timeout.
func TestHTTPStoreStopWakesWaitingRead(t *testing.T) {
	up := newGoUpstream(t)
	port := freePort(t)
	startCaddy(t, tftpCaddyfile(lines(
		"grace_period 200ms",
		fmt.Sprintf("store s http {\nurl %s/\nidle_timeout 1m\n}", up.URL),
		fmt.Sprintf("listen 127.0.0.1:%d", port),
	)))
	firstBlock := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		c := &testClient{server: loopback4(port), timeout: time.Second, retries: 30,
			dropIn: func(op, blk uint16, n int) bool {
				if op == opDATA && blk == 1 {
					once.Do(func() { close(firstBlock) })
				}
				return false
			}}
		_, err := c.get("stall.bin")
		done <- err
	}()
	select {
	case <-firstBlock:
	case <-time.After(10 * time.Second):
		t.Fatal("no first block")
	}
	start := time.Now()
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		se, ok := err.(*serverError)
		if !ok || se.code != ErrCodeUndefined || se.msg != "server shutting down" {
			t.Fatalf("read during shutdown: %v, want ERROR 0 \"server shutting down\"", err)
		}
		t.Logf("the waiting read ended %v after the stop", time.Since(start).Round(time.Millisecond))
	case <-time.After(3 * time.Second):
		// The upstream stalls for 5s; only the stop can end the read
		// sooner.
		t.Fatal("the read waiting for the upstream was not ended by the stop")
	}
	up.release()
}
