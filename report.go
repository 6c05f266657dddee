package tftp

import (
	"errors"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The end of a transfer: its one access log line and its metrics.

// finishTransfer writes the one access log line of a finished transfer and
// records its metrics; it returns the outcome.
func (s *Server) finishTransfer(t *transfer, req *request, name string, err error) string {
	outcome, level, code, sent := classifyEnd(err)
	dir := dirIndex(req.op)
	elapsed := time.Since(t.start)
	s.metrics.finished(dir, outcome).Inc()
	s.metrics.duration[dir].Observe(elapsed.Seconds())
	if n := t.retransmits.Load(); n > 0 {
		s.metrics.retransmits.Add(float64(n))
	}
	s.metrics.bytes[dir].Add(float64(t.bytes.Load()))
	s.metrics.countOptions(t.params.oack)
	if sent {
		countErrorSent(code)
	}
	c := s.accessLog.Check(level, "transfer finished")
	if c == nil {
		return outcome
	}
	// The fields slice is reused: it is only read while the line is
	// written.
	fp := logFields.Get().(*[]zap.Field)
	fields := append((*fp)[:0],
		zap.String("remote", t.peer.String()),
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
	)
	if err != nil {
		fields = append(fields, zap.Uint16("error_code", uint16(code)), zap.Error(err))
	}
	c.Write(fields...)
	clear(fields)
	*fp = fields[:0]
	logFields.Put(fp)
	return outcome
}

// logFields holds the field slices of access log lines.
var logFields = sync.Pool{New: func() any { s := make([]zap.Field, 0, 16); return &s }}

// classifyEnd names how a transfer ended, the level to log it at, and the
// TFTP error code involved: the one sent to the client (sent is true) or
// received from it.
func classifyEnd(err error) (outcome string, level zapcore.Level, code ErrorCode, sent bool) {
	if err == nil {
		return "ok", zapcore.InfoLevel, 0, false
	}
	outcome, level = "error", zapcore.ErrorLevel
	var se *sentError
	if errors.As(err, &se) {
		code, sent = se.code, true
	}
	var pe *peerError
	switch {
	case errors.Is(err, errOptionsRefused):
		outcome, level = "options_declined", zapcore.DebugLevel
	case errors.As(err, &pe):
		outcome, level, code = "client_error", zapcore.InfoLevel, pe.code
	case errors.Is(err, errTimedOut), errors.Is(err, errTooSlow), errors.Is(err, errTooLong):
		outcome, level = "timeout", zapcore.InfoLevel
	case errors.Is(err, errEvicted):
		outcome, level = "evicted", zapcore.InfoLevel
	case errors.Is(err, errSizeMismatch):
		level = zapcore.InfoLevel // the client's fault: not logged as a server error
	case errors.Is(err, errStopping):
		outcome, level = "stopped", zapcore.InfoLevel
	case se != nil && se.code != ErrCodeUndefined:
		level = zapcore.InfoLevel
	}
	return outcome, level, code, sent
}

func formatOptions(opts []option) string {
	if len(opts) == 0 {
		return ""
	}
	n := len(opts)
	for _, o := range opts {
		n += len(o.name) + len(o.value)
	}
	var b strings.Builder
	b.Grow(n)
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

// refuse answers a request the policy rejects, from the listening socket.
func (s *Server) refuse(in *inbound, req *request, code ErrorCode, msg string) {
	countErrorSent(code)
	in.reply(appendError(nil, code, msg))
	s.accessLog.Info("request refused",
		zap.Stringer("remote", unmapAddrPort(in.remote)),
		zap.String("requested", req.filename),
		zap.String("direction", direction(req.op)),
		zap.String("mode", req.mode),
		zap.Uint16("error_code", uint16(code)),
		zap.String("error", msg),
	)
}
