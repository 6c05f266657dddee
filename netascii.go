package tftp

// netascii (RFC 764, as used by RFC 1350): on the wire a line ends in CR LF
// and a bare CR is sent as CR NUL. Files are stored with Unix line ends.

// netasciiEncode translates stored bytes to their netascii form.
func netasciiEncode(src []byte) []byte {
	dst := make([]byte, 0, netasciiSize(src))
	for _, c := range src {
		switch c {
		case '\n':
			dst = append(dst, '\r', '\n')
		case '\r':
			dst = append(dst, '\r', 0)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// netasciiSize is the length of src once encoded, which is what tsize
// reports for a netascii read.
func netasciiSize(src []byte) int64 {
	n := int64(len(src))
	for _, c := range src {
		if c == '\n' || c == '\r' {
			n++
		}
	}
	return n
}

// netasciiDecoder translates netascii back to stored bytes across block
// boundaries: a CR at the end of one block pairs with the first byte of the
// next.
type netasciiDecoder struct {
	pendingCR bool
}

// decode appends the translation of src to dst.
func (d *netasciiDecoder) decode(dst, src []byte) []byte {
	for _, c := range src {
		if d.pendingCR {
			d.pendingCR = false
			switch c {
			case '\n':
				dst = append(dst, '\n')
				continue
			case 0:
				dst = append(dst, '\r')
				continue
			default:
				// A bare CR is not valid netascii; keep it rather than
				// lose data.
				dst = append(dst, '\r')
			}
		}
		if c == '\r' {
			d.pendingCR = true
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// flush returns what a trailing CR stands for at the end of the transfer.
func (d *netasciiDecoder) flush(dst []byte) []byte {
	if d.pendingCR {
		d.pendingCR = false
		dst = append(dst, '\r')
	}
	return dst
}
