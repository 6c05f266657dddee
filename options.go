package tftp

import (
	"strconv"
	"time"
)

// Bounds of the RFC 2349 timeout and RFC 7440 windowsize options.
const (
	minTimeoutOption = 1
	maxTimeoutOption = 255
	minWindowSize    = 1
	maxWindowSize    = 65535
)

// negotiationPolicy is what a server allows clients to ask for.
type negotiationPolicy struct {
	disabled      bool
	maxBlockSize  int
	maxWindowSize int
	timeout       time.Duration
}

// transferParams are the settings one transfer runs with.
type transferParams struct {
	blockSize  int
	windowSize int
	timeout    time.Duration
	// tsize is the size the client declared on a write, or -1.
	tsize int64
	// oack lists the accepted options in the client's order; empty means
	// the transfer starts as plain RFC 1350.
	oack []option
}

// negotiate decides the transfer settings from the request's options
// (RFC 2347). Options the server does not know, and values out of range, are
// left out of the OACK, so the client falls back to the RFC 1350 default for
// them. A blksize or windowsize above the server's cap is lowered to the
// cap, as RFC 2348 and RFC 7440 allow. readSize is the size of the file
// being read, or -1 when it is not known (tsize is then left out of the
// OACK); it is ignored for a write.
func negotiate(req *request, pol negotiationPolicy, readSize int64) transferParams {
	p := transferParams{
		blockSize:  defaultBlockSize,
		windowSize: 1,
		timeout:    pol.timeout,
		tsize:      -1,
	}
	if pol.disabled {
		return p
	}
	seen := 0
	for _, o := range req.options {
		switch o.name {
		case "blksize":
			if seen&1 != 0 {
				continue
			}
			seen |= 1
			n, ok := optionInt(o.value, minBlockSize, maxBlockSize)
			if !ok {
				continue
			}
			n = min(n, pol.maxBlockSize)
			p.blockSize = n
			p.oack = append(p.oack, option{"blksize", strconv.Itoa(n)})
		case "timeout":
			if seen&2 != 0 {
				continue
			}
			seen |= 2
			n, ok := optionInt(o.value, minTimeoutOption, maxTimeoutOption)
			if !ok {
				continue
			}
			p.timeout = time.Duration(n) * time.Second
			p.oack = append(p.oack, option{"timeout", strconv.Itoa(n)})
		case "tsize":
			if seen&4 != 0 {
				continue
			}
			seen |= 4
			if req.op != opWRQ {
				// curl rejects an OACK carrying "tsize 0", so an empty
				// file is sent without the option; a file of unknown
				// size (streamed from elsewhere) is sent without it too.
				if readSize > 0 {
					p.oack = append(p.oack, option{"tsize", strconv.FormatInt(readSize, 10)})
				}
				continue
			}
			n, err := strconv.ParseInt(o.value, 10, 64)
			if err != nil || n < 0 {
				continue
			}
			p.tsize = n
			p.oack = append(p.oack, option{"tsize", o.value})
		case "windowsize":
			if seen&8 != 0 {
				continue
			}
			seen |= 8
			n, ok := optionInt(o.value, minWindowSize, maxWindowSize)
			if !ok {
				continue
			}
			n = min(n, pol.maxWindowSize)
			p.windowSize = n
			p.oack = append(p.oack, option{"windowsize", strconv.Itoa(n)})
		}
	}
	return p
}

// optionInt parses a decimal option value within [lo, hi].
func optionInt(s string, lo, hi int) (int, bool) {
	if len(s) == 0 || len(s) > 6 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}
