package tftp

import (
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The end of a transfer: its one access log line and its metrics.

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
