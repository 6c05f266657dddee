package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Defaults of a server's settings.
const (
	defaultListen        = ":69"
	defaultTimeout       = time.Second
	defaultRetries       = 5
	defaultMaxBlockSize  = maxBlockSize
	defaultMaxWindowSize = 64
)

// Server is one TFTP server: the addresses it listens on, the store it
// serves, and the policy applied to every request it receives.
type Server struct {
	// Listen is the list of addresses to accept requests on. Any Caddy
	// network address with a udp, udp4 or udp6 network works; the port
	// defaults to 69 and a port range listens on every port in it:
	// https://caddyserver.com/docs/conventions#network-addresses
	// Replies always come from the address a request was sent to.
	// Default: [":69"].
	Listen []string `json:"listen,omitempty"`

	// Store is the name of the store (from the app's stores) that this
	// server reads and writes. Servers naming the same store share its
	// files. Default: "default".
	Store string `json:"store,omitempty"`

	// ReadOnly refuses every write request with TFTP error 2.
	// Default: false (writes are allowed).
	ReadOnly bool `json:"read_only,omitempty"`

	// NoOverwrite refuses writes to a name that already exists with TFTP
	// error 6; new files can still be created. Default: false (an upload
	// replaces the previous version atomically when it completes).
	NoOverwrite bool `json:"no_overwrite,omitempty"`

	// Timeout is how long to wait for the client before retransmitting;
	// each retry doubles the wait. A client may ask for another value with
	// the RFC 2349 timeout option. Default: 1s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Retries is how many times a packet is retransmitted before the
	// transfer is abandoned, so a peer that never answers receives at most
	// 1 + Retries copies of a packet. Default: 5.
	Retries int `json:"retries,omitempty"`

	// MaxBlockSize caps the RFC 2348 blksize a client may negotiate, from
	// 512 to 65464. A client asking for more is given this value. Blocks
	// above 1468 bytes are sent as fragmented IP datagrams on an Ethernet
	// (MTU 1500) network: fast on clean links, slow when fragments are
	// lost; set 1468 for lossy networks. Default: 65464.
	MaxBlockSize int `json:"max_block_size,omitempty"`

	// MaxWindowSize caps the RFC 7440 windowsize a client may negotiate,
	// from 1 to 65535. Default: 64.
	MaxWindowSize int `json:"max_window_size,omitempty"`

	// DisableOptions turns off option negotiation (RFC 2347 and the
	// blksize, timeout, tsize and windowsize options): every transfer is
	// plain RFC 1350 with 512-byte blocks. Default: false.
	DisableOptions bool `json:"disable_options,omitempty"`

	name      string
	addresses []caddy.NetworkAddress
	store     Store
	ctx       caddy.Context
	logger    *zap.Logger
	accessLog *zap.Logger
	policy    negotiationPolicy
	limits    transferLimits

	listeners []*listener
	previous  []requestHandler
	stopping  atomic.Bool
	stopOnce  sync.Once

	// Transfers run under their own context, not the config's, so a reload
	// does not cut them off; it is cancelled when the grace period ends.
	transferCtx    context.Context
	cancelTransfer context.CancelFunc
	transfers      sync.WaitGroup
}

// provision fills in defaults and resolves the listen addresses.
func (s *Server) provision(ctx caddy.Context, name string, logger *zap.Logger) error {
	s.name = name
	s.ctx = ctx
	s.logger = logger.With(zap.String("server", name))
	s.accessLog = logger.Named("access").With(zap.String("server", name))
	if len(s.Listen) == 0 {
		s.Listen = []string{defaultListen}
	}
	if s.Store == "" {
		s.Store = defaultStoreName
	}
	if s.Timeout == 0 {
		s.Timeout = caddy.Duration(defaultTimeout)
	}
	if s.Retries == 0 {
		s.Retries = defaultRetries
	}
	if s.MaxBlockSize == 0 {
		s.MaxBlockSize = defaultMaxBlockSize
	}
	if s.MaxWindowSize == 0 {
		s.MaxWindowSize = defaultMaxWindowSize
	}
	repl := caddy.NewReplacer()
	for _, raw := range s.Listen {
		na, err := caddy.ParseNetworkAddressWithDefaults(repl.ReplaceAll(raw, ""), "udp", 69)
		if err != nil {
			return fmt.Errorf("parsing listen address %q: %w", raw, err)
		}
		switch na.Network {
		case "udp", "udp4", "udp6":
		default:
			return fmt.Errorf("listen address %q: network %q is not UDP", raw, na.Network)
		}
		s.addresses = append(s.addresses, na.Expand()...)
	}
	s.policy = negotiationPolicy{
		disabled:      s.DisableOptions,
		maxBlockSize:  s.MaxBlockSize,
		maxWindowSize: s.MaxWindowSize,
		timeout:       time.Duration(s.Timeout),
	}
	s.limits = transferLimits{retries: s.Retries}
	return nil
}

// validate checks the settings.
func (s *Server) validate() error {
	switch {
	case s.MaxBlockSize < defaultBlockSize || s.MaxBlockSize > maxBlockSize:
		return fmt.Errorf("max_block_size %d is outside 512..%d", s.MaxBlockSize, maxBlockSize)
	case s.MaxWindowSize < minWindowSize || s.MaxWindowSize > maxWindowSize:
		return fmt.Errorf("max_window_size %d is outside 1..%d", s.MaxWindowSize, maxWindowSize)
	case s.Timeout < 0:
		return fmt.Errorf("timeout must not be negative")
	case s.Retries < 0:
		return fmt.Errorf("retries must not be negative")
	}
	return nil
}

// start binds (or takes over) the listening sockets.
func (s *Server) start() error {
	s.transferCtx, s.cancelTransfer = context.WithCancel(context.Background())
	for _, na := range s.addresses {
		l, err := acquireListener(s.ctx, na, s.logger)
		if err != nil {
			s.releaseListeners()
			s.cancelTransfer()
			return fmt.Errorf("server %s: %w", s.name, err)
		}
		s.listeners = append(s.listeners, l)
		s.previous = append(s.previous, l.setHandler(s))
		s.logger.Info("serving TFTP", zap.String("listen", l.addr.String()), zap.String("store", s.Store))
	}
	return nil
}

// releaseListeners hands each socket back to the config that had it before
// and drops this config's reference.
func (s *Server) releaseListeners() {
	for i, l := range s.listeners {
		l.restoreHandler(s, s.previous[i])
		releaseListener(l)
	}
	s.listeners, s.previous = nil, nil
}

// stop stops taking requests; transfers in progress continue for the grace
// period, then are ended with an ERROR packet. It waits for them only when
// the process is exiting, so a reload is never held up.
func (s *Server) stop(grace time.Duration) {
	s.stopOnce.Do(func() {
		s.stopping.Store(true)
		s.releaseListeners()
		if s.cancelTransfer == nil {
			return
		}
		timer := time.AfterFunc(grace, s.cancelTransfer)
		if !caddy.Exiting() {
			return
		}
		done := make(chan struct{})
		go func() { s.transfers.Wait(); close(done) }()
		select {
		case <-done:
			timer.Stop()
		case <-time.After(grace):
			s.cancelTransfer()
			<-done
		}
	})
}

// handleRequest applies the server's policy to a request datagram and, if
// it passes, starts a transfer. It runs on the listener's reader goroutine,
// so everything slow happens in the transfer's own goroutine.
func (s *Server) handleRequest(l *listener, pkt []byte, remote netip.AddrPort, local netip.Addr) {
	if s.stopping.Load() {
		return
	}
	req, err := parseRequest(pkt)
	if err != nil {
		s.refuseMalformed(l, pkt, remote, local, err)
		return
	}
	var netascii bool
	switch req.mode {
	case "octet":
	case "netascii":
		netascii = true
	case "mail":
		s.refuse(l, remote, local, &req, ErrCodeIllegalOp, "mail mode not supported")
		return
	default:
		s.refuse(l, remote, local, &req, ErrCodeIllegalOp, "unknown transfer mode")
		return
	}
	name, err := cleanName(req.filename)
	if err != nil {
		s.refuse(l, remote, local, &req, ErrCodeAccessViolated, "access violation")
		return
	}
	if req.op == opWRQ && s.ReadOnly {
		s.refuse(l, remote, local, &req, ErrCodeAccessViolated, "server is read-only")
		return
	}
	if !l.claim(remote) {
		// The client repeated its request while the transfer it asked for
		// is running; that transfer answers it.
		return
	}
	s.transfers.Add(1)
	go s.runTransfer(l, req, name, netascii, remote, local)
}

// refuseMalformed answers a datagram that is not a valid request.
func (s *Server) refuseMalformed(l *listener, pkt []byte, remote netip.AddrPort, local netip.Addr, err error) {
	if opcode(pkt) == opERROR {
		return // never answer an error with an error
	}
	if c := s.logger.Check(zapcore.DebugLevel, "malformed request"); c != nil {
		c.Write(zap.Stringer("remote", remote), zap.Error(err))
	}
	l.reply(appendError(nil, ErrCodeIllegalOp, "illegal TFTP operation"), remote, local)
}

// refuse answers a request the policy rejects, from the listening socket.
func (s *Server) refuse(l *listener, remote netip.AddrPort, local netip.Addr, req *request, code ErrorCode, msg string) {
	l.reply(appendError(nil, code, msg), remote, local)
	s.accessLog.Info("request refused",
		zap.Stringer("remote", unmapAddrPort(remote)),
		zap.String("file", req.filename),
		zap.String("direction", direction(req.op)),
		zap.String("mode", req.mode),
		zap.Uint16("error_code", uint16(code)),
		zap.String("error", msg),
	)
}

// runTransfer opens the file, negotiates options, and runs the transfer on
// a new socket bound to the address the client contacted.
func (s *Server) runTransfer(l *listener, req request, name string, netascii bool, remote netip.AddrPort, local netip.Addr) {
	defer s.transfers.Done()
	claimed := true
	unclaim := func() {
		if claimed {
			claimed = false
			l.unclaim(remote)
		}
	}
	defer unclaim()
	peer := unmapAddrPort(remote)
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("panic in transfer", zap.Stringer("remote", peer), zap.String("file", name), zap.Any("panic", r), zap.StackSkip("stack", 2))
		}
	}()

	var (
		src    io.ReaderAt
		size   int64
		up     Upload
		params transferParams
	)
	if req.op == opRRQ {
		f, err := s.store.Open(name)
		if err != nil {
			code, msg := errorCodeFor(err)
			s.refuse(l, remote, local, &req, code, msg)
			return
		}
		defer f.Close()
		src, size = f, f.Size()
		if netascii {
			if src, size, err = toNetascii(f); err != nil {
				s.logger.Error("reading file", zap.String("file", name), zap.Error(err))
				s.refuse(l, remote, local, &req, ErrCodeUndefined, "internal server error")
				return
			}
		}
		params = negotiate(&req, s.policy, size)
	} else {
		params = negotiate(&req, s.policy, -1)
		var err error
		up, err = s.store.Create(name, CreateOptions{Overwrite: !s.NoOverwrite, Size: params.tsize})
		if err != nil {
			code, msg := errorCodeFor(err)
			s.refuse(l, remote, local, &req, code, msg)
			return
		}
	}

	conn, err := listenTransfer(local)
	if err != nil {
		if up != nil {
			up.Abort()
		}
		s.logger.Error("opening transfer socket", zap.Error(err))
		s.refuse(l, remote, local, &req, ErrCodeUndefined, "server busy")
		return
	}
	t := newTransfer(s.transferCtx, conn, peer, params, s.limits)
	stopWatch := context.AfterFunc(s.transferCtx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer func() {
		stopWatch()
		t.release()
	}()

	if req.op == opRRQ {
		err = t.serveRead(src, size)
	} else {
		err = t.serveWrite(up, netascii)
		if err != nil {
			up.Abort()
		}
	}
	s.logTransfer(t, &req, name, err)
	unclaim()
	if req.op == opWRQ && err == nil {
		t.dally()
	}
}

// listenTransfer opens a transfer's socket on an ephemeral port of the
// address the client contacted. It deliberately avoids SO_REUSEPORT so two
// transfers can never share a port.
func listenTransfer(local netip.Addr) (*net.UDPConn, error) {
	local = local.Unmap()
	network := "udp6"
	if local.Is4() {
		network = "udp4"
	}
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil && !local.IsUnspecified() {
		// An address that cannot be bound alone (a link-local address
		// without its zone) falls back to the wildcard of its family.
		conn, err = net.ListenUDP(network, nil)
	}
	return conn, err
}

// toNetascii reads a file and translates it for a netascii read.
func toNetascii(f File) (io.ReaderAt, int64, error) {
	raw := make([]byte, f.Size())
	if _, err := f.ReadAt(raw, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, err
	}
	enc := netasciiEncode(raw)
	return bytesReaderAt(enc), int64(len(enc)), nil
}

// bytesReaderAt serves ReadAt from a byte slice.
type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// logTransfer writes the one access log line of a finished transfer.
func (s *Server) logTransfer(t *transfer, req *request, name string, err error) {
	outcome, level := "ok", zapcore.InfoLevel
	var code ErrorCode = 0
	var pe *peerError
	var se *sentError
	switch {
	case err == nil:
	case errors.Is(err, errOptionsRefused):
		outcome, level = "options_declined", zapcore.DebugLevel
	case errors.As(err, &pe):
		outcome, code = "client_error", pe.code
	case errors.Is(err, errTimedOut), errors.Is(err, errTooSlow):
		outcome = "timeout"
	case errors.Is(err, errStopping):
		outcome = "stopped"
	case errors.As(err, &se):
		outcome, code = "error", se.code
		if se.code == ErrCodeUndefined {
			level = zapcore.ErrorLevel
		}
	default:
		outcome, level = "error", zapcore.ErrorLevel
	}
	c := s.accessLog.Check(level, "transfer finished")
	if c == nil {
		return
	}
	fields := []zap.Field{
		zap.Stringer("remote", t.peer),
		zap.String("file", name),
		zap.String("direction", direction(req.op)),
		zap.String("mode", req.mode),
		zap.Int("blksize", t.params.blockSize),
		zap.Int("windowsize", t.params.windowSize),
		zap.String("options", formatOptions(t.params.oack)),
		zap.Int64("bytes", t.bytes.Load()),
		zap.Int64("blocks", t.blocks.Load()),
		zap.Int64("retransmits", t.retransmits.Load()),
		zap.Duration("duration", time.Since(t.start)),
		zap.String("outcome", outcome),
	}
	if err != nil {
		fields = append(fields, zap.Uint16("error_code", uint16(code)), zap.Error(err))
	}
	c.Write(fields...)
}

func direction(op uint16) string {
	if op == opWRQ {
		return "write"
	}
	return "read"
}

func formatOptions(opts []option) string {
	var b strings.Builder
	for i, o := range opts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(o.name)
		b.WriteByte('=')
		b.WriteString(o.value)
	}
	return b.String()
}

// errBadName is returned for names that cannot be served.
var errBadName = errors.New("invalid file name")

// cleanName turns a requested name into a store key: backslashes (sent by
// some PXE clients) are path separators, a leading slash is relative to the
// store's root, empty and "." segments are dropped, and ".." may not climb
// above the root.
func cleanName(raw string) (string, error) {
	if raw == "" || len(raw) > maxNameLen || strings.IndexByte(raw, 0) >= 0 {
		return "", errBadName
	}
	raw = strings.ReplaceAll(raw, `\`, "/")
	segments := make([]string, 0, strings.Count(raw, "/")+1)
	for seg := range strings.SplitSeq(raw, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(segments) == 0 {
				return "", errBadName
			}
			segments = segments[:len(segments)-1]
		default:
			segments = append(segments, seg)
		}
	}
	if len(segments) == 0 {
		return "", errBadName
	}
	return strings.Join(segments, "/"), nil
}

// Interface guards
var _ requestHandler = (*Server)(nil)
