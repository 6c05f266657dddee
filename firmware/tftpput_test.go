//go:build firmware

package firmware

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TFTP opcodes used by the upload client.
const (
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// putBlockSize is the block size the upload client asks for.
const putBlockSize = 8192

// tftpPut uploads data as name to server with a plain lockstep TFTP write
// (RFC 1350, asking for blksize and declaring tsize), retrying each packet
// a few times. netns, when not empty, is the network namespace whose
// network the client uses.
func tftpPut(netns string, server netip.AddrPort, name string, data []byte) error {
	conn, err := udpSocket(netns)
	if err != nil {
		return err
	}
	defer conn.Close()

	wrq := []byte{0, opWRQ}
	for _, s := range []string{name, "octet", "blksize", strconv.Itoa(putBlockSize), "tsize", strconv.Itoa(len(data))} {
		wrq = append(wrq, s...)
		wrq = append(wrq, 0)
	}
	dst := net.UDPAddrFromAddrPort(server)
	buf := make([]byte, 65536)

	// exchange sends pkt to addr until a reply from the server's host
	// arrives that accept() takes, and returns the reply and its source.
	exchange := func(pkt []byte, addr *net.UDPAddr, accept func(op uint16, body []byte, from *net.UDPAddr) (bool, error)) (*net.UDPAddr, error) {
		for try := 0; try < 6; try++ {
			if _, err := conn.WriteToUDP(pkt, addr); err != nil {
				return nil, err
			}
			deadline := time.Now().Add(time.Second << min(try, 2))
			for {
				_ = conn.SetReadDeadline(deadline)
				n, from, err := conn.ReadFromUDP(buf)
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						break
					}
					return nil, err
				}
				if n < 4 || !from.IP.Equal(dst.IP) {
					continue
				}
				op := binary.BigEndian.Uint16(buf[:2])
				if op == opERROR {
					msg, _, _ := bytes.Cut(buf[4:n], []byte{0})
					return nil, fmt.Errorf("server error %d: %s", binary.BigEndian.Uint16(buf[2:4]), msg)
				}
				ok, err := accept(op, buf[2:n], from)
				if err != nil {
					return nil, err
				}
				if ok {
					return from, nil
				}
			}
		}
		return nil, fmt.Errorf("no answer from %s", addr)
	}

	// The server answers the WRQ from its transfer port with an OACK, or
	// with ACK 0 when it ignored the options.
	blockSize := 512
	peer, err := exchange(wrq, dst, func(op uint16, body []byte, _ *net.UDPAddr) (bool, error) {
		switch op {
		case opACK:
			return binary.BigEndian.Uint16(body[:2]) == 0, nil
		case opOACK:
			fields := bytes.Split(bytes.TrimSuffix(body, []byte{0}), []byte{0})
			for i := 0; i+1 < len(fields); i += 2 {
				if string(bytes.ToLower(fields[i])) == "blksize" {
					v, err := strconv.Atoi(string(fields[i+1]))
					if err != nil || v < 8 || v > putBlockSize {
						return false, fmt.Errorf("bad blksize in OACK: %q", fields[i+1])
					}
					blockSize = v
				}
			}
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("WRQ %s: %w", name, err)
	}

	pkt := make([]byte, 4+blockSize)
	for block, off := 1, 0; ; block++ {
		end := min(off+blockSize, len(data))
		binary.BigEndian.PutUint16(pkt[0:2], opDATA)
		binary.BigEndian.PutUint16(pkt[2:4], uint16(block))
		n := copy(pkt[4:], data[off:end])
		want := uint16(block)
		_, err := exchange(pkt[:4+n], peer, func(op uint16, body []byte, from *net.UDPAddr) (bool, error) {
			return op == opACK && from.Port == peer.Port && binary.BigEndian.Uint16(body[:2]) == want, nil
		})
		if err != nil {
			return fmt.Errorf("DATA %d of %s: %w", block, name, err)
		}
		off = end
		if n < blockSize {
			return nil
		}
	}
}

// udpSocket opens an IPv4 UDP socket on an ephemeral port, in the named
// network namespace when netns is not empty. A socket stays in the
// namespace it was created in, so only its creation runs on a thread that
// joined the namespace.
func udpSocket(netns string) (*net.UDPConn, error) {
	if netns == "" {
		return net.ListenUDP("udp4", &net.UDPAddr{})
	}
	type result struct {
		conn *net.UDPConn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			// A thread that could not return to its namespace dies with
			// the goroutine instead of being reused.
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{err: err}
			restored = true
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + netns)
		if err != nil {
			ch <- result{err: err}
			restored = true
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", netns, err)}
			restored = true
			return
		}
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{})
		restored = unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// seed uploads every file to the server's memory store and fails the test
// on an error.
func seed(t *testing.T, netns string, server netip.AddrPort, files map[string][]byte) {
	t.Helper()
	start := time.Now()
	total := 0
	for name, data := range files {
		if err := tftpPut(netns, server, name, data); err != nil {
			t.Fatalf("seeding the memory store: %v", err)
		}
		total += len(data)
	}
	t.Logf("seeded %d files (%d bytes) into the memory store with TFTP writes to %s in %.2fs", len(files), total, server, time.Since(start).Seconds())
}
