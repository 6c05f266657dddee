// Package httpstore is the tftp.stores.http store module: files read from
// and written to an HTTP server, so devices that only speak TFTP can boot
// from artifact servers, object stores and web applications.
package httpstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/caddy-tftp/tftp/store"
	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(new(HTTP))
}

// Defaults of the http store.
const (
	defaultDialTimeout           = 10 * time.Second
	defaultResponseHeaderTimeout = 30 * time.Second
	defaultIdleTimeout           = 30 * time.Second
	defaultMaxFileSize           = 4 << 30
	defaultClientHeader          = "X-TFTP-Client"
	defaultCacheMaxSize          = 256 << 20
	defaultCacheTTL              = time.Minute
)

// HTTP serves files from an HTTP server. A read request becomes a GET of
// the URL made from the file name, and the first DATA block leaves as soon
// as its bytes have arrived: the response is streamed through a temporary
// file, so memory stays small whatever the file's size. Clients reading
// the same URL at the same time share one GET: a boot storm of a hundred
// clients costs the upstream one download. A write request becomes one PUT
// of the whole file, sent with its Content-Length after the last block;
// the client gets its final ACK only once the upstream accepted it.
//
// The size a client asks for with the tsize option is the response's
// Content-Length. When the upstream sends none (a chunked or generated
// response) and the client asks for the size, as UEFI PXE firmware does,
// the file is first downloaded whole into the temporary file (at most
// MaxFileSize bytes) and then served with its size; clients that do not
// ask for the size are served as the bytes arrive.
//
// Upstream answers map to TFTP errors: 404 and 410 to error 1 (file not
// found), 401 and 403 to error 2 (access violation); any other status, a
// timeout or a response that breaks off mid-file ends the transfer with
// error 0 ("upstream unavailable") and a log line naming the URL.
type HTTP struct {
	// URL tells where files are. A URL ending in "/" is a base: the
	// requested name is appended to it, each path segment escaped. Any
	// other URL is a template that must contain {file}; these placeholders
	// are filled per request:
	//
	//   - {file}: the requested name (cleaned, with "/" between
	//     directories), escaped for the part of the URL it is in;
	//   - {remote_host}: the client's IP address;
	//   - {remote_port}: the client's port;
	//   - {tftp.server}: the name of the tftp server that took the request.
	//
	// Global placeholders such as {env.BOOT_URL} are expanded when the
	// config loads. Concurrent reads, and the cache, are shared per
	// resulting URL, so an upstream that answers each client differently
	// must receive {remote_host} in the URL. Required.
	URL string `json:"url,omitempty"`

	// Headers are added to every request to the upstream, for example an
	// Authorization header. Values may hold global placeholders.
	Headers http.Header `json:"headers,omitempty"`

	// ClientHeader is the request header that carries the client's
	// address ("ip:port") to the upstream; "-" sends none. A GET shared by
	// several clients carries the address of the client that started it.
	// Default: "X-TFTP-Client".
	ClientHeader string `json:"client_header,omitempty"`

	// UploadMethod is the HTTP method that stores an uploaded file.
	// Default: "PUT".
	UploadMethod string `json:"upload_method,omitempty"`

	// DialTimeout bounds connecting to the upstream, TLS handshake
	// included. Default: 10s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// ResponseHeaderTimeout bounds the wait for the response's headers once
	// the request is sent. Default: 30s.
	ResponseHeaderTimeout caddy.Duration `json:"response_header_timeout,omitempty"`

	// IdleTimeout is the longest silence allowed between two reads of a
	// response body, or of an upload's body by the upstream; a download
	// that stalls longer fails. A long transfer that keeps moving is never
	// cut off. Default: 30s.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// MaxFileSize is the largest file downloaded or uploaded, in bytes. A
	// download over it fails with TFTP error 3, as does an upload, before
	// anything is sent upstream. It also bounds the temporary file used to
	// learn the size of a response that has no Content-Length.
	// Default: 4 GiB.
	MaxFileSize int64 `json:"max_file_size,omitempty"`

	// TempDir is the directory of the temporary files that downloads
	// stream through and uploads are gathered in. The files are removed
	// when they are no longer read. Default: the system's temporary
	// directory.
	TempDir string `json:"temp_dir,omitempty"`

	// TLS configures connections to an https upstream.
	TLS *TLSConfig `json:"tls,omitempty"`

	// Cache keeps downloaded files after their transfers end so repeated
	// reads do not reach the upstream. Default: no cache (reads running at
	// the same time still share one download).
	Cache *CacheConfig `json:"cache,omitempty"`

	tmpl     urlTemplate
	client   *http.Client
	logger   *zap.Logger
	fetchCtx context.Context
	now      func() time.Time

	mu       sync.Mutex
	inflight map[string]*call
	cache    *cache
	closed   bool
}

// TLSConfig configures connections to an https upstream.
type TLSConfig struct {
	// CA is a PEM file of the certificate authorities trusted for the
	// upstream, instead of the system's. Default: the system's roots.
	CA string `json:"ca,omitempty"`

	// ClientCertificate and ClientKey are PEM files of a certificate and
	// key presented to an upstream that asks for one. Default: none.
	ClientCertificate string `json:"client_certificate,omitempty"`
	ClientKey         string `json:"client_key,omitempty"`

	// ServerName is the name the upstream's certificate is checked
	// against. Default: the URL's host.
	ServerName string `json:"server_name,omitempty"`
}

// CacheConfig bounds the cache of downloaded files. Responses marked
// no-store or private, or varying by the client's header or by "*", are
// never kept (a Vary on headers the store sends the same way every time,
// such as Accept-Encoding, does not prevent caching); a
// response's max-age or s-maxage shortens TTL, and no-cache makes every
// reuse a revalidation.
type CacheConfig struct {
	// MaxSize is how many bytes of files the cache keeps, on disk in
	// TempDir; the least recently used are dropped first. Default: 256 MiB.
	MaxSize int64 `json:"max_size,omitempty"`

	// TTL is how long a cached file is served without asking the upstream.
	// After it, the file is revalidated with If-None-Match or
	// If-Modified-Since when the upstream sent an ETag or Last-Modified
	// (a 304 keeps it), and downloaded again otherwise. Default: 1m.
	TTL caddy.Duration `json:"ttl,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (*HTTP) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tftp.stores.http",
		New: func() caddy.Module { return new(HTTP) },
	}
}

// Provision fills in the defaults, parses the URL and builds the HTTP
// client.
func (s *HTTP) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	s.now = time.Now
	// Downloads are shared by every reader and may outlive the request,
	// and even the config, that started them: they are bounded by the
	// timeouts, not by a caller's context.
	s.fetchCtx = context.WithoutCancel(ctx)
	s.inflight = make(map[string]*call)
	repl := caddy.NewReplacer()
	if s.URL == "" {
		return fmt.Errorf("url: the upstream URL is required")
	}
	var err error
	if s.tmpl, err = parseURLTemplate(repl.ReplaceKnown(s.URL, "")); err != nil {
		return fmt.Errorf("url %q: %w", s.URL, err)
	}
	for name, vals := range s.Headers {
		for i, v := range vals {
			s.Headers[name][i] = repl.ReplaceKnown(v, "")
		}
	}
	if s.ClientHeader == "" {
		s.ClientHeader = defaultClientHeader
	}
	if s.UploadMethod == "" {
		s.UploadMethod = http.MethodPut
	}
	if s.DialTimeout == 0 {
		s.DialTimeout = caddy.Duration(defaultDialTimeout)
	}
	if s.ResponseHeaderTimeout == 0 {
		s.ResponseHeaderTimeout = caddy.Duration(defaultResponseHeaderTimeout)
	}
	if s.IdleTimeout == 0 {
		s.IdleTimeout = caddy.Duration(defaultIdleTimeout)
	}
	if s.MaxFileSize == 0 {
		s.MaxFileSize = defaultMaxFileSize
	}
	if s.TempDir == "" {
		s.TempDir = os.TempDir()
	}
	switch {
	case !validMethod(s.UploadMethod):
		return fmt.Errorf("upload_method %q is not an HTTP method", s.UploadMethod)
	case s.DialTimeout < 0, s.ResponseHeaderTimeout < 0, s.IdleTimeout < 0:
		return errors.New("timeouts must not be negative")
	case s.MaxFileSize < 0:
		return errors.New("max_file_size must not be negative")
	}
	if info, err := os.Stat(s.TempDir); err != nil || !info.IsDir() {
		return fmt.Errorf("temp_dir %s: not a directory", s.TempDir)
	}
	if s.Cache != nil {
		if s.Cache.MaxSize == 0 {
			s.Cache.MaxSize = defaultCacheMaxSize
		}
		if s.Cache.TTL == 0 {
			s.Cache.TTL = caddy.Duration(defaultCacheTTL)
		}
		if s.Cache.MaxSize < 0 || s.Cache.TTL < 0 {
			return errors.New("cache: max_size and ttl must not be negative")
		}
		s.cache = newCache(s.Cache.MaxSize)
	}
	if s.client, err = s.newClient(); err != nil {
		return err
	}
	return nil
}

// Cleanup drops the cache. Downloads still being read finish for their
// readers and their files are removed when the last reader closes.
func (s *HTTP) Cleanup() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.cache != nil {
		s.cache.clear()
	}
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	return nil
}

// Open implements store.Store: it reads the file without a client's
// address in the URL or headers.
func (s *HTTP) Open(name string) (store.File, error) {
	return s.OpenFor(name, store.RequestInfo{})
}

// OpenFor implements store.RequestOpener. It returns once the upstream's
// response headers have arrived; the body is read as it streams in.
func (s *HTTP) OpenFor(name string, req store.RequestInfo) (store.File, error) {
	u := s.tmpl.expand(name, req)
	b, err := s.acquire(u, req)
	if err != nil {
		return nil, err
	}
	size := b.length
	if size < 0 && req.NeedSize {
		// The client needs the size first: wait for the whole file, which
		// MaxFileSize bounds.
		n, _, err := b.wait(maxOffset, nil)
		if err != nil {
			b.release()
			return nil, err
		}
		size = n
	}
	// Otherwise a response without a length is served as it streams,
	// even when it happens to be complete already: the last block is the
	// first short one.
	return &file{b: b, size: size}, nil
}

// Stat implements store.Store with a HEAD request. The size is -1 when
// the upstream does not send a Content-Length.
func (s *HTTP) Stat(name string) (store.FileInfo, error) {
	u := s.tmpl.expand(name, store.RequestInfo{})
	resp, err := s.do(http.MethodHead, u, nil, 0, store.RequestInfo{}, nil)
	if err != nil {
		return store.FileInfo{}, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return store.FileInfo{}, s.statusError(http.MethodHead, u, resp.StatusCode)
	}
	return store.FileInfo{Name: name, Size: resp.ContentLength, ModTime: lastModified(resp.Header, time.Time{})}, nil
}

// List implements store.Store: an HTTP server has no standard way to list
// its files, so it is refused.
func (s *HTTP) List() ([]store.FileInfo, error) {
	return nil, fmt.Errorf("the http store cannot list the files of its upstream: %w", store.ErrNotSupported)
}

// Delete implements store.Store with a DELETE request; the upstream
// decides whether it allows it.
func (s *HTTP) Delete(name string) error {
	u := s.tmpl.expand(name, store.RequestInfo{})
	resp, err := s.do(http.MethodDelete, u, nil, 0, store.RequestInfo{}, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	s.invalidate(u)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusMethodNotAllowed, resp.StatusCode == http.StatusNotImplemented:
		return fmt.Errorf("DELETE %s: upstream answered %d: %w", redact(u), resp.StatusCode, store.ErrNotSupported)
	}
	return s.statusError(http.MethodDelete, u, resp.StatusCode)
}

// Usage implements store.UsageReporter: the files held by the cache.
func (s *HTTP) Usage() (files int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cache == nil {
		return 0, 0
	}
	return len(s.cache.entries), s.cache.used
}

// Limits implements store.UsageReporter: the cache's size and the largest
// file.
func (s *HTTP) Limits() (maxBytes, maxFileSize int64) {
	if s.cache != nil {
		maxBytes = s.cache.max
	}
	return maxBytes, s.MaxFileSize
}

// validMethod reports whether m is an HTTP method token (RFC 9110 5.6.2).
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c > 0x7e || c <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return true
}

// statusError maps an upstream status to a store error, and logs it.
func (s *HTTP) statusError(method, u string, status int) error {
	var kind error
	level := zap.ErrorLevel
	switch status {
	case http.StatusNotFound, http.StatusGone:
		kind, level = fs.ErrNotExist, zap.DebugLevel
	case http.StatusUnauthorized, http.StatusForbidden:
		kind, level = fs.ErrPermission, zap.WarnLevel
	case http.StatusPreconditionFailed:
		kind, level = fs.ErrExist, zap.DebugLevel
	case http.StatusRequestEntityTooLarge:
		kind, level = store.ErrTooLarge, zap.WarnLevel
	case http.StatusInsufficientStorage:
		kind, level = store.ErrStoreFull, zap.WarnLevel
	default:
		kind = store.ErrUnavailable
	}
	if c := s.logger.Check(level, "upstream refused the request"); c != nil {
		c.Write(zap.String("method", method), zap.String("url", redact(u)), zap.Int("status", status))
	}
	return fmt.Errorf("%s %s: upstream answered %d: %w", method, redact(u), status, kind)
}

// Interface guards
var (
	_ store.Store         = (*HTTP)(nil)
	_ store.RequestOpener = (*HTTP)(nil)
	_ store.UsageReporter = (*HTTP)(nil)
	_ caddy.Provisioner   = (*HTTP)(nil)
	_ caddy.CleanerUpper  = (*HTTP)(nil)
)
