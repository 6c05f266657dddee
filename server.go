package tftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-tftp/tftp/store"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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

	defaultMaxTransfers        = 4096
	defaultMaxTransfersPerHost = 128
	defaultMaxTransferDuration = time.Hour
	defaultMinTransferRate     = 128
	defaultRateWindow          = time.Minute
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
	// each retransmission doubles the wait, up to 16 times Timeout. With
	// the defaults a silent client is sent a packet again after 1, 2, 4, 8
	// and 16 s and the transfer ends 16 s after that, at 47 s. A client may
	// ask for another value with the RFC 2349 timeout option. Default: 1s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Retries is how many times a packet is retransmitted before the
	// transfer is abandoned, so a peer that never answers receives at most
	// 1 + Retries copies of a packet. -1 means none (the Caddyfile's
	// "retries 0" or "retries off"). Default: 5.
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

	// AllowRead lists the client addresses that may read files: IP
	// addresses, CIDR ranges, or "private_ranges" for every private,
	// loopback and link-local range. Others get TFTP error 2.
	// Default: empty, which allows every address.
	AllowRead []string `json:"allow_read,omitempty"`

	// AllowWrite lists the client addresses that may write files, in the
	// same forms as AllowRead; others get TFTP error 2. Uploads can replace
	// boot files, so they are closed to the network unless opened here:
	// name a management network, "private_ranges", or "0.0.0.0/0" and
	// "::/0" for every address. A server that accepts uploads from beyond
	// loopback logs that once when it starts. Default: empty, which allows
	// only loopback addresses (127.0.0.0/8 and ::1).
	AllowWrite []string `json:"allow_write,omitempty"`

	// Root is a path prefix inside the store that this server's names are
	// resolved under, so several servers can keep separate trees in one
	// store: with root "lab1", a request for "pxelinux.0" reads
	// "lab1/pxelinux.0". Default: empty (the store's top).
	Root string `json:"root,omitempty"`

	// Rewrites change requested file names before they are looked up.
	// The first rule whose pattern matches is applied; later rules are not
	// tried. Names are cleaned before and after rewriting.
	Rewrites []*Rewrite `json:"rewrites,omitempty"`

	// SinglePort keeps every transfer on the listening port instead of a
	// new port per transfer, telling transfers apart by the client's
	// address and port. Use it behind NAT, in containers and through
	// strict firewalls that only pass the well-known port. Default: false.
	SinglePort bool `json:"single_port,omitempty"`

	// MaxTransfers is how many transfers may run at once on each listen
	// address. Requests over the limit are left unanswered, so clients
	// retry them after their own timeout instead of failing. -1 means no
	// limit. Default: 4096.
	MaxTransfers int `json:"max_transfers,omitempty"`

	// MaxTransfersPerHost is how many transfers one client IP address may
	// run at once on each listen address. A request over it evicts the
	// host's longest-stalled transfer (the one that has waited on a
	// retransmission the longest; never one making progress), so a device
	// that crashed and rebooted in a loop is not locked out by its own
	// abandoned transfers. When none of the host's transfers is stalled,
	// the request is left unanswered like those over MaxTransfers. -1
	// means no limit. Default: 128.
	MaxTransfersPerHost int `json:"max_transfers_per_host,omitempty"`

	// MaxTransferDuration ends any transfer that runs longer, with TFTP
	// error 0. -1 means no limit. Default: 1h.
	MaxTransferDuration caddy.Duration `json:"max_transfer_duration,omitempty"`

	// MinTransferRate ends a transfer that moves fewer bytes per second
	// than this, averaged over each MinTransferRateWindow, with TFTP error
	// 0, so a peer that answers just often enough to avoid timeouts cannot
	// hold a slot for long. -1 turns the check off. Default: 128.
	MinTransferRate int64 `json:"min_transfer_rate,omitempty"`

	// MinTransferRateWindow is the period MinTransferRate is averaged
	// over; the first check happens one window after the transfer starts.
	// Default: 1m.
	MinTransferRateWindow caddy.Duration `json:"min_transfer_rate_window,omitempty"`

	name      string
	addresses []caddy.NetworkAddress
	store     store.Store
	ctx       caddy.Context
	logger    *zap.Logger
	accessLog *zap.Logger
	policy    negotiationPolicy
	limits    transferLimits
	claims    claimLimits
	dally     time.Duration // see dallyDuration
	metrics   *serverMetrics
	eventsOn  bool
	readACL   []netip.Prefix
	writeACL  []netip.Prefix

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
	if s.MaxTransfers == 0 {
		s.MaxTransfers = defaultMaxTransfers
	}
	if s.MaxTransfersPerHost == 0 {
		s.MaxTransfersPerHost = defaultMaxTransfersPerHost
	}
	if s.MaxTransferDuration == 0 {
		s.MaxTransferDuration = caddy.Duration(defaultMaxTransferDuration)
	}
	if s.MinTransferRate == 0 {
		s.MinTransferRate = defaultMinTransferRate
	}
	if s.MinTransferRateWindow == 0 {
		s.MinTransferRateWindow = caddy.Duration(defaultRateWindow)
	}
	var err error
	if s.readACL, err = parseACL(s.AllowRead); err != nil {
		return fmt.Errorf("allow_read: %w", err)
	}
	if s.writeACL, err = parseACL(s.AllowWrite); err != nil {
		return fmt.Errorf("allow_write: %w", err)
	}
	if len(s.writeACL) == 0 {
		s.writeACL = loopbackPrefixes
	}
	if s.Root != "" {
		if s.Root, err = cleanName(s.Root); err != nil {
			return fmt.Errorf("root %q: %w", s.Root, err)
		}
	}
	for i, rw := range s.Rewrites {
		if err := rw.provision(); err != nil {
			return fmt.Errorf("rewrite %d: %w", i, err)
		}
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
	// Off (-1) becomes the zero that means "none" or "no limit" inside.
	s.limits = transferLimits{
		retries:     max(s.Retries, 0),
		maxDuration: time.Duration(max(s.MaxTransferDuration, 0)),
		minRate:     max(s.MinTransferRate, 0),
		rateWindow:  time.Duration(s.MinTransferRateWindow),
	}
	s.claims = claimLimits{total: max(s.MaxTransfers, 0), perHost: max(s.MaxTransfersPerHost, 0)}
	s.dally = dallyDuration
	s.metrics = newServerMetrics(name)
	// Events are looked up per transfer only when the config has an events
	// app, which keeps the common case free of that work.
	_, evErr := ctx.AppIfConfigured("events")
	s.eventsOn = evErr == nil
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
		return fmt.Errorf("timeout %s: must be above zero", time.Duration(s.Timeout))
	case s.Retries < -1:
		return fmt.Errorf("retries %d: must be a count, or -1 for none", s.Retries)
	case s.MaxTransfers < -1:
		return fmt.Errorf("max_transfers %d: must be a count, or -1 for no limit", s.MaxTransfers)
	case s.MaxTransfersPerHost < -1:
		return fmt.Errorf("max_transfers_per_host %d: must be a count, or -1 for no limit", s.MaxTransfersPerHost)
	case s.MaxTransferDuration < -1:
		return fmt.Errorf("max_transfer_duration %s: must be above zero, or -1 for no limit", time.Duration(s.MaxTransferDuration))
	case s.MinTransferRate < -1:
		return fmt.Errorf("min_transfer_rate %d: must be bytes per second, or -1 for off", s.MinTransferRate)
	case s.MinTransferRateWindow < 0:
		return fmt.Errorf("min_transfer_rate_window %s: must be above zero", time.Duration(s.MinTransferRateWindow))
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
	if !s.ReadOnly && !onlyLoopback(s.writeACL) {
		s.logger.Warn("uploads accepted from beyond loopback: clients in allow_write can replace any file of the store",
			zap.Strings("allow_write", s.AllowWrite), zap.String("store", s.Store))
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
		// Hand the sockets back before refusing requests: once
		// releaseListeners returns no request is on its way to this
		// server, so none is dropped by the stopping check.
		s.releaseListeners()
		s.stopping.Store(true)
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
	if !s.allowed(req.op, remote.Addr().Unmap()) {
		s.refuse(l, remote, local, &req, ErrCodeAccessViolated, "access violation")
		return
	}
	if req.op == opWRQ && s.ReadOnly {
		s.refuse(l, remote, local, &req, ErrCodeAccessViolated, "server is read-only")
		return
	}
	name, err := s.resolveName(req.filename, remote)
	if err != nil {
		s.refuse(l, remote, local, &req, ErrCodeAccessViolated, "access violation")
		return
	}
	at := &activeTransfer{
		server:    s.name,
		file:      name,
		direction: direction(req.op),
		mode:      req.mode,
		remote:    remote,
		start:     time.Now(),
	}
	if s.SinglePort {
		at.inbox = newMuxConn(l, remote, local)
	}
	result, victim := l.claim(at, s.claims)
	switch result {
	case claimed:
		if victim != nil {
			if c := s.logger.Check(zapcore.InfoLevel, "host at max_transfers_per_host: its longest-stalled transfer evicted for a new request"); c != nil {
				c.Write(zap.Stringer("remote", unmapAddrPort(remote)), zap.String("file", name),
					zap.Stringer("evicted_remote", unmapAddrPort(victim.remote)), zap.String("evicted_file", victim.file))
			}
		}
	case claimDuplicate:
		// The client repeated its request while the transfer it asked for
		// is running; that transfer answers it.
		metricRequestsDropped.WithLabelValues(s.name, "duplicate").Inc()
		return
	case claimOverTotal:
		s.dropOverLimit("limit_total", "request over max_transfers left unanswered", remote, name)
		return
	case claimOverHost:
		s.dropOverLimit("limit_host", "request over max_transfers_per_host left unanswered: no transfer of the host is stalled", remote, name)
		return
	}
	s.transfers.Add(1)
	go s.runTransfer(l, at, req, netascii, local)
}

// dropOverLimit counts and logs a request left unanswered, by design, for
// being over a limit: the client retries after its own timeout. The metric
// reason and the log line name the limit.
func (s *Server) dropOverLimit(reason, msg string, remote netip.AddrPort, name string) {
	metricRequestsDropped.WithLabelValues(s.name, reason).Inc()
	if c := s.logger.Check(zapcore.DebugLevel, msg); c != nil {
		c.Write(zap.Stringer("remote", unmapAddrPort(remote)), zap.String("file", name), zap.String("limit", reason))
	}
}

// allowed applies the address lists to a read or write.
func (s *Server) allowed(op uint16, addr netip.Addr) bool {
	acl := s.readACL
	if op == opWRQ {
		acl = s.writeACL
	}
	if len(acl) == 0 {
		return true
	}
	for _, p := range acl {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// resolveName cleans the requested name, applies the rewrite rules and the
// root prefix, and returns the store key.
func (s *Server) resolveName(raw string, remote netip.AddrPort) (string, error) {
	name, err := cleanName(raw)
	if err != nil {
		return "", err
	}
	if len(s.Rewrites) > 0 {
		repl := caddy.NewReplacer()
		repl.Set("remote_host", remote.Addr().Unmap().String())
		repl.Set("remote_port", strconv.Itoa(int(remote.Port())))
		repl.Set("tftp.server", s.name)
		for _, rw := range s.Rewrites {
			if out, ok := rw.apply(name, repl); ok {
				if name, err = cleanName(out); err != nil {
					return "", err
				}
				break
			}
		}
	}
	if s.Root != "" {
		name = s.Root + "/" + name
	}
	return name, nil
}

// refuseMalformed answers a datagram that is not a valid request.
func (s *Server) refuseMalformed(l *listener, pkt []byte, remote netip.AddrPort, local netip.Addr, err error) {
	code, msg := ErrCodeIllegalOp, "illegal TFTP operation"
	switch opcode(pkt) {
	case opERROR:
		return // never answer an error with an error
	case opDATA, opACK, opOACK:
		// A packet of a transfer that does not exist (or has ended).
		code, msg = ErrCodeUnknownTID, "unknown transfer ID"
	case opRRQ, opWRQ:
		if errors.Is(err, errNameTooLong) || errors.Is(err, errRequestLong) {
			code, msg = refuseLongName(pkt[2:])
		}
	}
	if c := s.logger.Check(zapcore.DebugLevel, "malformed request"); c != nil {
		c.Write(zap.Stringer("remote", unmapAddrPort(remote)), zap.Error(err))
	}
	countErrorSent(code)
	l.reply(appendError(nil, code, msg), remote, local)
}

// refuseLongName answers a request whose name is over the length limit like
// any other name that cannot be served: ERROR 2 when the part received
// climbs above the root, otherwise ERROR 0 saying the name is too long. A
// long request whose name is short is malformed: ERROR 4.
func refuseLongName(body []byte) (ErrorCode, string) {
	name := body
	if i := bytes.IndexByte(body, 0); i >= 0 {
		name = body[:i]
	}
	if len(name) <= maxNameLen {
		return ErrCodeIllegalOp, "illegal TFTP operation"
	}
	if climbsAboveRoot(name) {
		return ErrCodeAccessViolated, "access violation"
	}
	return ErrCodeUndefined, "file name too long"
}

// climbsAboveRoot reports whether a name's ".." segments ever climb above
// the root, the way cleanName would refuse it.
func climbsAboveRoot(name []byte) bool {
	depth := 0
	for len(name) > 0 {
		i := bytes.IndexAny(name, `/\`)
		seg := name
		if i >= 0 {
			seg, name = name[:i], name[i+1:]
		} else {
			name = nil
		}
		switch string(seg) {
		case "", ".":
		case "..":
			if depth == 0 {
				return true
			}
			depth--
		default:
			depth++
		}
	}
	return false
}

// refuse answers a request the policy rejects, from the listening socket.
func (s *Server) refuse(l *listener, remote netip.AddrPort, local netip.Addr, req *request, code ErrorCode, msg string) {
	countErrorSent(code)
	l.reply(appendError(nil, code, msg), remote, local)
	s.accessLog.Info("request refused",
		zap.Stringer("remote", unmapAddrPort(remote)),
		zap.String("requested", req.filename),
		zap.String("direction", direction(req.op)),
		zap.String("mode", req.mode),
		zap.Uint16("error_code", uint16(code)),
		zap.String("error", msg),
	)
}

// runTransfer opens the file, negotiates options, and runs the transfer on
// a new socket bound to the address the client contacted (or, in
// single-port mode, on the listening socket).
func (s *Server) runTransfer(l *listener, at *activeTransfer, req request, netascii bool, local netip.Addr) {
	defer s.transfers.Done()
	registered := true
	unregister := func() {
		if registered {
			registered = false
			l.unclaim(at)
			if at.inbox != nil {
				_ = at.inbox.Close()
			}
		}
	}
	defer unregister()
	remote, name := at.remote, at.file
	peer := unmapAddrPort(remote)
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("panic in transfer", zap.Stringer("remote", peer), zap.String("file", name), zap.Any("panic", r), zap.StackSkip("stack", 2))
		}
	}()

	var (
		src    io.ReaderAt
		size   int64
		up     store.Upload
		params transferParams
		err    error
	)
	if req.op == opRRQ {
		var f store.File
		f, src, size, err = s.openForRead(name, netascii, s.requestInfo(&req, peer))
		if f != nil {
			defer f.Close()
			if g, ok := f.(store.GrowingFile); ok {
				// A read waiting for bytes that have not arrived yet is
				// woken when the server's transfers are cancelled.
				defer context.AfterFunc(s.transferCtx, func() { _ = g.Close() })()
			}
		}
		params = negotiate(&req, s.policy, size)
	} else {
		params = negotiate(&req, s.policy, -1)
		up, err = s.store.Create(name, store.CreateOptions{Overwrite: !s.NoOverwrite, Size: params.tsize, Request: s.requestInfo(&req, peer)})
	}
	if err != nil {
		// Release the client's address first, so a request it sends as
		// soon as it reads the error is not taken for a duplicate.
		unregister()
		code, msg := errorCodeFor(err)
		if code == ErrCodeUndefined {
			s.logger.Error("opening file", zap.String("file", name), zap.Error(err))
		}
		s.refuse(l, remote, local, &req, code, msg)
		return
	}

	var conn packetConn = at.inbox
	if at.inbox == nil {
		udp, err := listenTransfer(local, peer, params)
		if err != nil {
			if up != nil {
				up.Abort()
			}
			unregister()
			s.logger.Error("opening transfer socket", zap.Error(err))
			s.refuse(l, remote, local, &req, ErrCodeUndefined, "server busy")
			return
		}
		conn = udp
	}
	t := newTransfer(s.transferCtx, conn, peer, params, s.limits)
	t.finishing = &at.finishing
	t.size = params.tsize
	if req.op == opRRQ {
		t.size = size
		t.batch = newSendBatch(conn, peer, params)
	}
	at.xfer.Store(t)
	stopWatch := context.AfterFunc(s.transferCtx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer func() {
		stopWatch()
		t.release()
	}()
	inProgress := s.metrics.inProgress[dirIndex(req.op)]
	inProgress.Inc()

	if req.op == opRRQ {
		err = t.serveRead(src, size)
	} else {
		err = t.serveWrite(up, netascii)
		if err != nil {
			up.Abort()
		}
	}
	inProgress.Dec()
	at.finished.Store(true)
	if at.inbox == nil {
		unregister()
	}
	outcome := s.finishTransfer(t, &req, name, err)
	if s.eventsOn {
		emitTransferEvent(s.name, t, &req, name, outcome, err)
	}
	if req.op == opWRQ && err == nil {
		// The upload is stored; keep answering a client whose final ACK
		// is lost, without holding the buffers or the transfer's slot.
		if udp, ok := conn.(*net.UDPConn); ok {
			startDally(s.transferCtx, udp, peer, t.lastBlock, s.dally)
			t.conn = nil
		} else {
			unregister()
			l.addDally(remote, local, t.lastBlock, s.dally)
		}
	}
}

// requestInfo describes a request to the stores that want to know who asks.
func (s *Server) requestInfo(req *request, peer netip.AddrPort) store.RequestInfo {
	_, tsize := req.option("tsize")
	return store.RequestInfo{Client: peer, Server: s.name, NeedSize: tsize && !s.DisableOptions}
}

// openForRead opens a file for a read request, translated if the mode is
// netascii. The caller closes f when it is not nil. The size is -1 when the
// store streams a file whose length it does not know yet.
func (s *Server) openForRead(name string, netascii bool, info store.RequestInfo) (f store.File, src io.ReaderAt, size int64, err error) {
	if ro, ok := s.store.(store.RequestOpener); ok {
		f, err = ro.OpenFor(name, info)
	} else {
		f, err = s.store.Open(name)
	}
	if err != nil {
		return nil, nil, 0, err
	}
	if !netascii {
		return f, f, f.Size(), nil
	}
	src, size, err = toNetascii(f)
	if err != nil {
		return f, nil, 0, fmt.Errorf("translating to netascii: %w", err)
	}
	return f, src, size, nil
}

// listenTransfer opens a transfer's socket on an ephemeral port of the
// address the client contacted. It deliberately avoids SO_REUSEPORT so two
// transfers can never share a port.
func listenTransfer(local netip.Addr, peer netip.AddrPort, params transferParams) (*net.UDPConn, error) {
	local = local.Unmap()
	if local.IsUnspecified() && peer.Addr().Is4() {
		// Where the destination address is not known (no packet info from
		// the kernel), the socket must at least be of the client's family.
		local = netip.IPv4Unspecified()
	}
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
	if err == nil {
		// A window of large blocks must fit the receive buffer, or the
		// kernel drops the end of every window of an upload.
		if want := params.windowSize * (params.blockSize + 64); want > 128<<10 {
			_ = conn.SetReadBuffer(min(want, listenReadBuffer))
		}
	}
	return conn, err
}

// toNetascii translates a file for a netascii read. In-memory snapshots
// keep their translation, so concurrent readers of one version share it;
// other files are translated as they are read, never copied whole. A file
// of unknown size is read to its end first, to learn the translated size.
func toNetascii(f store.File) (io.ReaderAt, int64, error) {
	if s, ok := f.(*store.Snapshot); ok {
		a := s.Derived(netasciiEncode)
		return a, a.Size(), nil
	}
	r, err := newNetasciiReader(f, f.Size())
	if err != nil {
		return nil, 0, err
	}
	return r, r.Size(), nil
}

// finishTransfer writes the one access log line of a finished transfer and
// records its metrics; it returns the outcome.
func (s *Server) finishTransfer(t *transfer, req *request, name string, err error) string {
	outcome, level := "ok", zapcore.InfoLevel
	var code ErrorCode = 0
	var pe *peerError
	var se *sentError
	if errors.As(err, &se) {
		code = se.code
	}
	switch {
	case err == nil:
	case errors.Is(err, errOptionsRefused):
		outcome, level = "options_declined", zapcore.DebugLevel
	case errors.As(err, &pe):
		outcome, code = "client_error", pe.code
	case errors.Is(err, errTimedOut), errors.Is(err, errTooSlow), errors.Is(err, errTooLong):
		outcome = "timeout"
	case errors.Is(err, errEvicted):
		outcome = "evicted"
	case errors.Is(err, errSizeMismatch):
		outcome = "error" // the client's fault: not logged as a server error
	case errors.Is(err, errStopping):
		outcome = "stopped"
	case se != nil:
		outcome = "error"
		if se.code == ErrCodeUndefined {
			level = zapcore.ErrorLevel
		}
	default:
		outcome, level = "error", zapcore.ErrorLevel
	}
	dir := dirIndex(req.op)
	elapsed := time.Since(t.start)
	s.metrics.finished(dir, outcome).Inc()
	s.metrics.duration[dir].Observe(elapsed.Seconds())
	if n := t.retransmits.Load(); n > 0 {
		s.metrics.retransmits.Add(float64(n))
	}
	s.metrics.bytes[dir].Add(float64(t.bytes.Load()))
	s.metrics.countOptions(t.params.oack)
	if se != nil {
		countErrorSent(se.code)
	}
	c := s.accessLog.Check(level, "transfer finished")
	if c == nil {
		return outcome
	}
	fields := []zap.Field{
		zap.Stringer("remote", t.peer),
		zap.String("requested", req.filename),
		zap.String("file", name),
		zap.String("direction", direction(req.op)),
		zap.String("mode", req.mode),
		zap.Int("blksize", t.params.blockSize),
		zap.Int("windowsize", t.params.windowSize),
		zap.String("options", formatOptions(t.params.oack)),
		zap.Int64("bytes", t.bytes.Load()),
		zap.Int64("blocks", t.blocks.Load()),
		zap.Int64("retransmits", t.retransmits.Load()),
		zap.Duration("duration", elapsed),
		zap.String("outcome", outcome),
	}
	if err != nil {
		fields = append(fields, zap.Uint16("error_code", uint16(code)), zap.Error(err))
	}
	c.Write(fields...)
	return outcome
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

// Rewrite changes a requested file name before it is looked up, for
// example to serve a per-client configuration.
type Rewrite struct {
	// Match is a regular expression (RE2 syntax) tried against the whole
	// cleaned file name, without a leading slash.
	Match string `json:"match"`

	// Replace is the new name. $1 or ${name} insert match groups, and Caddy
	// placeholders are expanded: {remote_host} (the client's IP address),
	// {remote_port}, {tftp.server} (the server's name) and the global ones
	// such as {env.VAR}.
	Replace string `json:"replace"`

	re *regexp.Regexp
}

func (rw *Rewrite) provision() error {
	if rw == nil {
		return fmt.Errorf("empty rule")
	}
	re, err := regexp.Compile(rw.Match)
	if err != nil {
		return fmt.Errorf("match %q: %w", rw.Match, err)
	}
	rw.re = re
	return nil
}

// apply returns the rewritten name if the rule matches.
func (rw *Rewrite) apply(name string, repl *caddy.Replacer) (string, bool) {
	m := rw.re.FindStringSubmatchIndex(name)
	if m == nil {
		return "", false
	}
	// Placeholder values come from the config and the client's address,
	// never from the requested name, so expanding them first is safe.
	tmpl := repl.ReplaceKnown(rw.Replace, "")
	return string(rw.re.ExpandString(nil, tmpl, name, m)), true
}

// loopbackPrefixes are the addresses that may upload when allow_write is
// not set.
var loopbackPrefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// onlyLoopback reports whether every prefix lies within a loopback range.
func onlyLoopback(acl []netip.Prefix) bool {
	for _, p := range acl {
		inside := false
		for _, lo := range loopbackPrefixes {
			if p.Bits() >= lo.Bits() && lo.Contains(p.Addr()) {
				inside = true
			}
		}
		if !inside {
			return false
		}
	}
	return true
}

// linkLocalRanges are added to Caddy's private ranges: PXE clients on a
// network without DHCP may use them.
var linkLocalRanges = []string{"169.254.0.0/16", "fe80::/10"}

// parseACL turns address expressions into prefixes. IPv4-mapped IPv6
// prefixes are turned into IPv4 ones, since client addresses are compared
// unmapped.
func parseACL(exprs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range exprs {
		list := []string{e}
		if e == "private_ranges" {
			list = append(caddyhttp.PrivateRangesCIDR(), linkLocalRanges...)
		}
		for _, expr := range list {
			p, err := caddyhttp.CIDRExpressionToPrefix(expr)
			if err != nil {
				return nil, err
			}
			if p.Addr().Is4In6() {
				if p.Bits() < 96 {
					return nil, fmt.Errorf("%s: an IPv4-mapped range must be /96 or longer", expr)
				}
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
		}
	}
	return out, nil
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
