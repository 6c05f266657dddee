package tftp

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/caddy-tftp/tftp/store"
)

// Opening the file a request names, in the store.

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
