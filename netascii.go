package tftp

import (
	"errors"
	"io"
	"io/fs"
	"sort"
)

// netascii (RFC 764, as used by RFC 1350): on the wire a line ends in CR LF
// and a bare CR is sent as CR NUL. Files are stored with Unix line ends.

// netasciiEncode translates stored bytes to their netascii form.
func netasciiEncode(src []byte) []byte {
	dst := make([]byte, 0, netasciiSize(src))
	for _, c := range src {
		form, w := netasciiForm(c)
		dst = append(dst, form[:w]...)
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

// netasciiForm is the netascii form of one stored byte and its length.
func netasciiForm(c byte) ([2]byte, int64) {
	switch c {
	case '\n':
		return [2]byte{'\r', '\n'}, 2
	case '\r':
		return [2]byte{'\r', 0}, 2
	}
	return [2]byte{c}, 1
}

// netasciiMarkEvery is how many stored bytes lie between two positions a
// netasciiReader remembers, bounding how far it re-reads to serve an
// offset behind its cursor (a retransmitted window).
const netasciiMarkEvery = 64 << 10

// netasciiMark pairs an offset in the stored bytes with the matching offset
// in their netascii form.
type netasciiMark struct {
	raw, enc int64
}

// netasciiReader serves the netascii form of a stored file by offset,
// translating as it reads, so a large file is never copied whole. It is
// made for one transfer: not safe for concurrent use.
type netasciiReader struct {
	src   io.ReaderAt
	size  int64          // length of the netascii form
	marks []netasciiMark // one every netasciiMarkEvery stored bytes
	cur   netasciiMark   // where the last read stopped
	buf   []byte
}

// newNetasciiReader reads src once to learn the size of its netascii form
// (which tsize reports) and where to resume reading later. A rawSize of -1
// (not known) reads src up to io.EOF.
func newNetasciiReader(src io.ReaderAt, rawSize int64) (*netasciiReader, error) {
	r := &netasciiReader{src: src, buf: make([]byte, netasciiMarkEvery)}
	var m netasciiMark
	for rawSize < 0 || m.raw < rawSize {
		want := int64(len(r.buf))
		if rawSize >= 0 {
			want = min(want, rawSize-m.raw)
		}
		n, err := src.ReadAt(r.buf[:want], m.raw)
		if n == 0 && errors.Is(err, io.EOF) && rawSize < 0 {
			break
		}
		if n == 0 && err != nil {
			return nil, err
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		r.marks = append(r.marks, m)
		m.enc += netasciiSize(r.buf[:n])
		m.raw += int64(n)
	}
	r.size = m.enc
	return r, nil
}

// Size is the length of the netascii form.
func (r *netasciiReader) Size() int64 { return r.size }

// ReadAt fills p with the netascii form starting at off.
func (r *netasciiReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fs.ErrInvalid
	}
	if off >= r.size {
		return 0, io.EOF
	}
	pos := r.cur
	if pos.enc > off {
		i := sort.Search(len(r.marks), func(i int) bool { return r.marks[i].enc > off }) - 1
		pos = r.marks[i]
	}
	n := 0
	for n < len(p) && pos.enc < r.size {
		// Each stored byte gives at least one byte of netascii, so this
		// many are enough to reach off and fill p.
		need := int64(len(p)-n) + max(off-pos.enc, 0)
		k, err := r.src.ReadAt(r.buf[:min(need, int64(len(r.buf)))], pos.raw)
		if k == 0 {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		for _, c := range r.buf[:k] {
			form, w := netasciiForm(c)
			for i := max(off-pos.enc, 0); i < w; i++ {
				if n == len(p) {
					// This byte's form is cut: the cursor stays on it, a
					// stored-byte boundary.
					r.cur = pos
					return n, nil
				}
				p[n] = form[i]
				n++
			}
			pos.raw++
			pos.enc += w
			if n == len(p) {
				break
			}
		}
	}
	r.cur = pos
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
