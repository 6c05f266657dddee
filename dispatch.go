package tftp

import (
	"errors"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Dispatch: the server's decision on one request datagram, made on the
// listener's reader goroutine before any socket is opened.

// handleRequest applies the server's policy to a request datagram and, if
// it passes, starts a transfer. It runs on the listener's reader goroutine,
// so everything slow happens in the transfer's own goroutine.
func (s *Server) handleRequest(in inbound) {
	if s.stopping.Load() {
		return
	}
	req, err := parseRequest(in.pkt)
	if err != nil {
		s.refuseMalformed(&in, err)
		return
	}
	var netascii bool
	switch req.mode {
	case "octet":
	case "netascii":
		netascii = true
	case "mail":
		s.refuse(&in, &req, ErrCodeIllegalOp, "mail mode not supported")
		return
	default:
		s.refuse(&in, &req, ErrCodeIllegalOp, "unknown transfer mode")
		return
	}
	if !s.rules.allowed(req.op, in.remote.Addr().Unmap()) {
		s.refuse(&in, &req, ErrCodeAccessViolated, "access violation")
		return
	}
	if req.op == opWRQ && s.ReadOnly {
		s.refuse(&in, &req, ErrCodeAccessViolated, "server is read-only")
		return
	}
	name, err := s.rules.resolveName(req.filename, in.remote)
	if err != nil {
		s.refuse(&in, &req, ErrCodeAccessViolated, "access violation")
		return
	}
	at := &activeTransfer{
		server:    s.name,
		file:      name,
		direction: direction(req.op),
		mode:      req.mode,
		remote:    in.remote,
		start:     time.Now(),
	}
	if s.SinglePort {
		at.inbox = in.port.inbox(in.remote, in.local)
	}
	result, victim := in.port.claim(at, s.claims)
	switch result {
	case claimed:
		if victim != nil {
			if c := s.logger.Check(zapcore.InfoLevel, "host at max_transfers_per_host: its longest-stalled transfer evicted for a new request"); c != nil {
				c.Write(zap.Stringer("remote", unmapAddrPort(in.remote)), zap.String("file", name),
					zap.Stringer("evicted_remote", unmapAddrPort(victim.remote)), zap.String("evicted_file", victim.file))
			}
		}
	case claimDuplicate:
		// The client repeated its request while the transfer it asked for
		// is running; that transfer answers it.
		metricRequestsDropped.WithLabelValues(s.name, "duplicate").Inc()
		return
	case claimOverTotal:
		s.dropOverLimit("limit_total", "request over max_transfers left unanswered", in.remote, name)
		return
	case claimOverHost:
		s.dropOverLimit("limit_host", "request over max_transfers_per_host left unanswered: no transfer of the host is stalled", in.remote, name)
		return
	}
	s.transfers.Add(1)
	// The datagram's buffer is the listener's to reuse: the request has
	// been parsed, and the transfer keeps only who asked and where.
	in.pkt = nil
	startTransfer(transferJob{s: s, in: in, at: at, req: req, netascii: netascii})
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

// refuseMalformed answers a datagram that is not a valid request.
func (s *Server) refuseMalformed(in *inbound, err error) {
	code, msg := ErrCodeIllegalOp, "illegal TFTP operation"
	switch opcode(in.pkt) {
	case opERROR:
		return // never answer an error with an error
	case opDATA, opACK, opOACK:
		// A packet of a transfer that does not exist (or has ended).
		code, msg = ErrCodeUnknownTID, "unknown transfer ID"
	case opRRQ, opWRQ:
		if errors.Is(err, errNameTooLong) || errors.Is(err, errRequestLong) {
			code, msg = refuseLongName(in.pkt[2:])
		}
	}
	if c := s.logger.Check(zapcore.DebugLevel, "malformed request"); c != nil {
		c.Write(zap.Stringer("remote", unmapAddrPort(in.remote)), zap.Error(err))
	}
	countErrorSent(code)
	in.reply(appendError(nil, code, msg))
}
