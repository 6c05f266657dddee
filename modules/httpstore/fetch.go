package httpstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-tftp/tftp/store"
	"go.uber.org/zap"
)

// copyBuffer is how much of a response is read per write to the temporary
// file; it is the only memory a download holds.
const copyBuffer = 64 << 10

// maxOffset makes body.wait wait for the end of the file.
const maxOffset = math.MaxInt64

// body is one upstream response being written to a temporary file that any
// number of readers read while it grows. It is reference counted: the
// download, the cache and every open file hold one reference, and the
// temporary file is closed and removed when the last is released.
type body struct {
	file    *os.File
	remove  string // name to remove when closed, where the OS keeps it
	length  int64  // Content-Length, or -1
	modTime time.Time
	meta    cacheMeta

	refs atomic.Int64

	mu      sync.Mutex
	grown   sync.Cond // signalled when written or done change
	written int64
	done    bool
	err     error // why the download failed; nil once complete
}

func newBody(f *os.File, remove string, length int64, modTime time.Time, meta cacheMeta) *body {
	b := &body{file: f, remove: remove, length: length, modTime: modTime, meta: meta}
	b.grown.L = &b.mu
	b.refs.Store(1)
	return b
}

// ref takes a reference; the caller must already hold one, or hold the
// store's lock while the body is reachable from the store.
func (b *body) ref() { b.refs.Add(1) }

// release drops a reference and closes the file with the last one.
func (b *body) release() {
	if b.refs.Add(-1) == 0 {
		_ = b.file.Close()
		if b.remove != "" {
			_ = os.Remove(b.remove)
		}
	}
}

// appended records n more bytes written to the file.
func (b *body) appended(n int64) {
	b.mu.Lock()
	b.written += n
	b.mu.Unlock()
	b.grown.Broadcast()
}

// finish records the end of the download.
func (b *body) finish(err error) {
	b.mu.Lock()
	b.done, b.err = true, err
	b.mu.Unlock()
	b.grown.Broadcast()
}

// wait blocks until the file holds the bytes before end, the download has
// ended, or stop (when not nil) is raised, and returns how much it holds.
func (b *body) wait(end int64, stop *atomic.Bool) (written int64, done bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.written < end && !b.done && (stop == nil || !stop.Load()) {
		b.grown.Wait()
	}
	return b.written, b.done, b.err
}

// wake makes every wait check its stop flag again. Taking the lock first
// means a waiter has either not checked the flag yet (and will see it) or
// is already waiting (and gets the broadcast).
func (b *body) wake() {
	b.mu.Lock()
	b.grown.Broadcast()
	b.mu.Unlock()
}

// state returns the progress without waiting.
func (b *body) state() (written int64, done bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.written, b.done, b.err
}

// file is one reader's view of a body: a store.File whose ReadAt waits for
// bytes that have not arrived yet.
type file struct {
	b      *body
	size   int64
	closed atomic.Bool
}

// ReadAt implements io.ReaderAt. It returns io.EOF at the end of the file,
// and the download's error when the upstream broke off before off+len(p).
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fs.ErrInvalid
	}
	end := off + int64(len(p))
	if end < off {
		end = maxOffset
	}
	written, done, err := f.b.wait(end, &f.closed)
	if f.closed.Load() && written < end && !done {
		return 0, fs.ErrClosed
	}
	if written <= off {
		if err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	want := min(end, written) - off
	n, rerr := f.b.file.ReadAt(p[:want], off)
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		return n, fmt.Errorf("reading the downloaded file: %w", rerr)
	}
	if n < len(p) {
		if err != nil {
			return n, err
		}
		if !done && rerr == nil {
			return n, io.ErrUnexpectedEOF // cannot happen: wait returned early
		}
		return n, io.EOF
	}
	return n, nil
}

// Size implements store.File: the Content-Length, or the whole length when
// the file was opened with NeedSize, or else -1.
func (f *file) Size() int64 { return f.size }

// Arrived implements store.GrowingFile: the bytes downloaded so far.
func (f *file) Arrived() int64 {
	n, _, _ := f.b.state()
	return n
}

// ModTime implements store.File: the upstream's Last-Modified, or the time
// the download started.
func (f *file) ModTime() time.Time { return f.b.modTime }

// Close implements store.File and store.GrowingFile: a ReadAt waiting for
// bytes returns fs.ErrClosed at once. Closing twice does nothing.
func (f *file) Close() error {
	if f.closed.CompareAndSwap(false, true) {
		f.b.wake()
		f.b.release()
	}
	return nil
}

// call is a download in flight, shared by every reader of its URL.
type call struct {
	ready    chan struct{} // closed once the response headers are in
	pending  int           // callers waiting for ready; each gets a reference
	resolved bool
	body     *body
	err      error
}

// acquire returns a referenced body for the URL: a fresh cached one, the
// one being downloaded, or a new download, which it starts. It returns once
// the upstream's headers are in.
func (s *HTTP) acquire(u string, req store.RequestInfo) (*body, error) {
	s.mu.Lock()
	if c := s.inflight[u]; c != nil {
		if c.resolved {
			c.body.ref()
			s.mu.Unlock()
			return c.body, nil
		}
		c.pending++
		s.mu.Unlock()
		<-c.ready
		return c.body, c.err
	}
	var stale *entry
	var conditional http.Header
	if s.cache != nil {
		if e := s.cache.get(u); e != nil {
			if s.now().Before(e.expires) {
				e.body.ref()
				s.mu.Unlock()
				return e.body, nil
			}
			if e.meta.validators() {
				stale, conditional = e, e.meta.conditional()
				e.body.ref() // held by the revalidation
			} else {
				s.cache.remove(e)
			}
		}
	}
	c := &call{ready: make(chan struct{}), pending: 1}
	s.inflight[u] = c
	s.mu.Unlock()
	go s.download(u, c, stale, conditional, req)
	<-c.ready
	return c.body, c.err
}

// resolve hands the waiting callers the body (each with a reference), or
// the error. A call that failed, or whose body is already complete (a
// cached one), is forgotten at once; otherwise later readers join it until
// the download ends.
func (s *HTTP) resolve(u string, c *call, b *body, complete bool, err error) {
	s.mu.Lock()
	c.resolved, c.body, c.err = true, b, err
	if err == nil {
		b.refs.Add(int64(c.pending))
	}
	if err != nil || complete {
		s.forget(u, c)
	}
	s.mu.Unlock()
	close(c.ready)
}

// forget removes a finished call; the caller holds s.mu.
func (s *HTTP) forget(u string, c *call) {
	if s.inflight[u] == c {
		delete(s.inflight, u)
	}
}

// download runs one GET, detached from any caller: it ends when the body
// is complete, fails, or stalls for the idle timeout, never because a
// reader went away.
func (s *HTTP) download(u string, c *call, stale *entry, extra http.Header, req store.RequestInfo) {
	ctx, cancel := context.WithCancelCause(s.fetchCtx)
	defer cancel(nil)
	if stale != nil {
		defer stale.body.release()
	}
	start := s.now()
	resp, err := s.doContext(ctx, http.MethodGet, u, nil, 0, req, extra)
	if err != nil {
		s.resolve(u, c, nil, false, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && stale != nil {
		s.revalidated(u, c, stale, resp.Header, start)
		return
	}
	if resp.StatusCode != http.StatusOK {
		s.resolve(u, c, nil, false, s.statusError(http.MethodGet, u, resp.StatusCode))
		return
	}
	if resp.ContentLength > s.MaxFileSize {
		s.resolve(u, c, nil, false, fmt.Errorf("GET %s: %d bytes, over max_file_size %d: %w", redact(u), resp.ContentLength, s.MaxFileSize, store.ErrTooLarge))
		return
	}
	f, remove, err := s.tempFile("tftp-http-get-*")
	if err != nil {
		s.resolve(u, c, nil, false, err)
		return
	}
	b := newBody(f, remove, resp.ContentLength, lastModified(resp.Header, start), parseCacheMeta(resp.Header, s.ClientHeader))
	s.resolve(u, c, b, false, nil)

	ir := newIdleReader(ctx, resp.Body, time.Duration(s.IdleTimeout), cancel)
	defer ir.stop()
	err = s.copyBody(u, c, b, ir)
	switch {
	case errors.Is(err, errAbandoned):
		if ce := s.logger.Check(zap.DebugLevel, "download stopped: no reader left"); ce != nil {
			ce.Write(zap.String("url", redact(u)))
		}
	case err != nil:
		got, _, _ := b.state()
		err = fmt.Errorf("GET %s: broke off after %d bytes: %w: %w", redact(u), got, err, store.ErrUnavailable)
		s.logger.Error("upstream download failed", zap.String("url", redact(u)), zap.Int("status", resp.StatusCode), zap.Error(err))
	}
	b.finish(err)
	s.mu.Lock()
	s.forget(u, c)
	if err == nil && s.cache != nil && !s.closed && b.meta.storable() {
		// Freshness counts from when the request was sent (RFC 9111
		// section 4.2.3): never longer than the upstream allowed.
		s.cache.put(u, b, b.meta.expires(start, time.Duration(s.Cache.TTL)))
	} else {
		b.release()
	}
	s.mu.Unlock()
}

// errAbandoned stops a download that no reader wants any more.
var errAbandoned = errors.New("no reader left")

// abandonAfter is how long a download without a cache goes on with no
// reader before it stops. It lets a client that reads a file twice in a
// row, like UEFI firmware (a tsize probe, then the real read), share one
// download.
const abandonAfter = 5 * time.Second

// copyBody writes the response into the body's file as it arrives. Without
// a cache, a download that has had no reader for abandonAfter is stopped:
// nobody can join it any more once it is forgotten.
func (s *HTTP) copyBody(u string, c *call, b *body, r io.Reader) error {
	buf := make([]byte, copyBuffer)
	var total int64
	var lonelySince time.Time
	for {
		n, err := r.Read(buf)
		if n > 0 {
			total += int64(n)
			if total > s.MaxFileSize {
				return fmt.Errorf("over max_file_size %d: %w", s.MaxFileSize, store.ErrTooLarge)
			}
			if _, werr := b.file.WriteAt(buf[:n], total-int64(n)); werr != nil {
				return fmt.Errorf("writing the temporary file: %w", werr)
			}
			b.appended(int64(n))
			if s.cache == nil && b.refs.Load() == 1 {
				now := s.now()
				switch {
				case lonelySince.IsZero():
					lonelySince = now
				case now.Sub(lonelySince) >= abandonAfter && s.abandon(u, c, b):
					return errAbandoned
				}
			} else {
				lonelySince = time.Time{}
			}
		}
		if errors.Is(err, io.EOF) {
			if b.length >= 0 && total != b.length {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// abandon forgets the call when the download holds the only reference.
func (s *HTTP) abandon(u string, c *call, b *body) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.refs.Load() != 1 {
		return false
	}
	s.forget(u, c)
	return true
}

// revalidated keeps a cached file the upstream answered 304 for.
func (s *HTTP) revalidated(u string, c *call, stale *entry, h http.Header, now time.Time) {
	s.mu.Lock()
	stale.meta.refresh(h, now)
	if s.cache.entries[u] == stale {
		stale.expires = stale.meta.expires(now, time.Duration(s.Cache.TTL))
	}
	s.mu.Unlock()
	s.resolve(u, c, stale.body, true, nil)
}

// tempFile creates a temporary file in TempDir and removes its name at
// once where the OS allows, so a crash leaves nothing behind; otherwise it
// returns the name to remove after closing.
func (s *HTTP) tempFile(pattern string) (*os.File, string, error) {
	f, err := os.CreateTemp(s.TempDir, pattern)
	if err != nil {
		return nil, "", fmt.Errorf("temporary file: %w", err)
	}
	if os.Remove(f.Name()) == nil {
		return f, "", nil
	}
	return f, f.Name(), nil
}

// invalidate drops a cached file after the upstream's copy changed.
func (s *HTTP) invalidate(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cache != nil {
		if e := s.cache.get(u); e != nil {
			s.cache.remove(e)
		}
	}
}

var _ store.GrowingFile = (*file)(nil)
