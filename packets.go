package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// Opcodes from RFC 1350 and RFC 2347.
const (
	opRRQ   uint16 = 1
	opWRQ   uint16 = 2
	opDATA  uint16 = 3
	opACK   uint16 = 4
	opERROR uint16 = 5
	opOACK  uint16 = 6
)

// ErrorCode is a TFTP error code (RFC 1350 and RFC 2347).
type ErrorCode uint16

// Error codes sent in ERROR packets.
const (
	ErrCodeUndefined      ErrorCode = 0
	ErrCodeFileNotFound   ErrorCode = 1
	ErrCodeAccessViolated ErrorCode = 2
	ErrCodeDiskFull       ErrorCode = 3
	ErrCodeIllegalOp      ErrorCode = 4
	ErrCodeUnknownTID     ErrorCode = 5
	ErrCodeFileExists     ErrorCode = 6
	ErrCodeNoSuchUser     ErrorCode = 7
	ErrCodeBadOptions     ErrorCode = 8
)

const (
	// headerLen is the size of the opcode and block number in DATA and ACK.
	headerLen = 4
	// defaultBlockSize is the RFC 1350 block size.
	defaultBlockSize = 512
	// minBlockSize and maxBlockSize bound the RFC 2348 blksize option.
	minBlockSize = 8
	maxBlockSize = 65464
	// maxRequestLen bounds a request datagram: a request longer than this is
	// malformed. 512 bytes is what RFC 2347 allows; we accept more so long
	// option lists from real firmware still fit.
	maxRequestLen = 2048
	// maxNameLen is the longest file name accepted in a request.
	maxNameLen = 1024
)

var (
	errShortPacket   = errors.New("packet too short")
	errNotTerminated = errors.New("field not NUL-terminated")
	errEmptyName     = errors.New("empty file name")
	errNameTooLong   = errors.New("file name too long")
	errRequestLong   = errors.New("request too long")
	errBadOpcode     = errors.New("not a request")
)

// option is one RFC 2347 option as it appears on the wire; the name is
// lower-cased on parse so lookups are case-insensitive.
type option struct {
	name  string
	value string
}

// request is a parsed RRQ or WRQ.
type request struct {
	op       uint16
	filename string
	mode     string // lower-cased
	options  []option
}

// option returns the value of the named option and whether it was present.
// The first occurrence wins when a client repeats an option.
func (r *request) option(name string) (string, bool) {
	for _, o := range r.options {
		if o.name == name {
			return o.value, true
		}
	}
	return "", false
}

// parseRequest decodes an RRQ or WRQ datagram.
func parseRequest(b []byte) (request, error) {
	var req request
	if len(b) < 2 {
		return req, errShortPacket
	}
	if len(b) > maxRequestLen {
		return req, errRequestLong
	}
	req.op = binary.BigEndian.Uint16(b)
	if req.op != opRRQ && req.op != opWRQ {
		return req, errBadOpcode
	}
	rest := b[2:]
	name, rest, err := cutField(rest)
	if err != nil {
		return req, err
	}
	if len(name) == 0 {
		return req, errEmptyName
	}
	if len(name) > maxNameLen {
		return req, errNameTooLong
	}
	mode, rest, err := cutField(rest)
	if err != nil {
		return req, err
	}
	req.filename = string(name)
	req.mode = asciiLower(mode)
	for len(rest) > 0 {
		var k, v []byte
		if k, rest, err = cutField(rest); err != nil {
			return req, err
		}
		if v, rest, err = cutField(rest); err != nil {
			// Some clients pad the request with a trailing NUL or send a
			// name without a value; RFC 2347 says to ignore what we don't
			// understand, so drop the dangling name rather than fail.
			break
		}
		if len(k) == 0 {
			continue
		}
		req.options = append(req.options, option{name: asciiLower(k), value: string(v)})
	}
	return req, nil
}

// asciiLower lower-cases ASCII letters only: option names and modes are
// ASCII, and Unicode case folding would let "blksize" with a Kelvin sign
// match "blksize" or turn invalid bytes into longer replacement runes.
func asciiLower(b []byte) string {
	var small [16]byte
	out := small[:0]
	if len(b) > len(small) {
		out = make([]byte, 0, len(b))
	}
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out = append(out, c)
	}
	// The words every request carries are returned without allocating.
	switch string(out) {
	case "octet":
		return "octet"
	case "netascii":
		return "netascii"
	case "blksize":
		return "blksize"
	case "tsize":
		return "tsize"
	case "timeout":
		return "timeout"
	case "windowsize":
		return "windowsize"
	}
	return string(out)
}

// cutField splits off one NUL-terminated string.
func cutField(b []byte) (field, rest []byte, err error) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, errNotTerminated
	}
	return b[:i], b[i+1:], nil
}

// putDataHeader writes the DATA header into the first four bytes of b.
func putDataHeader(b []byte, block uint16) {
	binary.BigEndian.PutUint16(b, opDATA)
	binary.BigEndian.PutUint16(b[2:], block)
}

// appendAck encodes an ACK.
func appendAck(dst []byte, block uint16) []byte {
	dst = binary.BigEndian.AppendUint16(dst, opACK)
	return binary.BigEndian.AppendUint16(dst, block)
}

// appendError encodes an ERROR packet. The message is sent as-is, so it must
// never carry server internals.
func appendError(dst []byte, code ErrorCode, msg string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, opERROR)
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(append(dst, msg...), 0)
}

// appendOACK encodes an option acknowledgement.
func appendOACK(dst []byte, opts []option) []byte {
	dst = binary.BigEndian.AppendUint16(dst, opOACK)
	for _, o := range opts {
		dst = append(append(dst, o.name...), 0)
		dst = append(append(dst, o.value...), 0)
	}
	return dst
}

// opcode returns the opcode of a packet, or 0 if it is too short.
func opcode(b []byte) uint16 {
	if len(b) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

// parseBlockPacket returns the block number of a DATA or ACK packet and, for
// DATA, its payload (a sub-slice of b).
func parseBlockPacket(b []byte) (block uint16, payload []byte, ok bool) {
	if len(b) < headerLen {
		return 0, nil, false
	}
	return binary.BigEndian.Uint16(b[2:]), b[headerLen:], true
}

// parseError decodes an ERROR packet. A missing terminator is tolerated: the
// message is informational only.
func parseError(b []byte) (ErrorCode, string, bool) {
	if len(b) < headerLen || opcode(b) != opERROR {
		return 0, "", false
	}
	msg := b[headerLen:]
	if i := bytes.IndexByte(msg, 0); i >= 0 {
		msg = msg[:i]
	}
	return ErrorCode(binary.BigEndian.Uint16(b[2:])), string(msg), true
}

func direction(op uint16) string {
	if op == opWRQ {
		return "write"
	}
	return "read"
}
