// Package storetest holds what the tests of the store modules share: putting
// and reading whole files through the store contract, and random contents.
package storetest

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/caddy-tftp/tftp/store"
)

// Put uploads data as name in 512-byte writes, as a TFTP upload does, and
// commits it; on a failed write the upload is aborted.
func Put(s store.Store, name string, data []byte, overwrite bool) error {
	up, err := s.Create(name, store.CreateOptions{Overwrite: overwrite, Size: -1})
	if err != nil {
		return err
	}
	for len(data) > 0 {
		n := min(512, len(data))
		if _, err := up.Write(data[:n]); err != nil {
			up.Abort()
			return err
		}
		data = data[n:]
	}
	return up.Commit()
}

// Read returns the whole of the named file.
func Read(s store.Store, name string) ([]byte, error) {
	f, err := s.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, f.Size())
	if n, err := f.ReadAt(b, 0); n != len(b) {
		return nil, fmt.Errorf("short read %d of %d: %v", n, len(b), err)
	}
	return b, nil
}

// MustPut is Put, failing the test on an error.
func MustPut(t testing.TB, s store.Store, name string, data []byte) {
	t.Helper()
	if err := Put(s, name, data, true); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}

// MustRead is Read, failing the test on an error.
func MustRead(t testing.TB, s store.Store, name string) []byte {
	t.Helper()
	b, err := Read(s, name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	return b
}

// RandomBytes returns n random bytes.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
