// Command tftpload is a TFTP load client for comparing servers: single
// transfers, many concurrent transfers and uploads, with every byte checked.
// It uses only the standard library.
//
//	tftpload -mkfile DIR                       # f1k, f1m, f16m and SHA256SUMS
//	tftpload -wait 5s -addr 127.0.0.1:69       # until the server answers
//	tftpload -get f16m -root DIR -blksize 1468 -windowsize 16
//	tftpload -get f1k -root DIR -blksize 1468 -c 64 -n 10000 -duration 8s -pid PID
//	tftpload -put up.bin -size 16777216 -seed 21 -blksize 1468
//	tftpload -get up.bin -size 16777216 -seed 21 -blksize 65464   # read back
//	tftpload -report raw.txt                   # the comparison table
//
// Gets are verified against the expected content: DIR/NAME, whose SHA-256
// is checked against DIR/SHA256SUMS first, or the content generated from
// -size and -seed. Every received block is compared byte for byte.
//
// With -pid the server's CPU time (utime+stime+cutime+cstime from
// /proc/PID/stat) is read before and after the run, its peak RSS is reset
// before the run (clear_refs) and read after it (VmHWM), and with -tree the
// RSS of the whole process tree is sampled. The UDP receive-buffer drops of
// the network namespace (/proc/net/snmp RcvbufErrors) are reported too.
//
// -client indep behaves like the independent load client of issue 20: one
// net.UDPConn per transfer through Go's netpoller, fresh buffers for every
// transfer, and each file checked by the SHA-256 of everything received
// instead of block by block. A result that holds only with the default
// client (-client native) shows up as a difference between the two.
//
// Every RESULT line also has the client's own CPU per transfer
// (client_cpu_us, getrusage of this process) and, for gets, the time from
// the request to the first DATA or OACK (ttfb_p50ms, ttfb_p99ms).
//
// -label and -out append a RESULT line of key=value pairs to a file, which
// -report turns into the comparison table.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

var (
	addrFlag    = flag.String("addr", "127.0.0.1:69", "server address")
	getFlag     = flag.String("get", "", "read this file")
	putFlag     = flag.String("put", "", "write this file")
	rootFlag    = flag.String("root", "", "directory with the expected files and SHA256SUMS (for -get)")
	srcFlag     = flag.String("src", "", "file to upload (for -put)")
	sizeFlag    = flag.Int64("size", -1, "size of generated content (with -seed), for -put or as the expectation of -get")
	seedFlag    = flag.Uint64("seed", 1, "seed of generated content")
	blksizeFlag = flag.Int("blksize", 512, "blksize to ask for (512: no option)")
	windowFlag  = flag.Int("windowsize", 1, "windowsize to ask for (1: no option)")
	tsizeFlag   = flag.Bool("tsize", false, "send the tsize option")
	concFlag    = flag.Int("c", 1, "concurrent transfers")
	nFlag       = flag.Int("n", 1, "number of transfers")
	durFlag     = flag.Duration("duration", 0, "stop starting transfers after this long (0: no limit)")
	timeoutFlag = flag.Duration("timeout", time.Second, "retransmission timeout")
	retriesFlag = flag.Int("retries", 5, "retransmissions before a transfer fails")
	ioFlag      = flag.String("io", "auto", "socket I/O: block (blocking syscalls), poll (Go netpoller), auto (block for -c 1)")
	clientFlag  = flag.String("client", "native", "native: this client; indep: like issue 20's independent client (netpoller, a socket and buffers per transfer, SHA-256 of each file)")
	warmupFlag  = flag.Int("warmup", 0, "transfers to run (same concurrency) before the measured ones, not counted")
	pidFlag     = flag.Int("pid", 0, "server PID to measure CPU time and peak RSS of")
	treeFlag    = flag.Bool("tree", false, "with -pid: sample the RSS of the whole process tree (forking servers)")
	labelFlag   = flag.String("label", "", "key=value pairs to put in the RESULT line")
	outFlag     = flag.String("out", "", "append the RESULT line to this file")
	mkfileFlag  = flag.String("mkfile", "", "create the test files and SHA256SUMS in this directory and exit")
	waitFlag    = flag.Duration("wait", 0, "wait until the server answers a request, at most this long, and exit")
	reportFlag  = flag.String("report", "", "print the comparison table of the RESULT lines in this file and exit")
	verboseFlag = flag.Bool("v", false, "report every timeout on stderr")
	seqPortFlag = flag.Int("seqports", 0, "diagnostic: bind client sockets to sequential ports from this one instead of kernel-chosen ones")
	lingerFlag  = flag.Duration("linger", 0, "keep each client socket open this long after its transfer (diagnostic: no quick port reuse)")
)

func main() {
	flag.Parse()
	var err error
	switch {
	case *mkfileFlag != "":
		err = mkfiles(*mkfileFlag)
	case *reportFlag != "":
		err = report(*reportFlag)
	case *waitFlag > 0:
		err = waitServer(*waitFlag)
	case *getFlag != "" || *putFlag != "":
		err = run()
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tftpload:", err)
		os.Exit(1)
	}
}

// ---- content ----

// testFiles are the files -mkfile creates.
var testFiles = []struct {
	name string
	size int
}{
	{"f1k", 1 << 10},
	{"f1m", 1 << 20},
	{"f16m", 16 << 20},
}

// content returns deterministic pseudo-random bytes (splitmix64).
func content(n int, seed uint64) []byte {
	b := make([]byte, n+7)
	x := seed * 0x9E3779B97F4A7C15
	for i := 0; i < n; i += 8 {
		x += 0x9E3779B97F4A7C15
		z := x
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		binary.LittleEndian.PutUint64(b[i:], z^(z>>31))
	}
	return b[:n:n]
}

func nameSeed(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

func mkfiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var sums bytes.Buffer
	for _, f := range testFiles {
		data := content(f.size, nameSeed(f.name))
		if err := os.WriteFile(filepath.Join(dir, f.name), data, 0o644); err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), f.name)
	}
	return os.WriteFile(filepath.Join(dir, "SHA256SUMS"), sums.Bytes(), 0o644)
}

// expected returns what a get of name must deliver.
func expected(name string) ([]byte, error) {
	if *sizeFlag >= 0 {
		return content(int(*sizeFlag), *seedFlag), nil
	}
	if *rootFlag == "" {
		return nil, errors.New("-get needs -root or -size")
	}
	data, err := os.ReadFile(filepath.Join(*rootFlag, name))
	if err != nil {
		return nil, err
	}
	sums, err := os.ReadFile(filepath.Join(*rootFlag, "SHA256SUMS"))
	if err != nil {
		return nil, err
	}
	got := sha256.Sum256(data)
	for _, line := range strings.Split(string(sums), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[1] == name {
			if f[0] != hex.EncodeToString(got[:]) {
				return nil, fmt.Errorf("%s does not match its SHA-256 in SHA256SUMS", name)
			}
			return data, nil
		}
	}
	return nil, fmt.Errorf("%s is not in SHA256SUMS", name)
}

// ---- sockets ----

var errTimeout = errors.New("timeout")

// conn is a client socket.
type conn interface {
	send(b []byte, to netip.AddrPort) error
	// recv waits up to the timeout for one datagram.
	recv(buf []byte) (int, netip.AddrPort, error)
	setReadBuffer(n int)
	close()
}

// pollConn uses the Go netpoller: best with many transfers in flight.
type pollConn struct {
	c       *net.UDPConn
	timeout time.Duration
	alloc   bool // read with ReadFromUDP, which allocates the sender's address
}

func (p *pollConn) send(b []byte, to netip.AddrPort) error {
	_, err := p.c.WriteToUDPAddrPort(b, to)
	return err
}

func (p *pollConn) recv(buf []byte) (int, netip.AddrPort, error) {
	_ = p.c.SetReadDeadline(time.Now().Add(p.timeout))
	if p.alloc {
		n, ua, err := p.c.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return 0, netip.AddrPort{}, errTimeout
			}
			return 0, netip.AddrPort{}, err
		}
		return n, netip.AddrPortFrom(ua.AddrPort().Addr().Unmap(), ua.AddrPort().Port()), nil
	}
	n, from, err := p.c.ReadFromUDPAddrPort(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 0, from, errTimeout
		}
		return 0, from, err
	}
	return n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
}

func (p *pollConn) setReadBuffer(n int) { _ = p.c.SetReadBuffer(n) }
func (p *pollConn) close()              { _ = p.c.Close() }

// blockConn uses blocking system calls with SO_RCVTIMEO, like a C client:
// one system call per packet and no netpoller round trip.
type blockConn struct {
	fd   int
	to   syscall.RawSockaddrInet4
	from syscall.RawSockaddrInet4
}

func newBlockConn(timeout time.Duration) (*blockConn, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return &blockConn{fd: fd}, nil
}

func (c *blockConn) send(b []byte, to netip.AddrPort) error {
	c.to.Family = syscall.AF_INET
	c.to.Addr = to.Addr().As4()
	p := (*[2]byte)(unsafe.Pointer(&c.to.Port))
	p[0], p[1] = byte(to.Port()>>8), byte(to.Port())
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_SENDTO, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0,
			uintptr(unsafe.Pointer(&c.to)), syscall.SizeofSockaddrInet4)
		switch e {
		case 0:
			return nil
		case syscall.EINTR:
			continue
		default:
			return e
		}
	}
}

func (c *blockConn) recv(buf []byte) (int, netip.AddrPort, error) {
	for {
		l := uint32(syscall.SizeofSockaddrInet4)
		n, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, uintptr(c.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0,
			uintptr(unsafe.Pointer(&c.from)), uintptr(unsafe.Pointer(&l)))
		switch e {
		case 0:
			p := (*[2]byte)(unsafe.Pointer(&c.from.Port))
			return int(n), netip.AddrPortFrom(netip.AddrFrom4(c.from.Addr), uint16(p[0])<<8|uint16(p[1])), nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, netip.AddrPort{}, errTimeout
		default:
			return 0, netip.AddrPort{}, e
		}
	}
}

func (c *blockConn) setReadBuffer(n int) {
	_ = syscall.SetsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
}
func (c *blockConn) close() { syscall.Close(c.fd) }

// closeConn closes c now, or after -linger.
func closeConn(c conn) {
	if *lingerFlag > 0 {
		time.AfterFunc(*lingerFlag, c.close)
		return
	}
	c.close()
}

var seqPort atomic.Int64

func dial(block bool, timeout time.Duration) (conn, error) {
	if block {
		return newBlockConn(timeout)
	}
	port := 0
	for {
		if *seqPortFlag > 0 {
			port = *seqPortFlag + int(seqPort.Add(1)%20000)
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			if port != 0 {
				continue
			}
			return nil, err
		}
		return &pollConn{c: c, timeout: timeout}, nil
	}
}

// ---- transfers ----

// worker holds the buffers of one transfer at a time.
type worker struct {
	block   bool
	indep   bool
	timeout time.Duration
	retries int
	rbuf    []byte
	req     []byte
	ack     []byte
	data    []byte
}

// result of one transfer.
type result struct {
	dur     time.Duration
	ttfb    time.Duration // request to the first DATA or OACK
	retrans int
	blksize int
	window  int
}

func newWorker(block bool) *worker {
	return &worker{
		block: block, timeout: *timeoutFlag, retries: *retriesFlag,
		rbuf: make([]byte, 65536), req: make([]byte, 0, 256), ack: make([]byte, 4), data: make([]byte, 4+65464),
	}
}

func (w *worker) request(op uint16, name string, bs, win int, tsize int64) []byte {
	b := binary.BigEndian.AppendUint16(w.req[:0], op)
	b = append(append(b, name...), 0)
	b = append(b, "octet\x00"...)
	if tsize >= 0 {
		b = append(b, "tsize\x00"...)
		b = strconv.AppendInt(b, tsize, 10)
		b = append(b, 0)
	}
	if bs != 512 {
		b = append(b, "blksize\x00"...)
		b = strconv.AppendInt(b, int64(bs), 10)
		b = append(b, 0)
	}
	if win != 1 {
		b = append(b, "windowsize\x00"...)
		b = strconv.AppendInt(b, int64(win), 10)
		b = append(b, 0)
	}
	w.req = b
	return b
}

func putAck(b []byte, blk uint16) []byte {
	binary.BigEndian.PutUint16(b, opACK)
	binary.BigEndian.PutUint16(b[2:], blk)
	return b[:4]
}

// parseOACK reads blksize and windowsize from an OACK.
func parseOACK(pkt []byte, bs, win *int) {
	rest := pkt[2:]
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return
		}
		k := rest[:i]
		rest = rest[i+1:]
		j := bytes.IndexByte(rest, 0)
		if j < 0 {
			return
		}
		n, _ := strconv.Atoi(string(rest[:j]))
		rest = rest[j+1:]
		switch {
		case bytes.EqualFold(k, []byte("blksize")):
			*bs = n
		case bytes.EqualFold(k, []byte("windowsize")):
			*win = n
		}
	}
}

type tftpError struct {
	code uint16
	msg  string
}

func (e *tftpError) Error() string { return fmt.Sprintf("server error %d: %s", e.code, e.msg) }

func errorPacket(pkt []byte) error {
	msg := pkt[4:]
	if i := bytes.IndexByte(msg, 0); i >= 0 {
		msg = msg[:i]
	}
	return &tftpError{binary.BigEndian.Uint16(pkt[2:]), string(msg)}
}

// get reads name from server and compares every byte with want (with
// -client indep: the SHA-256 of everything received with wantSum). The
// time runs from the request to the final ACK.
func (w *worker) get(server netip.AddrPort, name string, want []byte, wantSum [32]byte, reqBS, reqW int, tsize bool) (result, error) {
	var r result
	c, err := dial(w.block, w.timeout)
	if err != nil {
		return r, err
	}
	rbuf := w.rbuf
	var sum hash.Hash
	got := 0
	if w.indep {
		// Like a straightforward client: a buffer and a hash per transfer,
		// and an allocating read (*net.UDPAddr per datagram).
		rbuf = make([]byte, 65536)
		sum = sha256.New()
		c.(*pollConn).alloc = true
	}
	defer closeConn(c)
	if reqBS*reqW > 128<<10 {
		c.setReadBuffer(4 << 20)
	}
	ts := int64(-1)
	if tsize {
		ts = 0
	}
	start := time.Now()
	last, lastTo := w.request(opRRQ, name, reqBS, reqW, ts), server
	if err := c.send(last, lastTo); err != nil {
		return r, err
	}
	var peer netip.AddrPort
	bs, win := 512, 1
	next := uint64(1)
	inWindow, retries := 0, 0
	nacked := false
	for {
		n, from, err := c.recv(rbuf)
		if err == errTimeout {
			if retries++; retries > w.retries {
				return r, fmt.Errorf("get %s: timed out at block %d", name, next)
			}
			if *verboseFlag {
				fmt.Fprintf(os.Stderr, "get %s: timeout %d after %v, server TID %v, next block %d\n", name, retries, time.Since(start), peer, next)
			}
			r.retrans++
			if peer.IsValid() {
				// Acknowledge what arrived in order, so a server whose
				// window tail was lost resends from there.
				last, inWindow = putAck(w.ack, uint16(next-1)), 0
			}
			if err := c.send(last, lastTo); err != nil {
				return r, err
			}
			continue
		}
		if err != nil {
			return r, err
		}
		if peer.IsValid() && from != peer || n < 4 {
			continue
		}
		retries = 0
		pkt := rbuf[:n]
		switch binary.BigEndian.Uint16(pkt) {
		case opERROR:
			return r, errorPacket(pkt)
		case opOACK:
			if peer.IsValid() {
				continue
			}
			peer = from
			r.ttfb = time.Since(start)
			parseOACK(pkt, &bs, &win)
			last, lastTo = putAck(w.ack, 0), peer
			if err := c.send(last, lastTo); err != nil {
				return r, err
			}
		case opDATA:
			if !peer.IsValid() {
				peer, lastTo = from, from
				r.ttfb = time.Since(start)
			}
			blk := binary.BigEndian.Uint16(pkt[2:])
			payload := pkt[4:]
			switch delta := blk - uint16(next); {
			case delta == 0:
				off := int(next-1) * bs
				if w.indep {
					if len(payload) > bs {
						return r, fmt.Errorf("get %s: block %d longer than the block size", name, next)
					}
					sum.Write(payload)
					got += len(payload)
				} else if len(payload) > bs || off+len(payload) > len(want) || !bytes.Equal(payload, want[off:off+len(payload)]) {
					return r, fmt.Errorf("get %s: block %d does not match the expected content", name, next)
				}
				next++
				inWindow++
				nacked = false
				if len(payload) < bs {
					if off+len(payload) != len(want) {
						return r, fmt.Errorf("get %s: %d bytes, want %d", name, off+len(payload), len(want))
					}
					if w.indep && (got != len(want) || !bytes.Equal(sum.Sum(nil), wantSum[:])) {
						return r, fmt.Errorf("get %s: SHA-256 of the %d bytes received does not match", name, got)
					}
					err := c.send(putAck(w.ack, blk), peer)
					r.dur, r.blksize, r.window = time.Since(start), bs, win
					return r, err
				}
				if inWindow >= win {
					inWindow = 0
					last = putAck(w.ack, blk)
					if err := c.send(last, peer); err != nil {
						return r, err
					}
				}
			case delta < 0x8000:
				// A gap: acknowledge the last block in order, once.
				if !nacked {
					nacked, inWindow = true, 0
					last = putAck(w.ack, uint16(next-1))
					if err := c.send(last, peer); err != nil {
						return r, err
					}
				}
			}
		}
	}
}

// put writes data as name. The time runs from the request to the final ACK.
func (w *worker) put(server netip.AddrPort, name string, data []byte, reqBS, reqW int, tsize bool) (result, error) {
	var r result
	c, err := dial(w.block, w.timeout)
	if err != nil {
		return r, err
	}
	defer closeConn(c)
	ts := int64(-1)
	if tsize {
		ts = int64(len(data))
	}
	start := time.Now()
	req := w.request(opWRQ, name, reqBS, reqW, ts)
	if err := c.send(req, server); err != nil {
		return r, err
	}
	var peer netip.AddrPort
	bs, win := 512, 1
	for retries := 0; !peer.IsValid(); {
		n, from, err := c.recv(w.rbuf)
		if err == errTimeout {
			if retries++; retries > w.retries {
				return r, fmt.Errorf("put %s: no answer to the request", name)
			}
			r.retrans++
			if err := c.send(req, server); err != nil {
				return r, err
			}
			continue
		}
		if err != nil {
			return r, err
		}
		if n < 4 {
			continue
		}
		pkt := w.rbuf[:n]
		switch binary.BigEndian.Uint16(pkt) {
		case opERROR:
			return r, errorPacket(pkt)
		case opOACK:
			parseOACK(pkt, &bs, &win)
			peer = from
		case opACK:
			if binary.BigEndian.Uint16(pkt[2:]) == 0 {
				peer = from
			}
		}
	}
	lastBlock := uint64(len(data)/bs) + 1
	base, next := uint64(1), uint64(1)
	retries := 0
	for base <= lastBlock {
		for next < base+uint64(win) && next <= lastBlock {
			off := int(next-1) * bs
			end := min(off+bs, len(data))
			p := w.data[:4+end-off]
			binary.BigEndian.PutUint16(p, opDATA)
			binary.BigEndian.PutUint16(p[2:], uint16(next))
			copy(p[4:], data[off:end])
			if err := c.send(p, peer); err != nil {
				return r, err
			}
			next++
		}
		n, from, err := c.recv(w.rbuf)
		if err == errTimeout {
			if retries++; retries > w.retries {
				return r, fmt.Errorf("put %s: timed out at block %d", name, base)
			}
			r.retrans += int(next - base)
			next = base
			continue
		}
		if err != nil {
			return r, err
		}
		if from != peer || n < 4 {
			continue
		}
		pkt := w.rbuf[:n]
		switch binary.BigEndian.Uint16(pkt) {
		case opERROR:
			return r, errorPacket(pkt)
		case opACK:
			delta := uint64(binary.BigEndian.Uint16(pkt[2:]) - uint16(base-1))
			if delta == 0 || delta > next-base {
				continue // duplicate or bogus: never resend on it
			}
			retries = 0
			base += delta
			next = base
		}
	}
	r.dur, r.blksize, r.window = time.Since(start), bs, win
	return r, nil
}

// waitServer sends a request for a file that does not exist until any
// answer comes back.
func waitServer(limit time.Duration) error {
	server, err := netip.ParseAddrPort(*addrFlag)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(limit)
	w := newWorker(false)
	w.timeout = 100 * time.Millisecond
	for time.Now().Before(deadline) {
		c, err := dial(false, w.timeout)
		if err != nil {
			return err
		}
		_ = c.send(w.request(opRRQ, "tftpload-probe-no-such-file", 512, 1, -1), server)
		_, _, err = c.recv(w.rbuf)
		c.close()
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no answer from %s within %s", server, limit)
}

// ---- server measurements ----

// procCPU returns utime+stime+cutime+cstime of pid in clock ticks.
func procCPU(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+2:]))
	var sum int64
	for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime (fields 14-17)
		v, _ := strconv.ParseInt(f[k], 10, 64)
		sum += v
	}
	return sum, nil
}

// selfCPU is this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports here.
const clockTick = 100

func procStatusKB(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// treeRSS sums VmRSS over pid and its descendants.
func treeRSS(pid int) int64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return procStatusKB(pid, "VmRSS")
	}
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+2:]))
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			parent[p] = pp
		}
	}
	var sum int64
	for p := range parent {
		for q := p; q > 1; q = parent[q] {
			if q == pid {
				sum += procStatusKB(p, "VmRSS")
				break
			}
		}
	}
	return sum
}

// udpRcvbufErrors returns RcvbufErrors from the Udp line of /proc/net/snmp.
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "Udp: ")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				x, _ := strconv.ParseInt(f[i], 10, 64)
				return x
			}
		}
	}
	return -1
}

// ---- the run ----

func run() error {
	server, err := netip.ParseAddrPort(*addrFlag)
	if err != nil {
		return err
	}
	var data []byte
	name, isPut := *getFlag, false
	if *putFlag != "" {
		name, isPut = *putFlag, true
		switch {
		case *srcFlag != "":
			data, err = os.ReadFile(*srcFlag)
		case *sizeFlag >= 0:
			data = content(int(*sizeFlag), *seedFlag)
		default:
			err = errors.New("-put needs -src or -size")
		}
	} else {
		data, err = expected(name)
	}
	if err != nil {
		return err
	}
	conc := max(1, *concFlag)
	total := max(1, *nFlag)
	indep := false
	switch *clientFlag {
	case "native":
	case "indep":
		indep = true
	default:
		return fmt.Errorf("-client %q: want native or indep", *clientFlag)
	}
	block := !indep && (*ioFlag == "block" || *ioFlag == "auto" && conc == 1)
	wantSum := sha256.Sum256(data)
	if *warmupFlag > 0 {
		// Untimed transfers first: the server's goroutines, buffers and
		// heap (and this client's) are then in their steady state.
		var next atomic.Int64
		var wg sync.WaitGroup
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := newWorker(block)
				w.indep = indep
				for next.Add(1) <= int64(*warmupFlag) {
					if isPut {
						_, _ = w.put(server, name, data, *blksizeFlag, *windowFlag, *tsizeFlag)
					} else {
						_, _ = w.get(server, name, data, wantSum, *blksizeFlag, *windowFlag, *tsizeFlag)
					}
				}
			}()
		}
		wg.Wait()
	}

	// Server state before.
	var cpu0, rss0 int64
	var peakTree atomic.Int64
	stopSampler := make(chan struct{})
	var sampler sync.WaitGroup
	if *pidFlag > 0 {
		if cpu0, err = procCPU(*pidFlag); err != nil {
			return fmt.Errorf("server pid: %w", err)
		}
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", *pidFlag), []byte("5"), 0)
		if *treeFlag {
			rss0 = treeRSS(*pidFlag)
			peakTree.Store(rss0)
			sampler.Add(1)
			go func() {
				defer sampler.Done()
				t := time.NewTicker(100 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-stopSampler:
						return
					case <-t.C:
						if v := treeRSS(*pidFlag); v > peakTree.Load() {
							peakTree.Store(v)
						}
					}
				}
			}()
		} else {
			rss0 = procStatusKB(*pidFlag, "VmRSS")
		}
	}
	drops0 := udpRcvbufErrors()
	ccpu0 := selfCPU()

	var (
		started  atomic.Int64
		mu       sync.Mutex
		lats     []time.Duration
		ttfbs    []time.Duration
		fails    int
		retrans  int
		granted  = map[string]int{}
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	var stopAt time.Time
	if *durFlag > 0 {
		stopAt = start.Add(*durFlag)
	}
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newWorker(block)
			w.indep = indep
			my := make([]time.Duration, 0, total/conc+1)
			myTTFB := make([]time.Duration, 0, total/conc+1)
			myFails, myRetrans := 0, 0
			myGranted := map[string]int{}
			var myErr error
			for started.Add(1) <= int64(total) {
				if !stopAt.IsZero() && time.Now().After(stopAt) {
					break
				}
				var r result
				var err error
				if isPut {
					r, err = w.put(server, name, data, *blksizeFlag, *windowFlag, *tsizeFlag)
				} else {
					r, err = w.get(server, name, data, wantSum, *blksizeFlag, *windowFlag, *tsizeFlag)
				}
				myRetrans += r.retrans
				if err != nil {
					myFails++
					if myErr == nil {
						myErr = err
					}
					continue
				}
				my = append(my, r.dur)
				if r.ttfb > 0 {
					myTTFB = append(myTTFB, r.ttfb)
				}
				myGranted[fmt.Sprintf("%d/%d", r.blksize, r.window)]++
			}
			mu.Lock()
			lats = append(lats, my...)
			ttfbs = append(ttfbs, myTTFB...)
			fails += myFails
			retrans += myRetrans
			for k, v := range myGranted {
				granted[k] += v
			}
			if firstErr == nil {
				firstErr = myErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	ccpu := selfCPU() - ccpu0

	// Server state after.
	kv := [][2]string{}
	add := func(k, v string) { kv = append(kv, [2]string{k, v}) }
	for _, f := range strings.Fields(*labelFlag) {
		if k, v, ok := strings.Cut(f, "="); ok {
			add(k, v)
		}
	}
	if *pidFlag > 0 {
		cpu1, err := procCPU(*pidFlag)
		if err != nil {
			return fmt.Errorf("server pid after the run: %w (did the server die?)", err)
		}
		close(stopSampler)
		sampler.Wait()
		peak := procStatusKB(*pidFlag, "VmHWM")
		if *treeFlag {
			peak = max(peakTree.Load(), treeRSS(*pidFlag))
		}
		cpuSec := float64(cpu1-cpu0) / clockTick
		add("cpu_s", fmt.Sprintf("%.2f", cpuSec))
		if n := len(lats); n > 0 {
			add("cpu_us", fmt.Sprintf("%.1f", cpuSec*1e6/float64(n)))
		}
		add("rss0_kb", strconv.FormatInt(rss0, 10))
		add("peak_kb", strconv.FormatInt(peak, 10))
		add("growth_kb", strconv.FormatInt(max(0, peak-rss0), 10))
	}
	if drops0 >= 0 {
		add("drops", strconv.FormatInt(udpRcvbufErrors()-drops0, 10))
	}
	ok := len(lats)
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	pct := func(p float64) float64 {
		if ok == 0 {
			return 0
		}
		i := min(ok-1, int(p*float64(ok)))
		return float64(lats[i].Microseconds()) / 1000
	}
	bytesOK := int64(ok) * int64(len(data))
	add("ok", strconv.Itoa(ok))
	add("fail", strconv.Itoa(fails))
	add("retrans", strconv.Itoa(retrans))
	add("secs", fmt.Sprintf("%.3f", elapsed.Seconds()))
	mbps := 0.0
	if conc == 1 && ok > 0 {
		// Sequential transfers: bytes over the time from each request to
		// its final ACK, socket setup between transfers left out.
		var sum time.Duration
		for _, l := range lats {
			sum += l
		}
		mbps = float64(bytesOK) / sum.Seconds() / 1e6
	} else if ok > 0 {
		mbps = float64(bytesOK) / elapsed.Seconds() / 1e6
	}
	add("mbps", fmt.Sprintf("%.1f", mbps))
	add("client", *clientFlag)
	if ok > 0 {
		add("client_cpu_us", fmt.Sprintf("%.1f", float64(ccpu.Microseconds())/float64(ok)))
	}
	if len(ttfbs) > 0 {
		sort.Slice(ttfbs, func(i, j int) bool { return ttfbs[i] < ttfbs[j] })
		tp := func(p float64) float64 {
			return float64(ttfbs[min(len(ttfbs)-1, int(p*float64(len(ttfbs))))].Microseconds()) / 1000
		}
		add("ttfb_p50ms", fmt.Sprintf("%.2f", tp(0.50)))
		add("ttfb_p99ms", fmt.Sprintf("%.2f", tp(0.99)))
	}
	// Transfers per second in the steady state, by Little's law: with c
	// clients always busy, c / mean latency. Unlike ok/elapsed (tps_wall)
	// it does not collapse when the run waits for one transfer stuck in a
	// 1-second retransmission at its end; that transfer still counts,
	// through the mean latency (and p99, max, retransmits show it).
	if ok > 0 {
		var sum time.Duration
		for _, l := range lats {
			sum += l
		}
		add("tps", fmt.Sprintf("%.1f", float64(conc)*float64(ok)/sum.Seconds()))
	}
	add("tps_wall", fmt.Sprintf("%.1f", float64(ok)/elapsed.Seconds()))
	add("p50ms", fmt.Sprintf("%.2f", pct(0.50)))
	add("p99ms", fmt.Sprintf("%.2f", pct(0.99)))
	add("maxms", fmt.Sprintf("%.2f", pct(1)))
	g := ""
	for k := range granted {
		if g == "" || granted[k] > granted[g] {
			g = k
		}
	}
	if g != "" {
		add("granted", g)
	}
	var line strings.Builder
	line.WriteString("RESULT")
	for _, p := range kv {
		fmt.Fprintf(&line, " %s=%s", p[0], p[1])
	}
	fmt.Println(line.String())
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "tftpload: %d failed transfers; first error: %v\n", fails, firstErr)
	}
	if *outFlag != "" && ok > 0 {
		f, err := os.OpenFile(*outFlag, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		fmt.Fprintln(f, line.String())
		if err := f.Close(); err != nil {
			return err
		}
	}
	if ok == 0 {
		return fmt.Errorf("no transfer succeeded: %v", firstErr)
	}
	return nil
}

// ---- report ----

type record map[string]string

func (r record) num(k string) (float64, bool) {
	v, ok := r[k]
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// metric is one row kind of the table.
type metric struct {
	key    string
	label  string
	higher bool // higher is better
	sum    bool // sum over repetitions instead of median
	scale  float64
	prec   int
}

var (
	mMBps   = metric{key: "mbps", label: "MB/s", higher: true, prec: 1}
	mTPS    = metric{key: "tps", label: "transfers/s (c / mean latency)", higher: true, prec: 0}
	mTPSw   = metric{key: "tps_wall", label: "transfers/s (done / wall time)", higher: true, prec: 0}
	mP50    = metric{key: "p50ms", label: "p50 ms", prec: 2}
	mP99    = metric{key: "p99ms", label: "p99 ms", prec: 1}
	mMax    = metric{key: "maxms", label: "max ms", prec: 0}
	mFail   = metric{key: "fail", label: "failures (sum)", sum: true}
	mCPU    = metric{key: "cpu_us", label: "server CPU µs/transfer", prec: 0}
	mPeak   = metric{key: "peak_kb", label: "server peak RSS MiB", scale: 1.0 / 1024, prec: 1}
	mGrowth = metric{key: "growth_kb", label: "server RSS growth MiB", scale: 1.0 / 1024, prec: 1}
	mDrops  = metric{key: "drops", label: "UdpRcvbufErrors (sum)", sum: true}
	mRetr   = metric{key: "retrans", label: "client retransmits (sum)", sum: true}
	mCPUms  = metric{key: "cpu_us", label: "server CPU ms/transfer", scale: 0.001, prec: 0}
	mCCPU   = metric{key: "client_cpu_us", label: "client CPU µs/transfer", prec: 0}
	mTTFB50 = metric{key: "ttfb_p50ms", label: "first block p50 ms", prec: 2}
	mTTFB99 = metric{key: "ttfb_p99ms", label: "first block p99 ms", prec: 1}
)

func metricsFor(kind, cs string) []metric {
	switch kind {
	case "single", "put":
		return []metric{mMBps, mCPUms}
	case "conc":
		m := []metric{mTPS, mTPSw, mP50, mP99, mMax, mFail, mRetr, mCPU, mCCPU}
		if strings.Contains(cs, "c256") {
			m = append(m, mTTFB50, mTTFB99, mPeak, mGrowth, mDrops)
		}
		return m
	}
	return nil
}

func report(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var cases []string
	kinds := map[string]string{}
	var servers []string
	seenServer := map[string]bool{}
	recs := map[[2]string][]record{} // case, server
	status := map[[2]string]string{} // case, server -> failure note
	perf := map[[3]string]float64{}  // case, server, rep -> task-clock ms
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		r := record{}
		for _, p := range fields[1:] {
			if k, v, ok := strings.Cut(p, "="); ok {
				r[k] = v
			}
		}
		cs, srv := r["case"], r["server"]
		if cs == "" || srv == "" {
			continue
		}
		if !seenServer[srv] {
			seenServer[srv] = true
			servers = append(servers, srv)
		}
		if _, ok := kinds[cs]; !ok {
			kinds[cs] = r["kind"]
			cases = append(cases, cs)
		}
		switch fields[0] {
		case "RESULT":
			recs[[2]string{cs, srv}] = append(recs[[2]string{cs, srv}], r)
		case "FAILED":
			status[[2]string{cs, srv}] = r["why"]
		case "PERF":
			v, _ := strconv.ParseFloat(r["task_clock_ms"], 64)
			perf[[3]string{cs, srv, r["rep"]}] = v
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	// Forking servers: CPU per transfer from perf's task-clock of the whole
	// process tree, when the script measured it.
	for key, rs := range recs {
		for _, r := range rs {
			if ms, ok := perf[[3]string{key[0], key[1], r["rep"]}]; ok {
				r["cpu_s"] = fmt.Sprintf("%.3f", ms/1000)
				if n, _ := r.num("ok"); n > 0 {
					r["cpu_us"] = fmt.Sprintf("%.1f", ms*1000/n)
				}
			}
		}
	}
	ours := "ours"
	rank := map[string]int{"ours": 0, "tftpd-hpa": 1, "atftpd": 2, "dnsmasq": 3}
	sort.SliceStable(servers, func(i, j int) bool {
		ri, ok := rank[servers[i]]
		if !ok {
			ri = 10
		}
		rj, ok := rank[servers[j]]
		if !ok {
			rj = 10
		}
		return ri < rj
	})
	var others []string
	for _, s := range servers {
		if s != ours {
			others = append(others, s)
		}
	}
	order := append([]string{ours}, others...)
	header := []string{"case", "metric"}
	header = append(header, order...)
	for _, o := range others {
		header = append(header, "ours/"+o)
	}
	var rows [][]string
	for _, cs := range cases {
		for _, m := range metricsFor(kinds[cs], cs) {
			row := []string{cs, m.label}
			vals := map[string]float64{}
			have := map[string]bool{}
			for _, s := range order {
				rs := recs[[2]string{cs, s}]
				if note, failed := status[[2]string{cs, s}]; failed {
					row = append(row, note)
					continue
				}
				var xs []float64
				for _, r := range rs {
					if v, ok := r.num(m.key); ok {
						xs = append(xs, v)
					}
				}
				if len(xs) == 0 {
					note := status[[2]string{cs, s}]
					if note == "" {
						note = "–"
					}
					row = append(row, note)
					continue
				}
				var v float64
				if m.sum {
					for _, x := range xs {
						v += x
					}
				} else {
					v = median(xs)
				}
				if m.scale != 0 {
					v *= m.scale
				}
				vals[s], have[s] = v, true
				cell := strconv.FormatFloat(v, 'f', m.prec, 64)
				if m.key == "mbps" {
					// Show a granted block/window size that differs from the
					// one asked for.
					if g := rs[0]["granted"]; g != "" && g != rs[0]["want"] {
						cell += " [" + g + "]"
					}
				}
				row = append(row, cell)
			}
			for _, o := range others {
				if !have[ours] || !have[o] || m.sum || vals[o] == 0 {
					row = append(row, "")
					continue
				}
				ratio := vals[ours] / vals[o]
				mark := ""
				if (m.higher && ratio >= 1) || (!m.higher && ratio <= 1) {
					mark = " ✓"
				}
				row = append(row, fmt.Sprintf("%.2fx%s", ratio, mark))
			}
			rows = append(rows, row)
		}
	}
	printTable(header, rows)
	fmt.Println()
	fmt.Println("Medians over repetitions (sums where marked). Cases ending in -indep: -client indep (netpoller,")
	fmt.Println("a socket and buffers per transfer, SHA-256 per file), like issue 20's independent client.")
	fmt.Println("Ratios are ours/theirs; ✓ = ours at least as good")
	fmt.Println("(higher MB/s and transfers/s, lower latency, CPU and RSS). [b/w] = block/window size the")
	fmt.Println("server granted when it differs from the one asked for. '-pin' cases: server and client on CPU 0.")
	fmt.Println()
	goals(recs, status)
	return nil
}

// goal is one row of issue 20's table.
type goal struct {
	shape  string
	cases  []string // the same shape measured with each client
	key    string
	peer   string // "" : an absolute goal on ours
	higher bool
	target float64 // ratio ours/peer, or the absolute value
	unit   string
}

var issueGoals = []goal{
	{"1 KiB × 64 clients, transfers/s vs dnsmasq", []string{"f1k-c64", "f1k-c64-indep"}, "tps", "dnsmasq", true, 1.0, ""},
	{"1 MiB × 64 clients, transfers/s vs dnsmasq", []string{"f1m-c64", "f1m-c64-indep"}, "tps", "dnsmasq", true, 1.1, ""},
	{"server CPU per 1 KiB transfer (c=64) vs dnsmasq", []string{"f1k-c64", "f1k-c64-indep"}, "cpu_us", "dnsmasq", false, 1.0, ""},
	{"server CPU per 1 MiB transfer (c=64) vs dnsmasq", []string{"f1m-c64", "f1m-c64-indep"}, "cpu_us", "dnsmasq", false, 1.0, ""},
	{"1 MiB, one client, transfers/s vs atftpd", []string{"f1m-c1", "f1m-c1-indep"}, "tps", "atftpd", true, 1.0, ""},
	{"16 MiB upload, blksize 1468, MB/s vs atftpd", []string{"put16m-b1468-pin"}, "mbps", "atftpd", true, 1.0, ""},
	{"16 MiB upload, blksize 512, MB/s vs atftpd", []string{"put16m-b512-pin"}, "mbps", "atftpd", true, 1.0, ""},
	{"p99 time to first block, 256 clients (1 KiB)", []string{"f1k-c256", "f1k-c256-indep"}, "ttfb_p99ms", "", false, 10, " ms"},
}

// goals prints issue 20's table: each shape with each client, ours against
// the peer named there, and whether the goal is met.
func goals(recs map[[2]string][]record, status map[[2]string]string) {
	med := func(cs, srv, key string) (float64, bool) {
		if _, failed := status[[2]string{cs, srv}]; failed {
			return 0, false
		}
		var xs []float64
		for _, r := range recs[[2]string{cs, srv}] {
			if v, ok := r.num(key); ok {
				xs = append(xs, v)
			}
		}
		if len(xs) == 0 {
			return 0, false
		}
		return median(xs), true
	}
	header := []string{"shape (issue 20)", "client", "ours", "peer", "ours/peer", "goal", "met"}
	var rows [][]string
	for _, g := range issueGoals {
		for _, cs := range g.cases {
			client := "tftpload"
			if strings.HasSuffix(cs, "-indep") {
				client = "indep"
			}
			o, okO := med(cs, "ours", g.key)
			if !okO {
				continue
			}
			row := []string{g.shape, client, fmtNum(o)}
			var val float64
			var goalText string
			cmp := ">="
			if !g.higher {
				cmp = "<="
			}
			if g.peer == "" {
				row = append(row, "", "")
				val = o
				if !g.higher {
					cmp = "<"
				}
				goalText = fmt.Sprintf("%s %g%s", cmp, g.target, g.unit)
			} else {
				p, okP := med(cs, g.peer, g.key)
				if !okP || p == 0 {
					continue
				}
				val = o / p
				row = append(row, fmtNum(p), fmt.Sprintf("%.2fx", val))
				goalText = fmt.Sprintf("%s %.2fx", cmp, g.target)
			}
			met := (g.higher && val >= g.target) || (!g.higher && (val < g.target || g.peer != "" && val == g.target))
			mark := "no"
			if met {
				mark = "yes"
			}
			rows = append(rows, append(row, goalText, mark))
			g.shape = "" // print the shape once
		}
	}
	if len(rows) == 0 {
		return
	}
	printTable(header, rows)
	fmt.Println()
	fmt.Println("transfers/s = clients / mean latency; CPU = server utime+stime per transfer (µs);")
	fmt.Println("first block = request sent to the first DATA or OACK received.")
}

func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func printTable(header []string, rows [][]string) {
	width := make([]int, len(header))
	all := append([][]string{header}, rows...)
	for _, r := range all {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		for i, c := range r {
			pad := width[i] - len([]rune(c))
			if i < 2 {
				b.WriteString(c + strings.Repeat(" ", pad))
			} else {
				b.WriteString(strings.Repeat(" ", pad) + c)
			}
			if i < len(r)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Println(strings.TrimRight(b.String(), " "))
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
}
