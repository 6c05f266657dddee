package tftp

// Benchmarks of the packet codec, the memory store and whole transfers over
// loopback against an in-process server. CI runs them once each:
//
//	go test -run '^$' -bench . -benchtime=1x
//
// For numbers, run them longer and profile, for example:
//
//	go test -run '^$' -bench 'Get/' -benchtime=3s -cpuprofile cpu.out -memprofile mem.out
//	go tool pprof -top cpu.out
//
// The transfer benchmarks use benchClient, a minimal TFTP client that does
// not allocate per packet, so that allocations counted by b.ReportAllocs
// are (apart from one socket per transfer) the server's.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-tftp/tftp/store"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	// The file log writer, so the transfer benchmarks pay for the access
	// log like a production server without flooding the output.
	_ "github.com/caddyserver/caddy/v2/modules/logging"
)

// ---- packet codec ----

var benchRequests = []struct {
	name string
	pkt  []byte
}{
	{"plain", appendRequest(nil, opRRQ, "pxelinux.0", "octet")},
	{"options", appendRequest(nil, opRRQ, "boot/grub/x86_64-efi/core.efi", "octet",
		option{"tsize", "0"}, option{"blksize", "1468"}, option{"windowsize", "16"}, option{"timeout", "1"})},
	{"uefi", appendRequest(nil, opRRQ, "EFI/BOOT/BOOTX64.EFI", "Octet",
		option{"blksize", "1468"}, option{"TSIZE", "0"})},
}

func BenchmarkParseRequest(b *testing.B) {
	for _, r := range benchRequests {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(r.pkt)))
			for b.Loop() {
				if _, err := parseRequest(r.pkt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNegotiate(b *testing.B) {
	pol := negotiationPolicy{maxBlockSize: maxBlockSize, maxWindowSize: 64, timeout: time.Second}
	for _, r := range benchRequests {
		req, err := parseRequest(r.pkt)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p := negotiate(&req, pol, 1<<20)
				if p.blockSize == 0 {
					b.Fatal("no block size")
				}
			}
		})
	}
}

func BenchmarkAppendAck(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(headerLen)
	buf := make([]byte, 0, 16)
	var blk uint16
	for b.Loop() {
		buf = appendAck(buf[:0], blk)
		blk++
	}
}

func BenchmarkPutDataHeader(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(headerLen)
	buf := make([]byte, headerLen+1468)
	var blk uint16
	for b.Loop() {
		putDataHeader(buf, blk)
		blk++
	}
}

func BenchmarkParseBlockPacket(b *testing.B) {
	b.ReportAllocs()
	pkt := make([]byte, headerLen+1468)
	putDataHeader(pkt, 7)
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if blk, _, ok := parseBlockPacket(pkt); !ok || blk != 7 || opcode(pkt) != opDATA {
			b.Fatal("bad parse")
		}
	}
}

func BenchmarkAppendOACK(b *testing.B) {
	b.ReportAllocs()
	opts := []option{{"tsize", "16777216"}, {"blksize", "1468"}, {"windowsize", "16"}}
	buf := make([]byte, 0, 512)
	for b.Loop() {
		buf = appendOACK(buf[:0], opts)
	}
}

// ---- memory store ----

func benchMemStore() *MemoryStore {
	return &MemoryStore{MaxBytes: 1 << 40, MaxFileSize: 1 << 40, data: newMemData()}
}

// benchUpload writes data into the store as the server does: one Write per
// block of blksize bytes, then Commit. With tsize the size is declared up
// front, as clients sending the tsize option do.
func benchUpload(tb testing.TB, m *MemoryStore, name string, data []byte, blksize int, tsize bool) {
	size := int64(-1)
	if tsize {
		size = int64(len(data))
	}
	up, err := m.Create(name, store.CreateOptions{Overwrite: true, Size: size})
	if err != nil {
		tb.Fatal(err)
	}
	for off := 0; off < len(data); off += blksize {
		if _, err := up.Write(data[off:min(off+blksize, len(data))]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := up.Commit(); err != nil {
		tb.Fatal(err)
	}
}

var benchStoreSizes = []struct {
	name string
	size int
}{
	{"1KiB", 1 << 10},
	{"1MiB", 1 << 20},
	{"16MiB", 16 << 20},
}

// BenchmarkMemStorePut is one upload (Create, Write per 1468-byte block,
// Commit) into the memory store.
func BenchmarkMemStorePut(b *testing.B) {
	for _, sz := range benchStoreSizes {
		data := benchContent(sz.size, 1)
		for _, tsize := range []bool{false, true} {
			b.Run(fmt.Sprintf("size=%s/tsize=%v", sz.name, tsize), func(b *testing.B) {
				m := benchMemStore()
				b.ReportAllocs()
				b.SetBytes(int64(sz.size))
				for b.Loop() {
					benchUpload(b, m, "f", data, 1468, tsize)
				}
			})
		}
	}
}

// BenchmarkMemStoreRead is Open plus ReadAt of every block of a file, as a
// read transfer does it.
func BenchmarkMemStoreRead(b *testing.B) {
	for _, sz := range benchStoreSizes {
		for _, bs := range []int{512, 1468, 65464} {
			if bs > sz.size && bs != 512 {
				continue
			}
			b.Run(fmt.Sprintf("size=%s/blksize=%d", sz.name, bs), func(b *testing.B) {
				m := benchMemStore()
				benchUpload(b, m, "f", benchContent(sz.size, 2), 1468, true)
				buf := make([]byte, bs)
				b.ReportAllocs()
				b.SetBytes(int64(sz.size))
				for b.Loop() {
					f, err := m.Open("f")
					if err != nil {
						b.Fatal(err)
					}
					for off := int64(0); off < f.Size(); off += int64(bs) {
						if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
							b.Fatal(err)
						}
					}
					f.Close()
				}
			})
		}
	}
}

// BenchmarkMemStoreHeap fills a store by uploads and reports the live heap
// it takes per byte stored ("heap/stored"; the target is at most 1.05).
func BenchmarkMemStoreHeap(b *testing.B) {
	cases := []struct {
		name  string
		size  int
		files int
	}{
		{"1KiB", 1 << 10, 4096},
		{"1500B", 1500, 4096},
		{"64KiB+1", 64<<10 + 1, 256},
		{"1MiB", 1 << 20, 32},
		{"16MiB+1", 16<<20 + 1, 2},
	}
	for _, c := range cases {
		data := benchContent(c.size, 3)
		for _, tsize := range []bool{false, true} {
			b.Run(fmt.Sprintf("size=%s/tsize=%v", c.name, tsize), func(b *testing.B) {
				b.ReportAllocs()
				stored := int64(c.size) * int64(c.files)
				b.SetBytes(stored)
				names := make([]string, c.files)
				for i := range names {
					names[i] = "dir/file-" + strconv.Itoa(i) + ".bin"
				}
				var ratio float64
				for b.Loop() {
					before := benchLiveHeap()
					m := benchMemStore()
					for _, name := range names {
						benchUpload(b, m, name, data, 1468, tsize)
					}
					after := benchLiveHeap()
					if _, n := m.Usage(); n != stored {
						b.Fatalf("store holds %d bytes, want %d", n, stored)
					}
					ratio = float64(after-before) / float64(stored)
					runtime.KeepAlive(m)
				}
				b.ReportMetric(ratio, "heap/stored")
			})
		}
	}
}

// benchLiveHeap returns the live heap after a full collection.
func benchLiveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// ---- transfers over loopback ----

// benchContent returns deterministic pseudo-random bytes.
func benchContent(n int, seed uint64) []byte {
	b := make([]byte, n+7)
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := 0; i < n; i += 8 {
		x += 0x9E3779B97F4A7C15
		z := x
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		binary.LittleEndian.PutUint64(b[i:], z^(z>>31))
	}
	return b[:n:n]
}

// benchServer starts an in-process server on a free loopback port. The
// access log goes to a file so that its cost (one JSON line per transfer)
// is measured as in production without flooding the benchmark output.
func benchServer(b *testing.B, extra ...string) netip.AddrPort {
	b.Helper()
	port := freePort(b)
	logFile := filepath.Join(b.TempDir(), "caddy.log")
	cf := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tlog {\n\t\toutput file %s\n\t}\n\ttftp {\n\t\tlisten udp4/127.0.0.1:%d\n\t\tgrace_period 1s\n%s\n\t}\n}\n",
		logFile, port, lines(extra...))
	startCaddy(b, string(caddyfile.Format([]byte(cf))))
	return loopback4(port)
}

// benchLoad uploads data to the server (big blocks, a window: fast).
func benchLoad(b *testing.B, server netip.AddrPort, name string, data []byte) {
	b.Helper()
	c := newBenchClient()
	if err := c.put(server, name, data, 65464, 16); err != nil {
		b.Fatalf("loading %s: %v", name, err)
	}
	// Make sure the upload is committed before a benchmark reads it.
	if err := c.get(server, name, data, 65464, 16); err != nil {
		b.Fatalf("reading back %s: %v", name, err)
	}
}

const benchGetSize = 4 << 20

// BenchmarkGet is one read of a 4 MiB file per op, lock-step at each block
// size and with windows at 1468 bytes.
func BenchmarkGet(b *testing.B) {
	server := benchServer(b)
	data := benchContent(benchGetSize, 4)
	benchLoad(b, server, "f4m", data)
	cases := []struct{ bs, w int }{
		{512, 1}, {1468, 1}, {8192, 1}, {65464, 1},
		{1468, 4}, {1468, 16}, {1468, 64},
	}
	for _, tc := range cases {
		b.Run(fmt.Sprintf("blksize=%d/windowsize=%d", tc.bs, tc.w), func(b *testing.B) {
			c := newBenchClient()
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			blocks := int64(0)
			for b.Loop() {
				if err := c.get(server, "f4m", data, tc.bs, tc.w); err != nil {
					b.Fatal(err)
				}
				blocks += c.blocks
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(blocks), "ns/block")
			if c.retrans > 0 {
				b.ReportMetric(float64(c.retrans), "retransmits")
			}
		})
	}
}

// BenchmarkPut is one 4 MiB upload per op (no tsize, as most clients).
func BenchmarkPut(b *testing.B) {
	server := benchServer(b)
	data := benchContent(benchGetSize, 5)
	for _, bs := range []int{512, 1468} {
		b.Run(fmt.Sprintf("blksize=%d", bs), func(b *testing.B) {
			c := newBenchClient()
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			blocks := int64(0)
			for b.Loop() {
				if err := c.put(server, "up.bin", data, bs, 1); err != nil {
					b.Fatal(err)
				}
				blocks += c.blocks
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(blocks), "ns/block")
			// The last upload must be intact.
			if err := c.get(server, "up.bin", data, 65464, 16); err != nil {
				b.Fatalf("reading back: %v", err)
			}
		})
	}
}

// BenchmarkGetAllocsPerBlock measures the server's steady-state allocations
// per DATA block: all allocations in the process during 16 MiB gets,
// divided by the blocks sent. The benchmark client allocates only when it
// opens its socket (once per transfer), so this is the server's per-packet
// figure up to ~20 allocations per transfer.
func BenchmarkGetAllocsPerBlock(b *testing.B) {
	server := benchServer(b)
	data := benchContent(16<<20, 6)
	benchLoad(b, server, "f16m", data)
	for _, tc := range []struct{ bs, w int }{{512, 1}, {1468, 1}, {1468, 16}} {
		b.Run(fmt.Sprintf("blksize=%d/windowsize=%d", tc.bs, tc.w), func(b *testing.B) {
			c := newBenchClient()
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			blocks := int64(0)
			for b.Loop() {
				if err := c.get(server, "f16m", data, tc.bs, tc.w); err != nil {
					b.Fatal(err)
				}
				blocks += c.blocks
			}
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(blocks), "allocs/block")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(blocks), "B/block")
		})
	}
}

// BenchmarkGetSmall measures the per-transfer cost: one 1 KiB get per op,
// sequentially and from parallel clients. allocs/op includes the client's
// socket (about 20 allocations).
func BenchmarkGetSmall(b *testing.B) {
	server := benchServer(b)
	data := benchContent(1<<10, 7)
	benchLoad(b, server, "f1k", data)
	// What the client itself allocates per transfer (its socket), to
	// report the server's share.
	clientAllocs := testing.AllocsPerRun(20, func() {
		c := benchClient{}
		if err := c.open(); err != nil {
			b.Fatal(err)
		}
		c.close()
	})
	b.Run("sequential", func(b *testing.B) {
		c := newBenchClient()
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for b.Loop() {
			if err := c.get(server, "f1k", data, 1468, 1); err != nil {
				b.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N)-clientAllocs, "server-allocs/transfer")
	})
	b.Run("parallel", func(b *testing.B) {
		const parallelism = 8
		clients := make(chan *benchClient, parallelism*runtime.GOMAXPROCS(0))
		for range cap(clients) {
			clients <- newBenchClient()
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		b.SetParallelism(parallelism)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			c := <-clients
			for pb.Next() {
				if err := c.get(server, "f1k", data, 1468, 1); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// ---- benchmark client ----

// benchClient is a minimal TFTP client that allocates nothing per packet:
// all buffers are reused across transfers. Each transfer opens a new socket,
// because the server ignores a repeated request from an address whose
// previous transfer it is still winding up.
type benchClient struct {
	conn    *net.UDPConn
	rbuf    []byte
	req     []byte
	ack     []byte
	data    []byte
	timeout time.Duration
	retries int

	blocks  int64 // DATA packets accepted (get) or sent (put) in the last transfer
	retrans int64 // packets resent after a timeout, over the client's life
}

func newBenchClient() *benchClient {
	return &benchClient{
		rbuf:    make([]byte, 65536),
		req:     make([]byte, 0, 256),
		ack:     make([]byte, 0, 4),
		data:    make([]byte, headerLen+maxBlockSize),
		timeout: time.Second,
		retries: 5,
	}
}

var errBenchTimeout = errors.New("timed out")

func (c *benchClient) open() error {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	c.conn = conn
	return nil
}

func (c *benchClient) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// request builds an RRQ or WRQ; 512-byte lock-step sends no options.
func (c *benchClient) request(op uint16, name string, bs, w int) []byte {
	b := binary.BigEndian.AppendUint16(c.req[:0], op)
	b = append(append(b, name...), 0)
	b = append(b, "octet\x00"...)
	if bs != defaultBlockSize {
		b = append(b, "blksize\x00"...)
		b = strconv.AppendInt(b, int64(bs), 10)
		b = append(b, 0)
	}
	if w != 1 {
		b = append(b, "windowsize\x00"...)
		b = strconv.AppendInt(b, int64(w), 10)
		b = append(b, 0)
	}
	c.req = b
	return b
}

// recv waits for the next packet from peer (any sender while peer is not
// yet known) and returns it with its sender.
func (c *benchClient) recv(peer netip.AddrPort) ([]byte, netip.AddrPort, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(c.timeout))
	for {
		n, from, err := c.conn.ReadFromUDPAddrPort(c.rbuf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, from, errBenchTimeout
			}
			return nil, from, err
		}
		if peer.IsValid() && from != peer {
			continue
		}
		pkt := c.rbuf[:n]
		if n < headerLen {
			continue
		}
		if opcode(pkt) == opERROR {
			code, msg, _ := parseError(pkt)
			return nil, from, fmt.Errorf("server error %d: %s", code, msg)
		}
		return pkt, from, nil
	}
}

// benchOACK reads blksize and windowsize from an OACK without allocating.
func benchOACK(pkt []byte, bs, w *int) {
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
		v := rest[:j]
		rest = rest[j+1:]
		n := 0
		for _, d := range v {
			n = n*10 + int(d-'0')
		}
		switch {
		case bytes.EqualFold(k, []byte("blksize")):
			*bs = n
		case bytes.EqualFold(k, []byte("windowsize")):
			*w = n
		}
	}
}

// get reads name and checks every byte against want.
func (c *benchClient) get(server netip.AddrPort, name string, want []byte, reqBS, reqW int) error {
	if err := c.open(); err != nil {
		return err
	}
	defer c.close()
	if reqBS*reqW > 128<<10 {
		// A window of big blocks overflows the default receive buffer.
		_ = c.conn.SetReadBuffer(4 << 20)
	}
	c.blocks = 0
	last, lastTo := c.request(opRRQ, name, reqBS, reqW), server
	if _, err := c.conn.WriteToUDPAddrPort(last, lastTo); err != nil {
		return err
	}
	var peer netip.AddrPort
	bs, w := defaultBlockSize, 1
	expected := uint64(1)
	inWindow, retries := 0, 0
	nacked := false
	for {
		pkt, from, err := c.recv(peer)
		if err == errBenchTimeout {
			if retries++; retries > c.retries {
				return fmt.Errorf("get %s: timed out at block %d", name, expected)
			}
			c.retrans++
			if peer.IsValid() {
				// Acknowledge what arrived in order, so a server whose
				// window tail was lost resends from there.
				c.ack = appendAck(c.ack[:0], uint16(expected-1))
				last, inWindow = c.ack, 0
			}
			if _, err := c.conn.WriteToUDPAddrPort(last, lastTo); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		retries = 0
		switch opcode(pkt) {
		case opOACK:
			if peer.IsValid() {
				continue
			}
			peer = from
			benchOACK(pkt, &bs, &w)
			c.ack = appendAck(c.ack[:0], 0)
			last, lastTo = c.ack, peer
			if _, err := c.conn.WriteToUDPAddrPort(last, lastTo); err != nil {
				return err
			}
		case opDATA:
			if !peer.IsValid() {
				peer, lastTo = from, from
			}
			blk, payload, _ := parseBlockPacket(pkt)
			switch delta := blk - uint16(expected); {
			case delta == 0:
				off := int(expected-1) * bs
				if len(payload) > bs || off+len(payload) > len(want) || !bytes.Equal(payload, want[off:off+len(payload)]) {
					return fmt.Errorf("get %s: block %d does not match", name, expected)
				}
				c.blocks++
				expected++
				inWindow++
				nacked = false
				if len(payload) < bs {
					if off+len(payload) != len(want) {
						return fmt.Errorf("get %s: got %d bytes, want %d", name, off+len(payload), len(want))
					}
					c.ack = appendAck(c.ack[:0], blk)
					_, err := c.conn.WriteToUDPAddrPort(c.ack, peer)
					return err
				}
				if inWindow >= w {
					inWindow = 0
					c.ack = appendAck(c.ack[:0], blk)
					last = c.ack
					if _, err := c.conn.WriteToUDPAddrPort(last, peer); err != nil {
						return err
					}
				}
			case delta < 0x8000:
				if !nacked {
					nacked, inWindow = true, 0
					c.ack = appendAck(c.ack[:0], uint16(expected-1))
					last = c.ack
					if _, err := c.conn.WriteToUDPAddrPort(last, peer); err != nil {
						return err
					}
				}
			}
		}
	}
}

// put writes data as name.
func (c *benchClient) put(server netip.AddrPort, name string, data []byte, reqBS, reqW int) error {
	if err := c.open(); err != nil {
		return err
	}
	defer c.close()
	c.blocks = 0
	req := c.request(opWRQ, name, reqBS, reqW)
	if _, err := c.conn.WriteToUDPAddrPort(req, server); err != nil {
		return err
	}
	var peer netip.AddrPort
	bs, w := defaultBlockSize, 1
	for retries := 0; ; {
		pkt, from, err := c.recv(netip.AddrPort{})
		if err == errBenchTimeout {
			if retries++; retries > c.retries {
				return fmt.Errorf("put %s: no answer", name)
			}
			c.retrans++
			if _, err := c.conn.WriteToUDPAddrPort(req, server); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if opcode(pkt) == opOACK {
			benchOACK(pkt, &bs, &w)
			peer = from
			break
		}
		if blk, _, _ := parseBlockPacket(pkt); opcode(pkt) == opACK && blk == 0 {
			peer = from
			break
		}
	}
	lastBlock := uint64(len(data)/bs) + 1
	base, next := uint64(1), uint64(1)
	retries := 0
	for base <= lastBlock {
		for next < base+uint64(w) && next <= lastBlock {
			off := int(next-1) * bs
			end := min(off+bs, len(data))
			p := c.data[:headerLen+end-off]
			putDataHeader(p, uint16(next))
			copy(p[headerLen:], data[off:end])
			if _, err := c.conn.WriteToUDPAddrPort(p, peer); err != nil {
				return err
			}
			c.blocks++
			next++
		}
		pkt, _, err := c.recv(peer)
		if err == errBenchTimeout {
			if retries++; retries > c.retries {
				return fmt.Errorf("put %s: timed out at block %d", name, base)
			}
			c.retrans += int64(next - base)
			next = base
			continue
		}
		if err != nil {
			return err
		}
		if opcode(pkt) != opACK {
			continue
		}
		blk, _, _ := parseBlockPacket(pkt)
		delta, ok := ackedBlocks(blk, base, next)
		if !ok || delta == 0 {
			continue
		}
		retries = 0
		base += delta
		next = base
	}
	return nil
}

// ---- the file_system store against the memory store ----

// benchStoreServer starts a server on each of a memory store and a
// file_system store over dir, and returns their addresses.
func benchStoreServer(b *testing.B, dir string) (mem, disk netip.AddrPort) {
	b.Helper()
	memPort, diskPort := freePort(b), freePort(b)
	logFile := filepath.Join(b.TempDir(), "caddy.log")
	cf := fmt.Sprintf(`{
	admin off
	persist_config off
	log {
		output file %s
	}
	tftp {
		grace_period 1s
		store mem memory {
			max_file_size 1GiB
		}
		store disk file_system {
			root %s
		}
		server mem {
			listen udp4/127.0.0.1:%d
			store mem
			max_transfers_per_host 1024
		}
		server disk {
			listen udp4/127.0.0.1:%d
			store disk
			max_transfers_per_host 1024
		}
	}
}
`, logFile, dir, memPort, diskPort)
	startCaddy(b, string(caddyfile.Format([]byte(cf))))
	return loopback4(memPort), loopback4(diskPort)
}

// BenchmarkStoreRead is one 16 MiB read per op from the memory store and
// from the file_system store (page cache), lock-step at 1468 bytes and with
// a window of 16; the README reports the disk/memory ratio of ns/op.
func BenchmarkStoreRead(b *testing.B) {
	dir := b.TempDir()
	data := benchContent(16<<20, 6)
	if err := os.WriteFile(filepath.Join(dir, "f16m"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	mem, disk := benchStoreServer(b, dir)
	benchLoad(b, mem, "f16m", data)
	for _, tc := range []struct{ bs, w int }{{1468, 1}, {1468, 16}} {
		for _, s := range []struct {
			name   string
			server netip.AddrPort
		}{{"memory", mem}, {"file_system", disk}} {
			b.Run(fmt.Sprintf("store=%s/blksize=%d/windowsize=%d", s.name, tc.bs, tc.w), func(b *testing.B) {
				c := newBenchClient()
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					if err := c.get(s.server, "f16m", data, tc.bs, tc.w); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkStoreManyReaders runs 64 concurrent reads of one 100 MiB file
// per op from each store and reports how much the process's resident
// memory grew at its peak ("rss-MiB"), which for the file_system store
// stays far below the file's size: readers share the page cache, and no
// reader copies the file.
func BenchmarkStoreManyReaders(b *testing.B) {
	const readers, size = 64, 100 << 20
	dir := b.TempDir()
	data := benchContent(size, 7)
	if err := os.WriteFile(filepath.Join(dir, "f100m"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	mem, disk := benchStoreServer(b, dir)
	for _, s := range []struct {
		name   string
		server netip.AddrPort
	}{{"file_system", disk}, {"memory", mem}} {
		b.Run("store="+s.name, func(b *testing.B) {
			if s.name == "memory" {
				benchLoad(b, mem, "f100m", data)
			}
			var peak int64
			b.SetBytes(int64(readers) * size)
			for b.Loop() {
				runtime.GC()
				base := benchRSS(b)
				errs := make(chan error, readers)
				for range readers {
					go func() {
						c := newBenchClient()
						errs <- c.get(s.server, "f100m", data, 65464, 8)
					}()
				}
				ticker := time.NewTicker(20 * time.Millisecond)
				for done := 0; done < readers; {
					select {
					case err := <-errs:
						if err != nil {
							b.Fatal(err)
						}
						done++
					case <-ticker.C:
						peak = max(peak, benchRSS(b)-base)
					}
				}
				ticker.Stop()
			}
			b.ReportMetric(float64(peak)/(1<<20), "rss-MiB")
		})
	}
}

// benchRSS returns the process's resident set size in bytes.
func benchRSS(b *testing.B) int64 {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(string(raw))
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}
