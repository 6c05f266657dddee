package tftp

// End-to-end interoperability tests with the real TFTP clients (curl,
// tftp-hpa, atftp and busybox; see clients_test.go). A missing client fails
// the test, it never skips.
//
// Besides comparing files byte for byte, the option tests run each client
// through interopRelay, a UDP relay that records every packet, so they can
// check what was really negotiated on the wire (the request, the OACK, the
// DATA block sizes, how often the receiver acknowledged).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// interopNames are the remote names every client must handle.
var interopNames = []string{"f.bin", "pxelinux.cfg/default", "dir/sub/file.bin", "with space.bin"}

// interopClient returns the realClients entry called name and fails the test
// when its binary is not installed.
func interopClient(t testing.TB, name string) tftpClient {
	t.Helper()
	for _, c := range realClients {
		if c.name == name {
			requireClient(t, c.bin)
			return c
		}
	}
	t.Fatalf("no real client %q", name)
	return tftpClient{}
}

// requireAllClients fails the test unless every real client is installed.
func requireAllClients(t testing.TB) {
	t.Helper()
	for _, c := range realClients {
		requireClient(t, c.bin)
	}
}

// interopPorts returns n distinct free ports.
func interopPorts(t testing.TB, n int) []uint16 {
	t.Helper()
	var ports []uint16
	for len(ports) < n {
		if p := freePort(t); !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

// interopFamilies addresses port over IPv4 and IPv6 loopback.
func interopFamilies(port uint16) []netip.AddrPort {
	return []netip.AddrPort{loopback4(port), loopback6(port)}
}

func familyName(ap netip.AddrPort) string {
	if ap.Addr().Is4() {
		return "v4"
	}
	return "v6"
}

// writeLocal writes data to a new file in dir and returns its path.
func writeLocal(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// readLocal reads a file a client downloaded.
func readLocal(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading downloaded file: %v", err)
	}
	return b
}

// requireSameBytes fails unless got equals want, reporting where they differ.
func requireSameBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: got %d bytes, want %d; first difference at offset %d (block %d at 512)", what, len(got), len(want), i, i/512+1)
}

// interopPutGet uploads data with put as remote, downloads it with get and
// requires the downloaded file to equal data.
func interopPutGet(t *testing.T, put, get tftpClient, putServer, getServer netip.AddrPort, remote string, data []byte, o clientOpts) {
	t.Helper()
	dir := t.TempDir()
	src := writeLocal(t, dir, "src", data)
	dst := filepath.Join(dir, "dst")
	if err := put.put(t.Context(), putServer, remote, src, o); err != nil {
		t.Fatalf("%s put %q (%d bytes) via %s: %v", put.name, remote, len(data), putServer, err)
	}
	if err := get.get(t.Context(), getServer, remote, dst, o); err != nil {
		t.Fatalf("%s get %q (%d bytes) via %s: %v", get.name, remote, len(data), getServer, err)
	}
	requireSameBytes(t, fmt.Sprintf("%s put, %s get of %q", put.name, get.name, remote), readLocal(t, dst), data)
}

// TestInteropRoundTrip is the acceptance test of the tftp app: every real
// client puts and gets back every size of roundTripSizes, over IPv4 and
// IPv6, under each of interopNames. Each client has its own server and
// store, so it can use the names as they are while the clients run in
// parallel.
func TestInteropRoundTrip(t *testing.T) {
	requireAllClients(t)
	ports := interopPorts(t, len(realClients))
	var body []string
	for i, c := range realClients {
		body = append(body, fmt.Sprintf("server rt-%s {\n\tlisten :%d\n\tstore rt-%s memory\n}", c.name, ports[i], c.name))
	}
	startCaddy(t, tftpCaddyfile(lines(body...)))
	t.Run("clients", func(t *testing.T) {
		for i, c := range realClients {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				for _, server := range interopFamilies(ports[i]) {
					for _, name := range interopNames {
						for _, size := range roundTripSizes {
							t.Run(fmt.Sprintf("%s/%s/%d", familyName(server), name, size), func(t *testing.T) {
								interopPutGet(t, c, c, server, server, name, randomBytes(t, size), clientOpts{})
							})
						}
					}
				}
			})
		}
	})
}

// TestInteropCrossClient uploads with each client and downloads with every
// other one, uploading over one address family and downloading over the
// other.
func TestInteropCrossClient(t *testing.T) {
	requireAllClients(t)
	port := startDefaultServer(t)
	fams := interopFamilies(port)
	t.Run("pairs", func(t *testing.T) {
		i := 0
		for _, put := range realClients {
			for _, get := range realClients {
				if put.name == get.name {
					continue
				}
				putServer, getServer := fams[i%2], fams[(i+1)%2]
				i++
				t.Run(put.name+"-to-"+get.name, func(t *testing.T) {
					t.Parallel()
					for _, size := range []int{0, 513, 65535, 1 << 20} {
						t.Run(strconv.Itoa(size), func(t *testing.T) {
							remote := fmt.Sprintf("cross/%s-to-%s/%d.bin", put.name, get.name, size)
							interopPutGet(t, put, get, putServer, getServer, remote, randomBytes(t, size), clientOpts{})
						})
					}
				})
			}
		}
	})
}

// TestInteropMissingFile requires every client to fail a download of a file
// that does not exist, and to report the server's ERROR 1.
func TestInteropMissingFile(t *testing.T) {
	requireAllClients(t)
	port := startDefaultServer(t)
	// How each client reports ERROR 1 "file not found"; exit -1 means the
	// client exits 0 and the wrapper finds the error in its output.
	want := map[string]struct {
		exit int
		out  *regexp.Regexp
	}{
		"curl":     {68, regexp.MustCompile(`TFTP error: file not found`)},
		"tftp-hpa": {-1, regexp.MustCompile(`(?m)^Error code 1: file not found`)},
		"atftp":    {255, regexp.MustCompile(`error received from server <file not found>`)},
		"busybox":  {1, regexp.MustCompile(`server error: \(1\) file not found`)},
	}
	for _, c := range realClients {
		for _, server := range interopFamilies(port) {
			t.Run(c.name+"/"+familyName(server), func(t *testing.T) {
				w, ok := want[c.name]
				if !ok {
					t.Fatalf("no expectation for client %s", c.name)
				}
				dst := filepath.Join(t.TempDir(), "dst")
				err := c.get(t.Context(), server, "no/such/file-"+c.name, dst, clientOpts{})
				if err == nil {
					t.Fatalf("get of a missing file succeeded")
				}
				exit := -1
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					exit = ee.ExitCode()
				}
				if exit != w.exit {
					t.Errorf("exit status %d, want %d: %v", exit, w.exit, err)
				}
				if !w.out.MatchString(err.Error()) {
					t.Errorf("output does not match %q: %v", w.out, err)
				}
				if b, err := os.ReadFile(dst); err == nil && len(b) > 0 {
					t.Errorf("client wrote %d bytes for a missing file", len(b))
				}
			})
		}
	}
}

// interopPacket is one datagram seen by interopRelay.
type interopPacket struct {
	fromServer bool
	op         uint16
	block      uint16 // DATA and ACK block, ERROR code
	size       int    // DATA payload length
	raw        []byte // the whole packet; for DATA only when the relay keeps payloads
}

// interopRelay sits between one client and the server for ONE transfer and
// records every packet. The client talks to the relay's address; the relay
// forwards to the server's request port until the server answers, then to
// the server's transfer port.
type interopRelay struct {
	front, back *net.UDPConn
	keepData    bool
	wg          sync.WaitGroup

	mu      sync.Mutex
	server  netip.AddrPort
	learned bool
	client  netip.AddrPort
	packets []interopPacket
	faults  *relayFaults // nil: every packet is forwarded once
}

// startRelay starts a relay to server; keepData keeps DATA payloads (leave
// it off for big files).
func startRelay(t testing.TB, server netip.AddrPort, keepData bool) *interopRelay {
	t.Helper()
	network := "udp4"
	if server.Addr().Is6() {
		network = "udp6"
	}
	local := net.UDPAddrFromAddrPort(netip.AddrPortFrom(server.Addr(), 0))
	front, err := net.ListenUDP(network, local)
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.ListenUDP(network, local)
	if err != nil {
		front.Close()
		t.Fatal(err)
	}
	for _, c := range []*net.UDPConn{front, back} {
		// Room for a window of big blocks.
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
	}
	r := &interopRelay{front: front, back: back, keepData: keepData, server: server}
	r.wg.Add(2)
	go r.pump(false)
	go r.pump(true)
	t.Cleanup(func() {
		front.Close()
		back.Close()
		r.wg.Wait()
	})
	return r
}

// addr is where the client must send its request.
func (r *interopRelay) addr() netip.AddrPort {
	return r.front.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (r *interopRelay) pump(fromServer bool) {
	defer r.wg.Done()
	in, out := r.front, r.back
	if fromServer {
		in, out = r.back, r.front
	}
	buf := make([]byte, 1<<16)
	for {
		n, from, err := in.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		pkt := buf[:n]
		r.mu.Lock()
		var to netip.AddrPort
		if fromServer {
			if !r.learned {
				r.server, r.learned = from, true
			}
			to = r.client
		} else {
			if !r.client.IsValid() {
				r.client = from
			}
			to = r.server
		}
		p := interopPacket{fromServer: fromServer}
		if n >= 2 {
			p.op = binary.BigEndian.Uint16(pkt)
		}
		if n >= 4 {
			p.block = binary.BigEndian.Uint16(pkt[2:])
		}
		if p.op == opDATA {
			p.size = max(n-4, 0)
		}
		if p.op != opDATA || r.keepData {
			p.raw = bytes.Clone(pkt)
		}
		r.packets = append(r.packets, p)
		copies := 1
		if r.faults != nil {
			copies = r.faults.copies(fromServer)
		}
		r.mu.Unlock()
		for range copies {
			if to.IsValid() {
				_, _ = out.WriteToUDPAddrPort(pkt, to)
			}
		}
	}
}

// trace returns a copy of the packets seen so far. Everything the client
// received was recorded before it was forwarded, so once the client has
// exited the trace holds every packet it saw.
func (r *interopRelay) trace() interopTrace {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.packets)
}

type interopTrace []interopPacket

// interopFields splits NUL-terminated strings.
func interopFields(b []byte) []string {
	var f []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			f = append(f, string(b)+"<unterminated>")
			break
		}
		f = append(f, string(b[:i]))
		b = b[i+1:]
	}
	return f
}

// interopOptions turns name, value pairs into a map with lower-case names.
func interopOptions(f []string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(f); i += 2 {
		m[strings.ToLower(f[i])] = f[i+1]
	}
	return m
}

// request returns the client's RRQ/WRQ: opcode, mode and options.
func (tr interopTrace) request() (op uint16, mode string, opts map[string]string, ok bool) {
	for _, p := range tr {
		if !p.fromServer && (p.op == opRRQ || p.op == opWRQ) {
			f := interopFields(p.raw[2:])
			if len(f) < 2 {
				return p.op, "", nil, false
			}
			return p.op, strings.ToLower(f[1]), interopOptions(f[2:]), true
		}
	}
	return 0, "", nil, false
}

// oack returns the options of the server's OACK, or nil when it sent none.
func (tr interopTrace) oack() map[string]string {
	for _, p := range tr {
		if p.fromServer && p.op == opOACK {
			return interopOptions(interopFields(p.raw[2:]))
		}
	}
	return nil
}

// data returns the DATA packets one side sent.
func (tr interopTrace) data(fromServer bool) []interopPacket {
	var d []interopPacket
	for _, p := range tr {
		if p.op == opDATA && p.fromServer == fromServer {
			d = append(d, p)
		}
	}
	return d
}

// count counts the packets with opcode op one side sent.
func (tr interopTrace) count(fromServer bool, op uint16) int {
	n := 0
	for _, p := range tr {
		if p.op == op && p.fromServer == fromServer {
			n++
		}
	}
	return n
}

// inOrder returns the DATA packets one side sent in the order a receiver
// takes them: the first copy of each next block, skipping retransmissions.
// After block 65535 it takes block 0 (or block 1, the other rollover
// convention).
func (tr interopTrace) inOrder(fromServer bool) []interopPacket {
	var seq []interopPacket
	next := uint16(1)
	for _, p := range tr.data(fromServer) {
		if p.block == next || (next == 0 && p.block == 1) {
			seq = append(seq, p)
			next = p.block + 1
		}
	}
	return seq
}

// payload concatenates the payloads of inOrder (the relay must keep data).
func (tr interopTrace) payload(fromServer bool) []byte {
	var b []byte
	for _, p := range tr.inOrder(fromServer) {
		b = append(b, p.raw[4:]...)
	}
	return b
}

// String summarises a trace for failure messages.
func (tr interopTrace) String() string {
	var b strings.Builder
	names := map[uint16]string{opRRQ: "RRQ", opWRQ: "WRQ", opDATA: "DATA", opACK: "ACK", opERROR: "ERROR", opOACK: "OACK"}
	dataRun := 0
	flush := func() {
		if dataRun > 0 {
			fmt.Fprintf(&b, "  ... %d more DATA/ACK\n", dataRun)
			dataRun = 0
		}
	}
	shown := 0
	for _, p := range tr {
		if (p.op == opDATA || p.op == opACK) && shown > 12 {
			dataRun++
			continue
		}
		flush()
		dir := "client>"
		if p.fromServer {
			dir = "server>"
		}
		switch p.op {
		case opDATA:
			fmt.Fprintf(&b, "  %s DATA %d (%d bytes)\n", dir, p.block, p.size)
		case opACK:
			fmt.Fprintf(&b, "  %s ACK %d\n", dir, p.block)
		case opRRQ, opWRQ, opERROR, opOACK:
			fmt.Fprintf(&b, "  %s %s %q\n", dir, names[p.op], interopFields(p.raw[2:]))
		default:
			fmt.Fprintf(&b, "  %s %q\n", dir, p.raw)
		}
		shown++
	}
	flush()
	return b.String()
}

// interopOptCase is one option test: a client with options, a file size,
// the options the client must put in its request, and what the transfer
// must look like on the wire.
type interopOptCase struct {
	name    string
	client  string
	opts    clientOpts
	size    int
	request map[string]string // options the client must request ("*": any value)
	blksize int               // negotiated block size
	window  int               // negotiated window size
}

// TestInteropOptions runs each client with the option extensions
// (RFC 2347/2348/2349/7440) through a recording relay: a put and a get with
// the options, then a plain get with tftp-hpa (no options) to check the
// store holds exactly the uploaded bytes. Each checks the request carries
// the options, the OACK acknowledges exactly what the server supports,
// DATA blocks have the negotiated size and a window is acknowledged once.
func TestInteropOptions(t *testing.T) {
	requireAllClients(t)
	port := startDefaultServer(t)
	cases := []interopOptCase{
		{name: "curl-default", client: "curl", size: 100_000,
			request: map[string]string{"tsize": "*", "blksize": "512", "timeout": "*"}, blksize: 512, window: 1},
		{name: "curl-default-empty", client: "curl", size: 0,
			request: map[string]string{"tsize": "*", "blksize": "512", "timeout": "*"}, blksize: 512, window: 1},
		{name: "curl-blksize-1468", client: "curl", opts: clientOpts{BlockSize: 1468}, size: 100_000,
			request: map[string]string{"tsize": "*", "blksize": "1468", "timeout": "*"}, blksize: 1468, window: 1},
		{name: "curl-blksize-8192", client: "curl", opts: clientOpts{BlockSize: 8192}, size: 100_000,
			request: map[string]string{"tsize": "*", "blksize": "8192", "timeout": "*"}, blksize: 8192, window: 1},
		{name: "curl-blksize-8192-multiple", client: "curl", opts: clientOpts{BlockSize: 8192}, size: 8192 * 7,
			request: map[string]string{"tsize": "*", "blksize": "8192", "timeout": "*"}, blksize: 8192, window: 1},
		{name: "curl-no-options", client: "curl", opts: clientOpts{NoOptions: true}, size: 100_000,
			request: map[string]string{}, blksize: 512, window: 1},
		{name: "atftp-blksize-1428", client: "atftp", opts: clientOpts{BlockSize: 1428}, size: 100_000,
			request: map[string]string{"blksize": "1428"}, blksize: 1428, window: 1},
		{name: "atftp-tsize", client: "atftp", opts: clientOpts{Tsize: true}, size: 100_000,
			request: map[string]string{"tsize": "*"}, blksize: 512, window: 1},
		{name: "atftp-timeout-2", client: "atftp", opts: clientOpts{Timeout: 2}, size: 100_000,
			request: map[string]string{"timeout": "2"}, blksize: 512, window: 1},
		{name: "atftp-windowsize-8", client: "atftp", opts: clientOpts{WindowSize: 8}, size: 100_000,
			request: map[string]string{"windowsize": "8"}, blksize: 512, window: 8},
		{name: "atftp-all", client: "atftp", opts: clientOpts{BlockSize: 1428, Tsize: true, Timeout: 2, WindowSize: 8}, size: 100_000,
			request: map[string]string{"blksize": "1428", "tsize": "*", "timeout": "2", "windowsize": "8"}, blksize: 1428, window: 8},
		{name: "atftp-all-window-multiple", client: "atftp", opts: clientOpts{BlockSize: 1428, Tsize: true, Timeout: 2, WindowSize: 8}, size: 1428 * 8 * 3,
			request: map[string]string{"blksize": "1428", "tsize": "*", "timeout": "2", "windowsize": "8"}, blksize: 1428, window: 8},
		{name: "tftp-hpa-binary", client: "tftp-hpa", size: 100_000,
			request: map[string]string{}, blksize: 512, window: 1},
		{name: "busybox-blksize-1024", client: "busybox", opts: clientOpts{BlockSize: 1024}, size: 100_000,
			request: map[string]string{"blksize": "1024", "tsize": "*"}, blksize: 1024, window: 1},
		{name: "busybox-default", client: "busybox", size: 100_000,
			request: map[string]string{"tsize": "*"}, blksize: 512, window: 1},
	}
	hpa := interopClient(t, "tftp-hpa")
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			c := interopClient(t, tc.client)
			for _, server := range interopFamilies(port) {
				t.Run(tc.name+"/"+familyName(server), func(t *testing.T) {
					t.Parallel()
					remote := "opts/" + tc.name + "-" + familyName(server) + ".bin"
					data := randomBytes(t, tc.size)
					dir := t.TempDir()
					src := writeLocal(t, dir, "src", data)

					put := startRelay(t, server, true)
					if err := c.put(t.Context(), put.addr(), remote, src, tc.opts); err != nil {
						t.Fatalf("put: %v\ntrace:\n%s", err, put.trace())
					}
					checkOptionTrace(t, "put", put.trace(), tc, opWRQ, data)

					get := startRelay(t, server, true)
					dst := filepath.Join(dir, "dst")
					if err := c.get(t.Context(), get.addr(), remote, dst, tc.opts); err != nil {
						t.Fatalf("get: %v\ntrace:\n%s", err, get.trace())
					}
					requireSameBytes(t, "get with the same options", readLocal(t, dst), data)
					checkOptionTrace(t, "get", get.trace(), tc, opRRQ, data)

					plain := filepath.Join(dir, "plain")
					if err := hpa.get(t.Context(), server, remote, plain, clientOpts{}); err != nil {
						t.Fatalf("plain tftp-hpa get: %v", err)
					}
					requireSameBytes(t, "plain tftp-hpa get of the upload", readLocal(t, plain), data)
				})
			}
		}
	})
}

// checkOptionTrace checks one transfer of tc against its trace.
func checkOptionTrace(t *testing.T, what string, tr interopTrace, tc interopOptCase, wantOp uint16, data []byte) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: %s\ntrace:\n%s", what, fmt.Sprintf(format, args...), tr)
	}
	op, mode, req, ok := tr.request()
	if !ok || op != wantOp {
		fail("no request with opcode %d", wantOp)
		return
	}
	if mode != "octet" {
		fail("mode %q, want octet", mode)
	}
	for name, v := range tc.request {
		if got, ok := req[name]; !ok || (v != "*" && got != v) {
			fail("request option %s=%q (present %v), want %q", name, got, ok, v)
		}
	}
	if len(tc.request) == 0 && len(req) > 0 {
		fail("request carries options %v, want none", req)
	}

	// The OACK must acknowledge exactly the options the server knows.
	want := map[string]string{}
	for name, v := range req {
		switch name {
		case "blksize", "timeout", "windowsize":
			want[name] = v
		case "tsize":
			switch {
			case wantOp == opWRQ:
				want[name] = v // echoed
			case len(data) > 0:
				want[name] = strconv.Itoa(len(data))
			}
			// An empty file's tsize is left out of a read's OACK (curl
			// rejects "tsize 0").
		}
	}
	oack := tr.oack()
	if len(want) == 0 {
		if oack != nil {
			fail("OACK %v, want none (plain RFC 1350 transfer)", oack)
		}
	} else if !mapsEqual(oack, want) {
		fail("OACK %v, want %v", oack, want)
	}
	if v, ok := req["tsize"]; ok && wantOp == opWRQ && v != strconv.Itoa(len(data)) {
		t.Logf("%s: %s sent tsize=%s on a %d-byte upload", what, tc.client, v, len(data))
	}

	// DATA: full blocks of the negotiated size and one short final block.
	fromServer := wantOp == opRRQ
	blocks := tr.inOrder(fromServer)
	wantBlocks := len(data)/tc.blksize + 1
	distinct := len(blocks)
	for i, p := range blocks {
		wantSize := tc.blksize
		if i == wantBlocks-1 {
			wantSize = len(data) % tc.blksize
		}
		if p.size != wantSize {
			fail("DATA %d carries %d bytes, want %d", p.block, p.size, wantSize)
			break
		}
	}
	if distinct != wantBlocks {
		fail("%d distinct DATA blocks, want %d", distinct, wantBlocks)
	}
	if got := tr.payload(fromServer); !bytes.Equal(got, data) {
		fail("DATA payloads on the wire (%d bytes) differ from the file (%d bytes)", len(got), len(data))
	}
	// The receiver acknowledges once per window (plus ACK 0 of a read's
	// OACK, and the final block).
	acks := tr.count(!fromServer, opACK)
	maxAcks := (wantBlocks+tc.window-1)/tc.window + 2
	if tc.window > 1 && acks > maxAcks {
		fail("%d ACKs for %d blocks, want at most %d with windowsize %d", acks, wantBlocks, maxAcks, tc.window)
	}
	// In lock-step every block is acknowledged; the client's final ACK may
	// still be in the relay when the client exits.
	if tc.window == 1 && acks < wantBlocks-1 {
		fail("%d ACKs for %d blocks in lock-step", acks, wantBlocks)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// interopText is a Unix text file for the netascii tests: LF line ends,
// some bare CRs and a CR LF pair, with the netascii encoding placing a
// CR LF and a CR NUL across 512-byte block boundaries.
func interopText() []byte {
	var b bytes.Buffer
	b.WriteString(strings.Repeat("a", 511) + "\n") // wire: CR at offset 511, LF at 512
	b.WriteString(strings.Repeat("b", 510) + "\r") // wire: CR at 1023, NUL at 1024
	b.WriteString("bare CR\rin the middle\n\nempty line above\n")
	b.WriteString("a DOS line end\r\n")
	for i := range 60 {
		fmt.Fprintf(&b, "line %d of a PXE menu: LABEL linux KERNEL vmlinuz APPEND initrd=initrd.img\n", i)
	}
	b.WriteString("ends with a bare CR\r")
	return b.Bytes()
}

// interopNetasciiWire is the netascii form of text, written independently
// of the server's encoder: LF becomes CR LF and CR becomes CR NUL.
func interopNetasciiWire(text []byte) []byte {
	return []byte(strings.NewReplacer("\n", "\r\n", "\r", "\r\x00").Replace(string(text)))
}

// TestInteropNetascii puts a Unix text file in netascii mode and checks the
// store keeps it with Unix line ends (a binary get returns the original),
// a netascii get gives the original back, and the wire carries CR LF and
// CR NUL.
func TestInteropNetascii(t *testing.T) {
	requireAllClients(t)
	port := startDefaultServer(t)
	text := interopText()
	wire := interopNetasciiWire(text)
	hpa := interopClient(t, "tftp-hpa")
	atftpc := interopClient(t, "atftp")
	busybox := interopClient(t, "busybox")
	curl := interopClient(t, "curl")
	ascii := clientOpts{Netascii: true}
	for _, put := range []tftpClient{hpa, atftpc} {
		for _, server := range interopFamilies(port) {
			t.Run(put.name+"/"+familyName(server), func(t *testing.T) {
				dir := t.TempDir()
				src := writeLocal(t, dir, "text", text)
				remote := "ascii/" + put.name + "-" + familyName(server) + ".txt"

				r := startRelay(t, server, true)
				if err := put.put(t.Context(), r.addr(), remote, src, ascii); err != nil {
					t.Fatalf("netascii put: %v\ntrace:\n%s", err, r.trace())
				}
				if _, mode, _, _ := r.trace().request(); mode != "netascii" {
					t.Fatalf("%s sent mode %q, want netascii", put.name, mode)
				}
				requireSameBytes(t, "netascii put: bytes on the wire vs netascii encoding of the text", r.trace().payload(false), wire)

				stored := filepath.Join(dir, "stored")
				if err := busybox.get(t.Context(), server, remote, stored, clientOpts{}); err != nil {
					t.Fatalf("binary get: %v", err)
				}
				requireSameBytes(t, "store content (busybox binary get) vs Unix text", readLocal(t, stored), text)

				for _, get := range []tftpClient{hpa, atftpc} {
					r := startRelay(t, server, true)
					dst := filepath.Join(dir, "got-"+get.name)
					if err := get.get(t.Context(), r.addr(), remote, dst, ascii); err != nil {
						t.Fatalf("%s netascii get: %v\ntrace:\n%s", get.name, err, r.trace())
					}
					requireSameBytes(t, get.name+" netascii get: wire vs netascii encoding", r.trace().payload(true), wire)
					requireSameBytes(t, get.name+" netascii get vs Unix text", readLocal(t, dst), text)
				}

				// curl's netascii mode does not translate: it shows the
				// server's wire form as is.
				dst := filepath.Join(dir, "curl")
				if err := curl.get(t.Context(), server, remote, dst, ascii); err != nil {
					t.Fatalf("curl netascii get: %v", err)
				}
				requireSameBytes(t, "curl netascii get (untranslated) vs netascii encoding", readLocal(t, dst), wire)
			})
		}
	}
	t.Run("tsize", func(t *testing.T) {
		// tsize of a netascii read is the size on the wire.
		server := loopback4(port)
		remote := "ascii/tsize.txt"
		dir := t.TempDir()
		if err := busybox.put(t.Context(), server, remote, writeLocal(t, dir, "text", text), clientOpts{}); err != nil {
			t.Fatalf("binary put: %v", err)
		}
		r := startRelay(t, server, true)
		dst := filepath.Join(dir, "dst")
		if err := atftpc.get(t.Context(), r.addr(), remote, dst, clientOpts{Netascii: true, Tsize: true}); err != nil {
			t.Fatalf("netascii get: %v\ntrace:\n%s", err, r.trace())
		}
		requireSameBytes(t, "atftp netascii get vs Unix text", readLocal(t, dst), text)
		if got, want := r.trace().oack()["tsize"], strconv.Itoa(len(wire)); got != want {
			t.Errorf("OACK tsize=%q for a netascii read, want the wire size %s (file is %d bytes)\ntrace:\n%s", got, want, len(text), r.trace())
		}
	})
}

// TestInteropBlockRollover puts and gets a file of more than 65535 blocks,
// so block numbers roll over (to 0), with each client. All four handle it.
func TestInteropBlockRollover(t *testing.T) {
	requireAllClients(t)
	port := startDefaultServer(t)
	// 33 MiB + a bit: 67585 blocks of 512 bytes.
	const size = 33<<20 + 123
	data := randomBytes(t, size)
	src := writeLocal(t, t.TempDir(), "big", data)
	cases := []struct {
		name   string
		client string
		opts   clientOpts
	}{
		{"curl", "curl", clientOpts{}},
		{"atftp", "atftp", clientOpts{}},
		{"atftp-windowsize-8", "atftp", clientOpts{WindowSize: 8}},
		{"busybox", "busybox", clientOpts{}},
		{"tftp-hpa", "tftp-hpa", clientOpts{}},
	}
	t.Run("cases", func(t *testing.T) {
		for i, tc := range cases {
			c := interopClient(t, tc.client)
			server := interopFamilies(port)[i%2]
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				remote := "big/" + tc.name + ".bin"
				put := startRelay(t, server, false)
				if err := c.put(t.Context(), put.addr(), remote, src, tc.opts); err != nil {
					t.Fatalf("put: %v\ntrace:\n%s", err, put.trace())
				}
				checkRollover(t, "put", put.trace().inOrder(false), size)
				get := startRelay(t, server, false)
				dst := filepath.Join(t.TempDir(), "dst")
				if err := c.get(t.Context(), get.addr(), remote, dst, tc.opts); err != nil {
					t.Fatalf("get: %v\ntrace:\n%s", err, get.trace())
				}
				requireSameBytes(t, "rollover round trip", readLocal(t, dst), data)
				checkRollover(t, "get", get.trace().inOrder(true), size)
			})
		}
	})
}

// checkRollover requires the DATA blocks of a 512-byte-block transfer to
// wrap from 65535 to 0 and the count of distinct blocks to match size.
func checkRollover(t *testing.T, what string, seq []interopPacket, size int) {
	t.Helper()
	wraps := 0
	for i := 1; i < len(seq); i++ {
		if seq[i-1].block == 65535 {
			wraps++
			t.Logf("%s: block after 65535 is %d", what, seq[i].block)
		}
	}
	if wraps != 1 {
		t.Errorf("%s: block numbers rolled over %d times, want once", what, wraps)
	}
	if want := size/512 + 1; len(seq) != want {
		t.Errorf("%s: %d DATA blocks in order, want %d", what, len(seq), want)
	}
}
