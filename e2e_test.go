package tftp

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/caddy-tftp/tftp/internal/storetest"
)

// roundTripSizes are the file sizes every client must put and get back
// byte-for-byte: empty, one byte, around one and two blocks, the largest
// 16-bit size, and 1 MiB.
var roundTripSizes = []int{0, 1, 511, 512, 513, 1024, 65535, 1 << 20}

// randomBytes returns n random bytes.
var randomBytes = storetest.RandomBytes

// startDefaultServer runs one server listening on the wildcard address of a
// free port, so both loopback families reach it.
func startDefaultServer(t testing.TB, extra ...string) uint16 {
	t.Helper()
	port := freePort(t)
	startCaddy(t, tftpCaddyfile(lines(append([]string{fmt.Sprintf("listen :%d", port)}, extra...)...)))
	return port
}

func TestGoClientRoundTrip(t *testing.T) {
	port := startDefaultServer(t)
	for _, server := range []netip.AddrPort{loopback4(port), loopback6(port)} {
		for _, size := range roundTripSizes {
			for _, name := range []string{"f.bin", "dir/sub/file.bin", "pxelinux.cfg/default", "with space.bin"} {
				t.Run(fmt.Sprintf("%s/%d/%s", server.Addr(), size, name), func(t *testing.T) {
					data := randomBytes(t, size)
					c := &testClient{server: server}
					if err := c.put(name, data); err != nil {
						t.Fatalf("put: %v", err)
					}
					got, err := c.get(name)
					if err != nil {
						t.Fatalf("get: %v", err)
					}
					if !bytes.Equal(got, data) {
						t.Fatalf("got %d bytes back, want %d identical bytes", len(got), len(data))
					}
					// RFC 1350 lock-step without loss: exactly one DATA per
					// block, and a multiple of 512 ends with an empty block.
					if want := size/512 + 1; c.stats.dataIn != want {
						t.Errorf("received %d DATA packets, want %d", c.stats.dataIn, want)
					}
				})
			}
		}
	}
}

func TestMissingFileIsError1(t *testing.T) {
	port := startDefaultServer(t)
	for _, server := range []netip.AddrPort{loopback4(port), loopback6(port)} {
		c := &testClient{server: server}
		_, err := c.get("no/such/file")
		if code := errorCode(err); code != int(ErrCodeFileNotFound) {
			t.Fatalf("%s: get of a missing file: %v, want ERROR 1", server, err)
		}
	}
}
