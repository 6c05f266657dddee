package httpstore

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-tftp/tftp/store"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

var testClient = store.RequestInfo{Client: netip.MustParseAddrPort("192.0.2.7:2001"), Server: "srv"}

func TestURLTemplate(t *testing.T) {
	cases := []struct{ tmpl, name, want string }{
		{"http://h/boot/", "a b/c#d.efi", "http://h/boot/a%20b/c%23d.efi"},
		{"http://h/x?f={file}&c={remote_host}&p={remote_port}", "a/b&c", "http://h/x?f=a%2Fb%26c&c=192.0.2.7&p=2001"},
		{"http://h/{tftp.server}/{remote_host}/{file}", "pxelinux.cfg/default", "http://h/srv/192.0.2.7/pxelinux.cfg/default"},
	}
	for _, c := range cases {
		tm, err := parseURLTemplate(c.tmpl)
		if err != nil {
			t.Fatalf("%s: %v", c.tmpl, err)
		}
		if got := tm.expand(c.name, testClient); got != c.want {
			t.Errorf("%s with %q: got %s, want %s", c.tmpl, c.name, got, c.want)
		}
	}
	for _, bad := range []string{"http://h/boot", "ftp://h/", "http://{remote_host}/{file}", "http://h/{nope}/{file}", "/relative/", "http://h/{file"} {
		if _, err := parseURLTemplate(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestHTTPStoreReadsAndSendsClient(t *testing.T) {
	up := newUpstream(t)
	data := pattern(10000)
	up.set("dir/f.bin", upFile{data: data})
	s, _ := newStore(t, up.URL+"/files/", func(s *HTTP) {
		s.Headers = http.Header{"host": {"boot.example"}, "X-Extra": {"1"}}
	})
	f, err := s.OpenFor("dir/f.bin", testClient)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Size() != int64(len(data)) {
		t.Errorf("size %d, want %d from Content-Length", f.Size(), len(data))
	}
	got, err := readAll(f, 512)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, err %v; want %d bytes", len(got), err, len(data))
	}
	up.mu.Lock()
	h := up.headers[len(up.headers)-1]
	up.mu.Unlock()
	if h.Get("X-TFTP-Client") != "192.0.2.7:2001" {
		t.Errorf("X-TFTP-Client = %q", h.Get("X-TFTP-Client"))
	}
	if h.Get("X-Seen-Host") != "boot.example" || h.Get("X-Extra") != "1" {
		t.Errorf("configured headers: Host %q, X-Extra %q", h.Get("X-Seen-Host"), h.Get("X-Extra"))
	}
	if h.Get("Accept-Encoding") != "identity" {
		t.Errorf("Accept-Encoding = %q, want identity (no transparent gunzip)", h.Get("Accept-Encoding"))
	}
}

// TestHTTPStoreStreamsBeforeUpstreamFinishes: the upstream sends 4 KiB
// and stalls; the first block is readable while it stalls.
func TestHTTPStoreStreamsBeforeUpstreamFinishes(t *testing.T) {
	for _, length := range []string{"yes", "no"} {
		t.Run("content_length="+length, func(t *testing.T) {
			up := newUpstream(t)
			data := pattern(100000)
			up.set("big", upFile{data: data})
			s, _ := newStore(t, up.URL+"/stall/{file}?length="+length, nil)
			f, err := s.Open("big")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			wantSize := int64(len(data))
			if length == "no" {
				wantSize = -1
			}
			if f.Size() != wantSize {
				t.Fatalf("size %d, want %d", f.Size(), wantSize)
			}
			buf := make([]byte, 1468)
			n, err := f.ReadAt(buf, 0)
			if err != nil || n != len(buf) || !bytes.Equal(buf, data[:n]) {
				t.Fatalf("first block: %d bytes, %v", n, err)
			}
			if up.unstalled.Load() {
				t.Fatal("the first block was readable only after the upstream ended its stall")
			}
			up.release()
			got, err := readAll(f, 1468)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("whole file: %d bytes, %v", len(got), err)
			}
		})
	}
}

// TestHTTPStoreNeedSizeWithoutLength: a client asking for tsize gets the
// size of a response without Content-Length after the whole download.
func TestHTTPStoreNeedSizeWithoutLength(t *testing.T) {
	up := newUpstream(t)
	data := pattern(7777)
	up.set("f", upFile{data: data})
	s, _ := newStore(t, up.URL+"/chunked/", nil)
	f, err := s.OpenFor("f", store.RequestInfo{NeedSize: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Size() != int64(len(data)) {
		t.Fatalf("size %d, want %d", f.Size(), len(data))
	}
	got, err := readAll(f, 512)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}

	// Over max_file_size, the size cannot be learnt: error 3.
	s2, _ := newStore(t, up.URL+"/chunked/", func(s *HTTP) { s.MaxFileSize = 5000 })
	if _, err := s2.OpenFor("f", store.RequestInfo{NeedSize: true}); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("over max_file_size: %v, want ErrTooLarge", err)
	}
}

// TestHTTPStoreBootStorm: 64 concurrent readers of one 32 MiB file share
// one upstream GET and all read the right bytes.
func TestHTTPStoreBootStorm(t *testing.T) {
	const readers = 64
	up := newUpstream(t)
	data := pattern(32 << 20)
	up.set("kernel", upFile{data: data})
	s, _ := newStore(t, up.URL+"/gated/", nil)
	files := make([]store.File, readers)
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for i := range readers {
		wg.Go(func() {
			f, err := s.OpenFor("kernel", store.RequestInfo{Client: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(1000+i))})
			if err != nil {
				errs <- err
				return
			}
			files[i] = f
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Every reader has its file (the headers are in); now the body flows.
	up.release()
	results := make([]error, readers)
	for i, f := range files {
		wg.Go(func() {
			defer f.Close()
			results[i] = readCompare(f, 16384, data)
		})
	}
	wg.Wait()
	for i, err := range results {
		if err != nil {
			t.Errorf("reader %d: %v", i, err)
		}
	}
	if n := up.count("GET", "/gated/kernel"); n != 1 {
		t.Errorf("upstream saw %d GETs, want 1", n)
	}
	// Every reader closed: the temporary file is gone with the download.
	s.mu.Lock()
	inflight := len(s.inflight)
	s.mu.Unlock()
	if inflight != 0 {
		t.Errorf("%d downloads still registered", inflight)
	}
}

// TestHTTPStoreSharedFetchOutlivesFirstReader: the reader that started a
// download closing early does not stop it for the others.
func TestHTTPStoreSharedFetchOutlivesFirstReader(t *testing.T) {
	up := newUpstream(t)
	data := pattern(300000)
	up.set("f", upFile{data: data})
	s, _ := newStore(t, up.URL+"/stall/", nil)
	first, err := s.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	up.release()
	got, err := readAll(second, 4096)
	second.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("second reader: %d bytes, %v", len(got), err)
	}
	if n := up.count("GET", "/stall/f"); n != 1 {
		t.Errorf("%d GETs, want 1", n)
	}
}

func TestHTTPStoreErrors(t *testing.T) {
	up := newUpstream(t)
	s, logs := newStore(t, up.URL+"/status/", nil)
	cases := []struct {
		code int
		want error
	}{
		{404, fs.ErrNotExist}, {410, fs.ErrNotExist},
		{401, fs.ErrPermission}, {403, fs.ErrPermission},
		{500, store.ErrUnavailable}, {502, store.ErrUnavailable}, {418, store.ErrUnavailable},
	}
	for _, c := range cases {
		_, err := s.Open(strconv.Itoa(c.code) + "/file.bin")
		if !errors.Is(err, c.want) {
			t.Errorf("status %d: %v, want %v", c.code, err, c.want)
		}
	}
	if logs.FilterField(zap.Int("status", 500)).Len() == 0 {
		t.Errorf("no log line with status 500; logs: %v", logs.All())
	}

	// Broken off mid-body: the bytes before the break read, then an error.
	data := pattern(100000)
	up.set("f", upFile{data: data})
	s2, logs2 := newStore(t, up.URL+"/broken/", nil)
	f, err := s2.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(f, 512)
	f.Close()
	if !errors.Is(err, store.ErrUnavailable) || len(got) > len(data)/2 {
		t.Fatalf("broken body: %d bytes, %v; want at most %d and ErrUnavailable", len(got), err, len(data)/2)
	}
	if logs2.FilterMessage("upstream download failed").Len() != 1 {
		t.Errorf("no log line for the broken download: %v", logs2.All())
	}

	// Silence beyond the idle timeout fails the download, without waiting
	// for the stall to end.
	s3, _ := newStore(t, up.URL+"/stall/", func(s *HTTP) { s.IdleTimeout = caddy.Duration(200 * time.Millisecond) })
	f, err = s3.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	_, err = readAll(f, 512)
	f.Close()
	if !errors.Is(err, errIdle) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("stalled upstream: %v, want the idle timeout", err)
	}

	// Nobody listening: ErrUnavailable.
	dead := newUpstream(t)
	deadURL := dead.URL
	dead.Close()
	s4, _ := newStore(t, deadURL+"/files/", nil)
	if _, err := s4.Open("f"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("refused connection: %v", err)
	}
	s5, _ := newStore(t, strings.Replace(deadURL, "http://", "http://user:s3cret@", 1)+"/files/", nil)
	if _, err := s5.Open("f"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("refused connection with a password in the URL: %v", err)
	}

	if _, err := s.List(); !errors.Is(err, store.ErrNotSupported) || !strings.Contains(err.Error(), "http store") {
		t.Errorf("List: %v", err)
	}
}

func TestHTTPStoreUploads(t *testing.T) {
	up := newUpstream(t)
	s, _ := newStore(t, up.URL+"/files/", func(s *HTTP) { s.MaxFileSize = 1 << 20 })
	data := pattern(200000)
	w, err := s.Create("cfg/switch.cfg", store.CreateOptions{Overwrite: true, Size: -1, Request: testClient})
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 512 {
		if _, err := w.Write(data[off:min(off+512, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	up.mu.Lock()
	early := len(up.puts)
	up.mu.Unlock()
	if early != 0 {
		t.Fatal("something reached the upstream before Commit")
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	up.mu.Lock()
	p := up.puts[0]
	up.mu.Unlock()
	if !bytes.Equal(p.body, data) || p.contentLength != int64(len(data)) || len(p.transferEncoding) != 0 || p.client != "192.0.2.7:2001" {
		t.Fatalf("PUT: %d bytes, Content-Length %d, Transfer-Encoding %v, client %q", len(p.body), p.contentLength, p.transferEncoding, p.client)
	}

	// Empty upload: Content-Length 0.
	w, _ = s.Create("empty", store.CreateOptions{Overwrite: true, Size: -1})
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	up.mu.Lock()
	p = up.puts[1]
	up.mu.Unlock()
	if len(p.body) != 0 || p.contentLength != 0 || len(p.transferEncoding) != 0 {
		t.Errorf("empty PUT: Content-Length %d, Transfer-Encoding %v", p.contentLength, p.transferEncoding)
	}

	// Aborted: nothing upstream.
	w, _ = s.Create("aborted", store.CreateOptions{Overwrite: true, Size: -1})
	_, _ = w.Write(data[:1000])
	w.Abort()
	if n := up.count("PUT", "/files/aborted"); n != 0 {
		t.Errorf("aborted upload sent %d PUTs", n)
	}

	// No overwrite: If-None-Match: *, and 412 is fs.ErrExist.
	w, _ = s.Create("cfg/switch.cfg", store.CreateOptions{Size: -1})
	_, _ = w.Write([]byte("x"))
	if err := w.Commit(); !errors.Is(err, fs.ErrExist) {
		t.Errorf("no-overwrite upload over an existing file: %v", err)
	}

	// Over the size limit, declared or written.
	if _, err := s.Create("big", store.CreateOptions{Size: 2 << 20}); !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("declared too large: %v", err)
	}
	w, _ = s.Create("big", store.CreateOptions{Size: -1})
	if _, err := w.Write(make([]byte, 2<<20)); !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("written too large: %v", err)
	}
	w.Abort()

	// The upstream refuses: Commit fails.
	s500, _ := newStore(t, up.URL+"/status/500/", nil)
	w, _ = s500.Create("x", store.CreateOptions{Overwrite: true, Size: -1})
	_, _ = w.Write([]byte("hello"))
	if err := w.Commit(); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("PUT answered 500: %v", err)
	}

	// Delete and Stat.
	if info, err := s.Stat("cfg/switch.cfg"); err != nil || info.Size != int64(len(data)) {
		t.Errorf("Stat: %+v, %v", info, err)
	}
	if err := s.Delete("cfg/switch.cfg"); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if err := s.Delete("cfg/switch.cfg"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Delete of a missing file: %v", err)
	}
}

func TestHTTPStoreCache(t *testing.T) {
	up := newUpstream(t)
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, _ := newStore(t, up.URL+"/files/", func(s *HTTP) {
		s.Cache = &CacheConfig{MaxSize: 100000, TTL: caddy.Duration(10 * time.Second)}
	})
	s.now = clock.Now
	read := func(name string) []byte {
		t.Helper()
		f, err := s.Open(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer f.Close()
		got, err := readAll(f, 512)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return got
	}
	up.set("etag", upFile{data: []byte("version 1"), etag: `"v1"`})
	up.set("plain", upFile{data: []byte("plain 1")})
	up.set("nostore", upFile{data: []byte("secret"), cacheControl: "private"})
	up.set("short", upFile{data: []byte("short"), etag: `"s"`, cacheControl: "max-age=2"})

	read("etag")
	read("etag")
	if n := up.count("GET", "/files/etag"); n != 1 {
		t.Fatalf("within the TTL: %d GETs, want 1", n)
	}
	awaitNoDownload(t, s)
	clock.Advance(11 * time.Second)
	if got := read("etag"); string(got) != "version 1" {
		t.Fatalf("after 304: %q", got)
	}
	if n := up.count("GET", "/files/etag"); n != 2 {
		t.Fatalf("past the TTL: %d GETs, want 2 (a revalidation)", n)
	}
	up.mu.Lock()
	h := up.headers[len(up.headers)-1]
	up.mu.Unlock()
	if h.Get("If-None-Match") != `"v1"` {
		t.Errorf("revalidation sent If-None-Match %q", h.Get("If-None-Match"))
	}
	read("etag")
	if n := up.count("GET", "/files/etag"); n != 2 {
		t.Fatalf("a 304 renews the TTL: %d GETs, want 2", n)
	}
	up.set("etag", upFile{data: []byte("version 2"), etag: `"v2"`})
	awaitNoDownload(t, s)
	clock.Advance(11 * time.Second)
	if got := read("etag"); string(got) != "version 2" {
		t.Fatalf("changed upstream after the TTL: %q", got)
	}

	// Without validators, past the TTL the file is fetched again.
	read("plain")
	up.set("plain", upFile{data: []byte("plain 2")})
	if got := read("plain"); string(got) != "plain 1" {
		t.Fatalf("within the TTL: %q", got)
	}
	// A reader that comes while the download is still being put away
	// shares it; past the TTL means after that.
	awaitNoDownload(t, s)
	clock.Advance(11 * time.Second)
	if got := read("plain"); string(got) != "plain 2" {
		t.Fatalf("past the TTL: %q", got)
	}

	// private is never kept; max-age shortens the TTL.
	read("nostore")
	read("nostore")
	if n := up.count("GET", "/files/nostore"); n != 2 {
		t.Errorf("private: %d GETs, want 2", n)
	}
	read("short")
	awaitNoDownload(t, s)
	clock.Advance(3 * time.Second)
	read("short")
	if n := up.count("GET", "/files/short"); n != 2 {
		t.Errorf("max-age=2 after 3s: %d GETs, want 2", n)
	}

	// Vary on a header the store always sends the same way (as Caddy's
	// file_server sends) is cached; Vary on the client's header is not.
	up.set("vary-ae", upFile{data: []byte("a"), vary: "Accept-Encoding"})
	up.set("vary-client", upFile{data: []byte("b"), vary: "Accept-Encoding, X-TFTP-Client"})
	for range 2 {
		read("vary-ae")
		read("vary-client")
	}
	if n := up.count("GET", "/files/vary-ae"); n != 1 {
		t.Errorf("Vary: Accept-Encoding: %d GETs, want 1", n)
	}
	if n := up.count("GET", "/files/vary-client"); n != 2 {
		t.Errorf("Vary: X-TFTP-Client: %d GETs, want 2", n)
	}

	// An upload through the store drops the cached copy.
	w, _ := s.Create("etag", store.CreateOptions{Overwrite: true, Size: -1})
	_, _ = w.Write([]byte("uploaded"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := read("etag"); string(got) != "uploaded" {
		t.Errorf("after an upload: %q", got)
	}

	// The cache is bounded: the least recently used go first.
	for i := range 5 {
		up.set("big"+strconv.Itoa(i), upFile{data: pattern(40000)})
		read("big" + strconv.Itoa(i))
	}
	files, used := s.Usage()
	if used > 100000 || files == 0 {
		t.Errorf("cache holds %d files, %d bytes; max 100000", files, used)
	}
}

// TestHTTPStorePeakHeap reads a 512 MiB object generated by the upstream
// and checks that the heap never grows by more than peakHeapBound: the
// body streams through the temporary file, 64 KiB at a time.
func TestHTTPStorePeakHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 512 MiB")
	}
	const size = 512 << 20
	const peakHeapBound = 16 << 20
	up := newUpstream(t)
	s, _ := newStore(t, up.URL+"/generated/", nil)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	f, err := s.Open(strconv.Itoa(size))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Size() != size {
		t.Fatalf("size %d", f.Size())
	}
	buf := make([]byte, 65464)
	want := pattern(64 << 10)
	var peak uint64
	var off int64
	for i := 0; ; i++ {
		n, err := f.ReadAt(buf, off)
		for j := 0; j < n; j += 4093 {
			if buf[j] != want[(off+int64(j))%(64<<10)] {
				t.Fatalf("byte %d differs", off+int64(j))
			}
		}
		off += int64(n)
		if i%256 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if off != size {
		t.Fatalf("read %d bytes", off)
	}
	grown := int64(peak) - int64(base)
	t.Logf("heap in use grew by at most %d KiB reading %d MiB", grown>>10, size>>20)
	if grown > peakHeapBound {
		t.Errorf("heap grew by %d MiB, bound %d MiB", grown>>20, peakHeapBound>>20)
	}
}

// TestHTTPStoreAbandonedDownloadStops: without a cache, a download whose
// only reader closed stops after abandonAfter instead of fetching the rest
// of a large file.
func TestHTTPStoreAbandonedDownloadStops(t *testing.T) {
	const size = 1 << 30
	up := newUpstream(t)
	s, logs := newStore(t, up.URL+"/generated/", nil)
	// Each look at the clock is a second later, so the download notices
	// after a few chunks that it has had no reader for abandonAfter.
	var ticks atomic.Int64
	start := time.Now()
	s.now = func() time.Time { return start.Add(time.Duration(ticks.Add(1)) * time.Second) }
	f, err := s.Open(strconv.Itoa(size))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1468)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	select {
	case sent := <-up.generated:
		if sent >= size {
			t.Fatalf("the upstream sent the whole %d bytes", sent)
		}
		t.Logf("the upstream sent %d MiB before the download stopped", sent>>20)
	case <-time.After(30 * time.Second):
		t.Fatal("the download of a file nobody reads did not stop")
	}
	if logs.FilterMessage("download stopped: no reader left").Len() != 1 {
		t.Errorf("no debug line for the stopped download: %v", logs.All())
	}
}

// TestHTTPStoreReadAtAllocs: reading a block of a downloaded file, the
// transfer engine's hot path, allocates nothing.
func TestHTTPStoreReadAtAllocs(t *testing.T) {
	up := newUpstream(t)
	up.set("f", upFile{data: pattern(100000)})
	s, _ := newStore(t, up.URL+"/files/", nil)
	f, err := s.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1468)
	off := int64(0)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		off = (off + 1468) % 90000
	})
	if allocs != 0 {
		t.Errorf("ReadAt allocates %.1f times per block", allocs)
	}
}

// TestHTTPStoreProvisionErrors: bad settings fail the load, and Cleanup
// after a failed Provision (which Caddy calls) is safe.
func TestHTTPStoreProvisionErrors(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	for _, s := range []*HTTP{
		{},
		{URL: "http://h/no-slash"},
		{URL: "http://h/", IdleTimeout: -1},
		{URL: "http://h/", UploadMethod: "PU T"},
		{URL: "http://h/", TempDir: "/nonexistent/dir"},
		{URL: "http://h/", TLS: &TLSConfig{CA: "/nonexistent.pem"}},
		{URL: "http://h/", TLS: &TLSConfig{ClientCertificate: "c.pem"}},
	} {
		if err := s.Provision(ctx); err == nil {
			t.Errorf("%+v: provisioned", s.URL)
		}
		if err := s.Cleanup(); err != nil {
			t.Error(err)
		}
	}
}

func TestHTTPStoreCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`store web http {
		url http://127.0.0.1:8080/boot/
		header Authorization "Bearer x"
		client_header X-Client
		upload_method post
		dial_timeout 2s
		response_header_timeout 3s
		idle_timeout 4s
		max_file_size 64MiB
		tls_server_name boot.example
		cache {
			max_size 1GiB
			ttl 5m
		}
	}`)
	var s HTTP
	if err := s.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if s.URL != "http://127.0.0.1:8080/boot/" || s.Headers.Get("Authorization") != "Bearer x" || s.ClientHeader != "X-Client" ||
		s.UploadMethod != "POST" || s.DialTimeout != caddy.Duration(2*time.Second) || s.IdleTimeout != caddy.Duration(4*time.Second) ||
		s.MaxFileSize != 64<<20 || s.TLS.ServerName != "boot.example" || s.Cache.MaxSize != 1<<30 || s.Cache.TTL != caddy.Duration(5*time.Minute) {
		t.Errorf("parsed: %+v", &s)
	}
	for _, bad := range []string{
		"store web http {\n}",
		"store web http {\nurl http://h/no-slash\n}",
		"store web http {\nurl http://h/\nbogus\n}",
		"store web http {\nurl http://h/\ntls_client_certificate only-one\n}",
	} {
		var s HTTP
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad))
		if err == nil || !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: %v, want an error with file and line", bad, err)
		}
	}
}

// TestHTTPStoreCloseWakesReadAt: closing a file wakes a ReadAt that waits
// for bytes a stalled upstream has not sent.
func TestHTTPStoreCloseWakesReadAt(t *testing.T) {
	up := newUpstream(t)
	up.set("f", upFile{data: pattern(100000)})
	s, _ := newStore(t, up.URL+"/stall/", nil)
	f, err := s.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	<-up.stallHit
	got := make(chan error, 1)
	go func() {
		_, err := f.ReadAt(make([]byte, 512), 50000)
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("ReadAt beyond the stall returned early: %v", err)
	default:
	}
	f.Close()
	select {
	case err := <-got:
		if !errors.Is(err, fs.ErrClosed) {
			t.Fatalf("ReadAt woken by Close: %v, want fs.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the waiting ReadAt")
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// awaitNoDownload waits, bounded, until s has no download in flight.
func awaitNoDownload(t *testing.T, s *HTTP) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.inflight)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d downloads still in flight", n)
		}
		time.Sleep(time.Millisecond)
	}
}
