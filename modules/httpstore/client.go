package httpstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/caddy-tftp/tftp/store"
	"go.uber.org/zap"
)

// newClient builds the HTTP client. Its timeouts bound connecting and
// waiting for headers; bodies are bounded by the idle timeout per read
// instead of a deadline for the whole request, which would cut off a
// large file that is still moving.
func (s *HTTP) newClient() (*http.Client, error) {
	tlsConfig, err := s.TLS.build()
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	dialer := &net.Dialer{Timeout: time.Duration(s.DialTimeout), KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   time.Duration(s.DialTimeout),
		ResponseHeaderTimeout: time.Duration(s.ResponseHeaderTimeout),
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
		ForceAttemptHTTP2:     true,
		// Transparent gunzip would hide the Content-Length, which is the
		// size a client asks for with tsize.
		DisableCompression: true,
	}
	return &http.Client{Transport: tr}, nil
}

// build turns the TLS settings into a tls.Config; nil keeps the defaults.
func (c *TLSConfig) build() (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificate found", c.CA)
		}
		cfg.RootCAs = pool
	}
	if (c.ClientCertificate == "") != (c.ClientKey == "") {
		return nil, errors.New("client_certificate and client_key go together")
	}
	if c.ClientCertificate != "" {
		cert, err := tls.LoadX509KeyPair(c.ClientCertificate, c.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// do sends a request without a body whose response is only its status.
func (s *HTTP) do(method, u string, body io.Reader, length int64, req store.RequestInfo, extra http.Header) (*http.Response, error) {
	return s.doContext(s.fetchCtx, method, u, body, length, req, extra)
}

// doContext sends one request to the upstream under ctx. body, when not
// nil, is sent with the given Content-Length (never chunked); extra
// headers are added last. An error wraps store.ErrUnavailable and is
// logged.
func (s *HTTP) doContext(ctx context.Context, method, u string, body io.Reader, length int64, info store.RequestInfo, extra http.Header) (*http.Response, error) {
	r, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, redact(u), err)
	}
	if body != nil {
		r.ContentLength = length
		if length == 0 {
			r.Body = http.NoBody
		}
	}
	for name, vals := range s.Headers {
		name = http.CanonicalHeaderKey(name)
		if name == "Host" && len(vals) > 0 {
			r.Host = vals[0] // Go sends r.Host, not a Host header
			continue
		}
		r.Header[name] = vals
	}
	r.Header.Set("Accept-Encoding", "identity")
	if s.ClientHeader != "-" && info.Client.IsValid() {
		r.Header.Set(s.ClientHeader, info.Client.String())
	}
	for name, vals := range extra {
		r.Header[name] = vals
	}
	resp, err := s.client.Do(r)
	if err != nil {
		// url.Error repeats the URL, password included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		err = fmt.Errorf("%s %s: %w: %w", method, redact(u), err, store.ErrUnavailable)
		s.logger.Error("upstream request failed", zap.String("method", method), zap.String("url", redact(u)), zap.Error(err))
		return nil, err
	}
	return resp, nil
}

// errIdle is the cause of a request cancelled for silence.
var errIdle = errors.New("upstream idle timeout")

// idleReader cancels a request when the body it reads (a response, or an
// upload the transport sends) makes no progress for the idle timeout: the
// timer is re-armed after every read and stopped at the end. It allocates
// nothing per read.
type idleReader struct {
	r     io.Reader
	idle  time.Duration
	timer *time.Timer
	ctx   context.Context
}

// newIdleReader watches reads of r, starting now; cancel must cancel the
// request that r belongs to (ctx), with errIdle as the cause.
func newIdleReader(ctx context.Context, r io.Reader, idle time.Duration, cancel context.CancelCauseFunc) *idleReader {
	return &idleReader{r: r, idle: idle, ctx: ctx, timer: time.AfterFunc(idle, func() { cancel(errIdle) })}
}

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if err != nil {
		ir.timer.Stop()
		if !errors.Is(err, io.EOF) && errors.Is(context.Cause(ir.ctx), errIdle) {
			err = fmt.Errorf("nothing moved for %s: %w", ir.idle, errIdle)
		}
		return n, err
	}
	ir.timer.Reset(ir.idle)
	return n, nil
}

// stop releases the timer.
func (ir *idleReader) stop() { ir.timer.Stop() }

// lastModified reads the Last-Modified header, or returns def.
func lastModified(h http.Header, def time.Time) time.Time {
	if t, err := http.ParseTime(h.Get("Last-Modified")); err == nil {
		return t
	}
	return def
}
