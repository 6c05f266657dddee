package httpstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-tftp/tftp/store"
	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// upstream is a real HTTP server for the tests: it serves files from a
// map (with ETag and Cache-Control as set), takes PUT and DELETE, and under
// special paths trickles, stalls, breaks off mid-body or answers a status.
// It counts every request by method and path.
type upstream struct {
	*httptest.Server

	mu       sync.Mutex
	files    map[string]upFile
	counts   map[string]int
	puts     []putRecord
	headers  []http.Header
	gate     chan struct{} // /gated/ responses wait for it after headers
	stall    chan struct{} // /stall/ responses wait for it mid-body
	stallHit chan struct{} // closed when a /stall/ response has sent its first part

	generated chan int64  // bytes each /generated/ response sent, when it ends
	unstalled atomic.Bool // a /stall/ response has gone past its stall
}

type upFile struct {
	data         []byte
	etag         string
	lastModified string
	cacheControl string
	vary         string
}

type putRecord struct {
	path             string
	body             []byte
	contentLength    int64
	transferEncoding []string
	ifNoneMatch      string
	client           string
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{
		files:     map[string]upFile{},
		counts:    map[string]int{},
		gate:      make(chan struct{}),
		stall:     make(chan struct{}),
		stallHit:  make(chan struct{}),
		generated: make(chan int64, 16),
	}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(func() {
		u.release()
		u.Close()
	})
	return u
}

// release opens the gate and ends every stall.
func (u *upstream) release() {
	u.mu.Lock()
	defer u.mu.Unlock()
	select {
	case <-u.gate:
	default:
		close(u.gate)
	}
	select {
	case <-u.stall:
	default:
		close(u.stall)
	}
}

func (u *upstream) set(name string, f upFile) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.files[name] = f
}

func (u *upstream) count(method, path string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.counts[method+" "+path]
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.counts[r.Method+" "+r.URL.Path]++
	h := r.Header.Clone()
	h.Set("X-Seen-Host", r.Host)
	u.headers = append(u.headers, h)
	u.mu.Unlock()
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)
	if len(parts) < 2 {
		http.NotFound(w, r)
		return
	}
	kind, name := parts[0], parts[1]
	switch kind {
	case "files":
		u.serveFile(w, r, name)
	case "status":
		code, _ := strconv.Atoi(strings.SplitN(name, "/", 2)[0])
		w.WriteHeader(code)
	case "gated":
		// 200 with the headers at once, the body after the gate opens.
		data := u.file(name).data
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-u.gate:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(data)
	case "stall":
		// The first 4 KiB, then nothing until the test ends the stall
		// (or 10s pass), then the rest.
		data := u.file(name).data
		if r.URL.Query().Get("length") != "no" {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		}
		_, _ = w.Write(data[:4096])
		w.(http.Flusher).Flush()
		u.mu.Lock()
		select {
		case <-u.stallHit:
		default:
			close(u.stallHit)
		}
		u.mu.Unlock()
		select {
		case <-u.stall:
		case <-r.Context().Done():
			return
		case <-time.After(10 * time.Second):
		}
		u.unstalled.Store(true)
		_, _ = w.Write(data[4096:])
	case "broken":
		// Announces the whole length, sends half, and drops the connection.
		data := u.file(name).data
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		_, _ = w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	case "chunked":
		// No Content-Length: the body goes out chunked.
		data := u.file(name).data
		for len(data) > 0 {
			n := min(len(data), 1000)
			_, _ = w.Write(data[:n])
			w.(http.Flusher).Flush()
			data = data[n:]
		}
	case "generated":
		// n bytes of pattern, made on the fly: /generated/<n>.
		n, _ := strconv.ParseInt(name, 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		chunk := pattern(64 << 10)
		sent := int64(0)
		defer func() {
			select {
			case u.generated <- sent:
			default:
			}
		}()
		for sent < n {
			k := min(n-sent, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			sent += k
		}
	default:
		http.NotFound(w, r)
	}
}

func (u *upstream) file(name string) upFile {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.files[name]
}

func (u *upstream) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	switch r.Method {
	case http.MethodPut:
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.puts = append(u.puts, putRecord{path: name, body: body, contentLength: r.ContentLength,
			transferEncoding: r.TransferEncoding, ifNoneMatch: r.Header.Get("If-None-Match"), client: r.Header.Get(defaultClientHeader)})
		_, exists := u.files[name]
		if r.Header.Get("If-None-Match") == "*" && exists {
			u.mu.Unlock()
			w.WriteHeader(http.StatusPreconditionFailed)
			return
		}
		u.files[name] = upFile{data: body}
		u.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		return
	case http.MethodDelete:
		u.mu.Lock()
		_, ok := u.files[name]
		delete(u.files, name)
		u.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	u.mu.Lock()
	f, ok := u.files[name]
	u.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if f.etag != "" {
		w.Header().Set("ETag", f.etag)
		if r.Header.Get("If-None-Match") == f.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if f.lastModified != "" {
		w.Header().Set("Last-Modified", f.lastModified)
		if f.etag == "" && r.Header.Get("If-Modified-Since") == f.lastModified {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if f.cacheControl != "" {
		w.Header().Set("Cache-Control", f.cacheControl)
	}
	if f.vary != "" {
		w.Header().Set("Vary", f.vary)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(f.data)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(f.data)
}

// pattern returns the first n bytes of a fixed pseudo-random stream that
// repeats every 64 KiB.
func pattern(n int64) []byte {
	const period = 64 << 10
	b := make([]byte, n)
	for i := range b[:min(n, period)] {
		x := uint32(i)
		x ^= x >> 7
		x *= 2654435761
		b[i] = byte(x >> 13)
	}
	for i := int64(period); i < n; i *= 2 {
		copy(b[i:], b[:i])
	}
	return b
}

// newStore provisions an http store in front of base.
func newStore(t *testing.T, base string, configure func(*HTTP)) (*HTTP, *observer.ObservedLogs) {
	t.Helper()
	s := &HTTP{URL: base, TempDir: t.TempDir()}
	if configure != nil {
		configure(s)
	}
	core, logs := observer.New(zap.DebugLevel)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := s.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	s.logger = zap.New(core)
	t.Cleanup(func() { _ = s.Cleanup() })
	return s, logs
}

// readAll reads a whole store file the way the TFTP server does: blocks at
// increasing offsets until a short read.
func readAll(f store.File, bs int) ([]byte, error) {
	var out []byte
	buf := make([]byte, bs)
	for off := int64(0); ; off += int64(bs) {
		n, err := f.ReadAt(buf, off)
		out = append(out, buf[:n]...)
		if n < bs {
			if err == io.EOF {
				return out, nil
			}
			if err == nil {
				return out, fmt.Errorf("short read at %d without an error", off)
			}
			return out, err
		}
	}
}

// readCompare reads a store file block by block like readAll and compares
// it with want as it goes, holding one block.
func readCompare(f store.File, bs int, want []byte) error {
	buf := make([]byte, bs)
	for off := 0; ; off += bs {
		n, err := f.ReadAt(buf, int64(off))
		if n > len(want)-off || !bytes.Equal(buf[:n], want[off:off+n]) {
			return fmt.Errorf("bytes differ in the block at %d", off)
		}
		if n < bs {
			if err != io.EOF {
				return fmt.Errorf("short read at %d: %v", off, err)
			}
			if off+n != len(want) {
				return fmt.Errorf("%d bytes, want %d", off+n, len(want))
			}
			return nil
		}
	}
}

// fakeClock is a settable clock for the cache tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
