package httpstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/caddy-tftp/tftp/store"
)

// Create implements store.Store. The upload is gathered in a temporary
// file (at most MaxFileSize bytes) and sent upstream whole by Commit, so
// the upstream never sees a partial file. Without Overwrite the request
// carries If-None-Match: *, and an upstream that already has the file
// answers 412, which refuses the upload with TFTP error 6.
func (s *HTTP) Create(name string, opts store.CreateOptions) (store.Upload, error) {
	if opts.Size > s.MaxFileSize {
		return nil, fmt.Errorf("%s: declared %d bytes, over max_file_size %d: %w", name, opts.Size, s.MaxFileSize, store.ErrTooLarge)
	}
	f, remove, err := s.tempFile("tftp-http-put-*")
	if err != nil {
		return nil, err
	}
	return &upload{
		s:         s,
		url:       s.tmpl.expand(name, opts.Request),
		file:      f,
		remove:    remove,
		overwrite: opts.Overwrite,
		req:       opts.Request,
	}, nil
}

// upload gathers a file to send upstream in one request.
type upload struct {
	s         *HTTP
	url       string
	file      *os.File
	remove    string
	n         int64
	overwrite bool
	req       store.RequestInfo
	ended     bool
}

// Write implements io.Writer.
func (u *upload) Write(p []byte) (int, error) {
	if u.n+int64(len(p)) > u.s.MaxFileSize {
		return 0, fmt.Errorf("over max_file_size %d: %w", u.s.MaxFileSize, store.ErrTooLarge)
	}
	n, err := u.file.Write(p)
	u.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("gathering the upload: %w", err)
	}
	return n, nil
}

// Commit sends the whole file with its Content-Length and returns once
// the upstream accepted it (any 2xx status).
func (u *upload) Commit() error {
	if u.ended {
		return errUploadEnded
	}
	defer u.Abort()
	var extra http.Header
	if !u.overwrite {
		extra = http.Header{"If-None-Match": {"*"}}
	}
	ctx, cancel := context.WithCancelCause(u.s.fetchCtx)
	defer cancel(nil)
	var body io.Reader = io.NewSectionReader(u.file, 0, u.n)
	var ir *idleReader
	if u.n > 0 {
		ir = newIdleReader(ctx, body, time.Duration(u.s.IdleTimeout), cancel)
		defer ir.stop()
		body = ir
	}
	resp, err := u.s.doContext(ctx, u.s.UploadMethod, u.url, body, u.n, u.req, extra)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	u.s.invalidate(u.url)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return u.s.statusError(u.s.UploadMethod, u.url, resp.StatusCode)
	}
	return nil
}

// Abort implements store.Upload: nothing was sent, and the temporary file
// goes away.
func (u *upload) Abort() {
	if u.ended {
		return
	}
	u.ended = true
	_ = u.file.Close()
	if u.remove != "" {
		_ = os.Remove(u.remove)
	}
}

// errUploadEnded is returned by Commit after the upload ended.
var errUploadEnded = errors.New("upload already ended")

var _ store.Upload = (*upload)(nil)
