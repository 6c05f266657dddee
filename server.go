package tftp

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-tftp/tftp/store"
	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
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
	rules     requestRules

	listeners []*listener
	previous  []requestHandler
	stopping  atomic.Bool
	stopOnce  sync.Once

	// Transfers run under their own context, not the config's, so a reload
	// does not cut them off; it is cancelled when the grace period ends.
	transferCtx    context.Context
	cancelTransfer context.CancelFunc
	transfers      sync.WaitGroup

	// running holds the transfers that may be waiting on a read, for
	// endTransfers to wake.
	runningMu sync.Mutex
	running   map[*transfer]struct{}
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
	s.rules = requestRules{server: name, rewrites: s.Rewrites}
	if s.rules.readACL, err = parseACL(s.AllowRead); err != nil {
		return fmt.Errorf("allow_read: %w", err)
	}
	if s.rules.writeACL, err = parseACL(s.AllowWrite); err != nil {
		return fmt.Errorf("allow_write: %w", err)
	}
	if len(s.rules.writeACL) == 0 {
		s.rules.writeACL = loopbackPrefixes
	}
	if s.Root != "" {
		if s.Root, err = cleanName(s.Root); err != nil {
			return fmt.Errorf("root %q: %w", s.Root, err)
		}
	}
	s.rules.root = s.Root
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
	if !s.ReadOnly && !onlyLoopback(s.rules.writeACL) {
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
		timer := time.AfterFunc(grace, s.endTransfers)
		if !caddy.Exiting() {
			return
		}
		done := make(chan struct{})
		go func() { s.transfers.Wait(); close(done) }()
		select {
		case <-done:
			timer.Stop()
		case <-time.After(grace):
			s.endTransfers()
			<-done
		}
	})
}

// endTransfers ends the transfers still running when the grace period is
// over: the context tells them to stop, and a read deadline in the past
// wakes those waiting on a packet.
func (s *Server) endTransfers() {
	s.cancelTransfer()
	s.runningMu.Lock()
	defer s.runningMu.Unlock()
	for t := range s.running {
		_ = t.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// track makes endTransfers wake t until untrack.
func (s *Server) track(t *transfer) {
	s.runningMu.Lock()
	if s.running == nil {
		s.running = make(map[*transfer]struct{})
	}
	s.running[t] = struct{}{}
	s.runningMu.Unlock()
}

func (s *Server) untrack(t *transfer) {
	s.runningMu.Lock()
	delete(s.running, t)
	s.runningMu.Unlock()
}

// Interface guards
var _ requestHandler = (*Server)(nil)

// defaultStoreName is the store a server uses when it names none; it is
// created as a memory store with default limits when not configured.
const defaultStoreName = "default"
