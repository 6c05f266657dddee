package tftp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Tests of the "zero-downtime reloads" behaviour: stores survive reloads,
// the listening socket never goes dark, transfers in flight finish under the
// settings they started with, failed reloads roll back, and stop honours
// the grace period.

// reloadWait bounds every wait for something the server should do promptly.
const reloadWait = 10 * time.Second

// reloadPause blocks a testClient at one packet until released, so a test
// can act while a transfer is provably in flight. Use hook as the client's
// dropIn (packets from the server) or dropOut (packets to the server).
type reloadPause struct {
	op, block   uint16
	reached     chan struct{}
	release     chan struct{}
	reachedOnce sync.Once
	releaseOnce sync.Once
}

func newReloadPause(t testing.TB, op, block uint16) *reloadPause {
	p := &reloadPause{op: op, block: block, reached: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(p.resume) // never leave a client goroutine blocked
	return p
}

func (p *reloadPause) hook(op, block uint16, n int) bool {
	if op == p.op && block == p.block && n == 0 {
		p.reachedOnce.Do(func() { close(p.reached) })
		select {
		case <-p.release:
		case <-time.After(30 * time.Second):
		}
	}
	return false
}

func (p *reloadPause) resume() { p.releaseOnce.Do(func() { close(p.release) }) }

// await returns once the client is blocked at the pause point.
func (p *reloadPause) await(t testing.TB, what string) {
	t.Helper()
	select {
	case <-p.reached:
	case <-time.After(reloadWait):
		t.Fatalf("%s never reached its pause point", what)
	}
}

type reloadGetResult struct {
	data []byte
	err  error
}

func reloadGoGet(c *testClient, name string) <-chan reloadGetResult {
	ch := make(chan reloadGetResult, 1)
	go func() {
		data, err := c.get(name)
		ch <- reloadGetResult{data, err}
	}()
	return ch
}

func reloadGoPut(c *testClient, name string, data []byte) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- c.put(name, data) }()
	return ch
}

func reloadAwait[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not finish", what)
		panic("unreachable")
	}
}

// reloadGetEqual reads name and requires it to be want.
func reloadGetEqual(t testing.TB, server netip.AddrPort, name string, want []byte, opts ...option) *testClient {
	t.Helper()
	c := &testClient{server: server, options: opts}
	got, err := c.get(name)
	if err != nil {
		t.Fatalf("get %s from %s: %v", name, server, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("get %s from %s: %d bytes, want %d identical bytes", name, server, len(got), len(want))
	}
	return c
}

// reloadStablePort returns a port free for UDP and TCP on 127.0.0.1 below
// the kernel's ephemeral port range. Reloads here let ports go and take
// them again; a port from the ephemeral range could meanwhile be handed to
// one of the many client sockets, making the reload fail with "address
// already in use".
func reloadStablePort(t testing.TB) uint16 {
	t.Helper()
	const base = 10000
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	if low < base+1000 {
		return freePort(t)
	}
	for range 200 {
		ap := loopback4(uint16(base + rand.IntN(low-base)))
		u, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			continue
		}
		tc, err := net.Listen("tcp4", ap.String())
		u.Close()
		if err != nil {
			continue
		}
		tc.Close()
		return ap.Port()
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

// reloadMemData returns the contents object kept in memoryPool under name.
func reloadMemData(t testing.TB, name string) *memData {
	t.Helper()
	var d *memData
	memoryPool.Range(func(k, v any) bool {
		if k == name {
			d = v.(*memData)
			return false
		}
		return true
	})
	if d == nil {
		t.Fatalf("memory store %q is not in the pool", name)
	}
	return d
}

func reloadRequireRefs(t testing.TB, name string, want int) {
	t.Helper()
	n, ok := memoryPool.References(name)
	switch {
	case want == 0 && ok:
		t.Fatalf("memory store %q still has %d references, want it freed", name, n)
	case want > 0 && (!ok || n != want):
		t.Fatalf("memory store %q has %d references (present %v), want %d", name, n, ok, want)
	}
}

// reloadRequirePortFree proves nothing listens on the UDP port any more: a
// plain (non-reuseport) socket can only bind a port no one holds.
func reloadRequirePortFree(t testing.TB, port uint16) {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback4(port)))
	if err != nil {
		t.Fatalf("port %d is still bound: %v", port, err)
	}
	c.Close()
}

// reloadRequireSilent sends a read request and requires no answer: the
// server no longer takes requests on that address.
func reloadRequireSilent(t testing.TB, server netip.AddrPort, wait time.Duration) {
	t.Helper()
	r := dialRaw(t)
	r.send(server, appendRequest(nil, opRRQ, "anything", "octet"))
	if pkt, from, ok := r.recv(wait); ok {
		t.Fatalf("%s answered a request with opcode %d from %s", server, opcode(pkt), from)
	}
}

// reloadPausedRead starts a plain RFC 1350 read and acknowledges DATA 1
// only, leaving the transfer in flight on the server waiting for ACK 2.
func reloadPausedRead(t testing.TB, server netip.AddrPort, name string) *rawConn {
	t.Helper()
	r := dialRaw(t)
	r.send(server, appendRequest(nil, opRRQ, name, "octet"))
	acked := false
	for range 20 {
		pkt, tid := r.mustRecv(reloadWait)
		if opcode(pkt) != opDATA {
			t.Fatalf("read %s: got opcode %d, want DATA", name, opcode(pkt))
		}
		switch blk, _, _ := parseBlockPacket(pkt); blk {
		case 1:
			if !acked {
				r.send(tid, appendAck(nil, 1))
				acked = true
			}
		case 2:
			return r
		}
	}
	t.Fatalf("read %s: DATA 2 never came", name)
	return nil
}

// reloadErrorAt is an ERROR packet and when it arrived.
type reloadErrorAt struct {
	code ErrorCode
	msg  string
	at   time.Time
	ok   bool
}

// reloadCatchError reads packets on its own goroutine until an ERROR
// arrives, skipping DATA retransmits, so the arrival time is exact even
// while the test is busy elsewhere.
func reloadCatchError(r *rawConn, limit time.Duration) <-chan reloadErrorAt {
	ch := make(chan reloadErrorAt, 1)
	go func() {
		deadline := time.Now().Add(limit)
		for range 1000 {
			wait := time.Until(deadline)
			if wait <= 0 {
				break
			}
			pkt, _, ok := r.recv(wait)
			if !ok {
				break
			}
			if opcode(pkt) == opERROR {
				code, msg, _ := parseError(pkt)
				ch <- reloadErrorAt{code, msg, time.Now(), true}
				return
			}
		}
		ch <- reloadErrorAt{}
	}()
	return ch
}

// reloadCheckGraceError requires an ERROR 0 no sooner than grace after
// start and well before a second grace period would have passed.
func reloadCheckGraceError(t testing.TB, what string, ch <-chan reloadErrorAt, start time.Time, grace time.Duration) {
	t.Helper()
	e := reloadAwait(t, ch, what)
	if !e.ok {
		t.Errorf("%s: no ERROR packet", what)
		return
	}
	d := e.at.Sub(start)
	t.Logf("%s: ERROR %d %q %v after the stop", what, e.code, e.msg, d.Round(time.Millisecond))
	if e.code != ErrCodeUndefined {
		t.Errorf("%s ended with ERROR %d %q, want 0", what, e.code, e.msg)
	}
	if d < grace {
		t.Errorf("%s ended %v after the stop, before the %v grace period", what, d, grace)
	}
	if d > grace+grace*3/4 {
		t.Errorf("%s ended %v after the stop; the grace period is %v", what, d, grace)
	}
}

// reloadAwaitPortFree polls until a plain socket can bind the port, which
// proves another process's server closed it. There is no signal to await
// across processes, so this is a bounded poll.
func reloadAwaitPortFree(t testing.TB, port uint16, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for range 10000 {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback4(port)))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			break
		}
		<-tick.C
	}
	t.Fatalf("port %d still bound %v after the stop", port, limit)
}

// TestReloadStores checks that memory store contents survive reloads under
// the same name, that a store dropped from the config is freed, and that a
// renamed store starts empty.
func TestReloadStores(t *testing.T) {
	pMain, pSide, pExtra := reloadStablePort(t), reloadStablePort(t), reloadStablePort(t)
	configA := tftpCaddyfile(lines(
		"grace_period 2s",
		"store boot {", "max_bytes 64MiB", "}",
		"store scratch {", "max_bytes 8MiB", "}",
		"server main {", fmt.Sprintf("listen 127.0.0.1:%d", pMain), "store boot", "}",
		"server side {", fmt.Sprintf("listen 127.0.0.1:%d", pSide), "store scratch", "}",
		"server plain {", fmt.Sprintf("listen 127.0.0.1:%d", pExtra), "}",
	))
	// B: different limits, scratch dropped, side gone, an extra server
	// sharing boot read-only, plain still on the default store.
	pRO := reloadStablePort(t)
	configB := tftpCaddyfile(lines(
		"grace_period 2s",
		"store boot {", "max_bytes 32MiB", "max_file_size 1MiB", "}",
		"server main {", fmt.Sprintf("listen 127.0.0.1:%d", pMain), "store boot", "max_block_size 1468", "max_window_size 4", "}",
		"server extra {", fmt.Sprintf("listen 127.0.0.1:%d", pRO), "store boot", "read_only", "}",
		"server plain {", fmt.Sprintf("listen 127.0.0.1:%d", pExtra), "}",
	))
	// C: boot renamed to boot2; scratch comes back.
	configC := tftpCaddyfile(lines(
		"store boot2 {", "max_bytes 32MiB", "}",
		"store scratch {", "max_bytes 8MiB", "}",
		"server main {", fmt.Sprintf("listen 127.0.0.1:%d", pMain), "store boot2", "}",
		"server side {", fmt.Sprintf("listen 127.0.0.1:%d", pSide), "store scratch", "}",
		"server plain {", fmt.Sprintf("listen 127.0.0.1:%d", pExtra), "}",
	))

	startCaddy(t, configA)
	bootFiles := map[string][]byte{
		"pxelinux.0":           randomBytes(t, 40_000),
		"pxelinux.cfg/default": randomBytes(t, 700),
		"empty":                {},
	}
	for name, data := range bootFiles {
		putFile(t, loopback4(pMain), name, data)
	}
	scratchData := randomBytes(t, 5000)
	putFile(t, loopback4(pSide), "scratch.bin", scratchData)
	defaultData := randomBytes(t, 3000)
	putFile(t, loopback4(pExtra), "default.bin", defaultData)
	reloadRequireRefs(t, "boot", 1)
	reloadRequireRefs(t, "scratch", 1)
	reloadRequireRefs(t, "default", 1)
	reloadGetEqual(t, loopback4(pSide), "scratch.bin", scratchData)
	oldScratch := reloadMemData(t, "scratch")
	oldBoot := reloadMemData(t, "boot")

	if err := reloadCaddy(t, configB); err != nil {
		t.Fatalf("reload to B: %v", err)
	}
	for name, data := range bootFiles {
		reloadGetEqual(t, loopback4(pMain), name, data)
		reloadGetEqual(t, loopback4(pRO), name, data) // the extra server shares the store
	}
	reloadGetEqual(t, loopback4(pExtra), "default.bin", defaultData)
	if reloadMemData(t, "boot") != oldBoot {
		t.Fatal("store boot was replaced by a new one on reload")
	}
	reloadRequireRefs(t, "boot", 1)
	reloadRequireRefs(t, "default", 1)
	// The dropped store is freed, and only once: its pool entry is gone and
	// its contents were released.
	reloadRequireRefs(t, "scratch", 0)
	if files, n := oldScratch.usage(); files != 0 || n != 0 {
		t.Fatalf("dropped store scratch still holds %d files, %d bytes", files, n)
	}
	reloadRequirePortFree(t, pSide)
	// New limits apply to new uploads on the surviving store.
	err := (&testClient{server: loopback4(pMain)}).put("too-big", randomBytes(t, 1<<20+1))
	if code := errorCode(err); code != int(ErrCodeDiskFull) {
		t.Fatalf("put over B's max_file_size: %v, want ERROR 3", err)
	}
	err = (&testClient{server: loopback4(pRO)}).put("ro", []byte("x"))
	if code := errorCode(err); code != int(ErrCodeAccessViolated) {
		t.Fatalf("put to the read-only extra server: %v, want ERROR 2", err)
	}
	// Files put under B are kept too.
	bData := randomBytes(t, 2000)
	putFile(t, loopback4(pMain), "from-b", bData)

	if err := reloadCaddy(t, configC); err != nil {
		t.Fatalf("reload to C: %v", err)
	}
	reloadRequireRefs(t, "boot", 0)
	reloadRequireRefs(t, "boot2", 1)
	reloadRequireRefs(t, "scratch", 1)
	if files, _ := oldBoot.usage(); files != 0 {
		t.Fatalf("renamed-away store boot still holds %d files", files)
	}
	for _, name := range []string{"pxelinux.0", "from-b"} {
		_, err := (&testClient{server: loopback4(pMain)}).get(name)
		if code := errorCode(err); code != int(ErrCodeFileNotFound) {
			t.Fatalf("get %s from the renamed (new, empty) store: %v, want ERROR 1", name, err)
		}
	}
	if reloadMemData(t, "scratch") == oldScratch {
		t.Fatal("re-added store scratch reuses the destroyed contents")
	}
	_, err = (&testClient{server: loopback4(pSide)}).get("scratch.bin")
	if code := errorCode(err); code != int(ErrCodeFileNotFound) {
		t.Fatalf("get from the re-added scratch store: %v, want ERROR 1 (it starts empty)", err)
	}
	reloadGetEqual(t, loopback4(pExtra), "default.bin", defaultData)
}

// TestReloadInFlightTransfers checks that transfers running when a reload
// happens finish byte-for-byte under the settings they started with, while
// new requests get the new settings.
func TestReloadInFlightTransfers(t *testing.T) {
	port := reloadStablePort(t)
	server := loopback4(port)
	listen := fmt.Sprintf("listen 127.0.0.1:%d", port)
	configA := tftpCaddyfile(lines("grace_period 20s", listen, "max_block_size 8192",
		"store default {", "max_file_size 1MiB", "}"))
	configB := tftpCaddyfile(lines("grace_period 20s", listen, "max_block_size 1024",
		"store default {", "max_file_size 64KiB", "}"))
	configC := tftpCaddyfile(lines("grace_period 20s", listen, "max_block_size 1024", "read_only",
		"store default {", "max_file_size 64KiB", "}"))
	big := []option{{"blksize", "8192"}}

	startCaddy(t, configA)
	seed := randomBytes(t, 300_000)
	putFile(t, server, "seed.bin", seed)

	// A read and a write, both paused mid-way under A.
	getPause := newReloadPause(t, opDATA, 3)
	getter := &testClient{server: server, options: big, dropIn: getPause.hook}
	getDone := reloadGoGet(getter, "seed.bin")
	upData := randomBytes(t, 200_000) // over B's 64KiB file limit
	putPause := newReloadPause(t, opDATA, 5)
	putter := &testClient{server: server, options: big, dropOut: putPause.hook}
	putDone := reloadGoPut(putter, "inflight-up.bin", upData)
	getPause.await(t, "read under A")
	putPause.await(t, "write under A")

	if err := reloadCaddy(t, configB); err != nil {
		t.Fatalf("reload to B: %v", err)
	}
	// New requests use B: blksize capped at 1024, files over 64KiB refused.
	if c := reloadGetEqual(t, server, "seed.bin", seed, big...); c.stats.blockSize != 1024 {
		t.Errorf("new read after reload negotiated blksize %d, want B's cap 1024", c.stats.blockSize)
	}
	err := (&testClient{server: server, options: big}).put("new-big.bin", upData)
	if code := errorCode(err); code != int(ErrCodeDiskFull) {
		t.Errorf("new 200 kB write under B: %v, want ERROR 3", err)
	}

	getPause.resume()
	putPause.resume()
	res := reloadAwait(t, getDone, "read started under A")
	if res.err != nil || !bytes.Equal(res.data, seed) {
		t.Fatalf("read started under A: %v, %d bytes of %d", res.err, len(res.data), len(seed))
	}
	if getter.stats.blockSize != 8192 {
		t.Errorf("read started under A ran with blksize %d, want 8192", getter.stats.blockSize)
	}
	if err := reloadAwait(t, putDone, "write started under A"); err != nil {
		t.Fatalf("write started under A (200 kB, allowed by A's limits): %v", err)
	}
	reloadGetEqual(t, server, "inflight-up.bin", upData)

	// B to C switches read_only on while a write started under B runs.
	small := randomBytes(t, 40_000)
	putPause = newReloadPause(t, opDATA, 10)
	putter = &testClient{server: server, options: big, dropOut: putPause.hook}
	putDone = reloadGoPut(putter, "before-ro.bin", small)
	putPause.await(t, "write under B")
	if err := reloadCaddy(t, configC); err != nil {
		t.Fatalf("reload to C: %v", err)
	}
	err = (&testClient{server: server}).put("after-ro.bin", []byte("refused"))
	if code := errorCode(err); code != int(ErrCodeAccessViolated) {
		t.Errorf("new write under read_only: %v, want ERROR 2", err)
	}
	putPause.resume()
	if err := reloadAwait(t, putDone, "write started under B"); err != nil {
		t.Fatalf("write started before read_only: %v", err)
	}
	reloadGetEqual(t, server, "before-ro.bin", small)
	reloadGetEqual(t, server, "seed.bin", seed)
	reloadGetEqual(t, server, "inflight-up.bin", upData)
}

// TestReloadFailedConfigKeepsServing checks that a reload that fails is
// rejected with a clear error while the running config keeps serving, with
// its files, its settings and its transfers in flight.
func TestReloadFailedConfigKeepsServing(t *testing.T) {
	port := reloadStablePort(t)
	server := loopback4(port)
	listen := fmt.Sprintf("listen 127.0.0.1:%d", port)
	configA := tftpCaddyfile(lines("store boot {", "max_bytes 16MiB", "}",
		"server a {", listen, "store boot", "}"))

	startCaddy(t, configA)
	seed := randomBytes(t, 100_000)
	putFile(t, server, "seed.bin", seed)
	boot := reloadMemData(t, "boot")

	// A read in flight across every failed reload.
	pause := newReloadPause(t, opDATA, 2)
	reader := &testClient{server: server, dropIn: pause.hook}
	readDone := reloadGoGet(reader, "seed.bin")
	pause.await(t, "read under A")

	// Another program holds this port without SO_REUSEPORT.
	busy := reloadStablePort(t)
	squatter, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback4(busy)))
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	// Another program holds this TCP port, for a config whose tftp app
	// starts but whose http app then fails, so the new tftp is stopped.
	tcpSquatter, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpSquatter.Close()
	tcpPort := tcpSquatter.Addr().(*net.TCPAddr).Port

	// Each bad config takes over server a's address (read_only, so a
	// wrongly kept handler would show) before failing.
	bad := []struct {
		name, config, want string
		times              int
	}{
		{
			name: "udp port in use",
			config: tftpCaddyfile(lines("store boot {", "max_bytes 16MiB", "}",
				"server a {", listen, "store boot", "read_only", "}",
				"server b {", fmt.Sprintf("listen 127.0.0.1:%d", busy), "store boot", "}")),
			want:  "address already in use",
			times: 1,
		},
		{
			// The Caddyfile is fine; the directory is missing when the
			// config is provisioned.
			name: "missing preload directory",
			config: tftpCaddyfile(lines("store boot {", "max_bytes 16MiB", "preload /nonexistent/tftp-preload", "}",
				"server a {", listen, "store boot", "read_only", "}")),
			want:  "preload",
			times: 1,
		},
		{
			// Apps start in random order; a few tries make it likely that
			// tftp started before http failed at least once.
			name: "other app fails after tftp started",
			config: tftpCaddyfile(lines("store boot {", "max_bytes 16MiB", "}",
				"server a {", listen, "store boot", "read_only", "}")) +
				fmt.Sprintf("\nhttp://127.0.0.1:%d {\n\trespond \"hi\"\n}\n", tcpPort),
			want:  "address already in use",
			times: 6,
		},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.times {
				err := reloadCaddy(t, tc.config)
				if err == nil {
					t.Fatalf("reload %d succeeded, want it rejected", i)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("reload error %q does not say %q", err, tc.want)
				}
				// A keeps serving: reads, and writes (A is not read-only).
				reloadGetEqual(t, server, "seed.bin", seed)
				name := fmt.Sprintf("after-%s-%d", strings.ReplaceAll(tc.name, " ", "-"), i)
				data := randomBytes(t, 3000)
				putFile(t, server, name, data)
				reloadGetEqual(t, server, name, data)
				reloadRequireRefs(t, "boot", 1)
				if reloadMemData(t, "boot") != boot {
					t.Fatal("store boot was replaced by a failed reload")
				}
			}
		})
	}
	pause.resume()
	res := reloadAwait(t, readDone, "read in flight across failed reloads")
	if res.err != nil || !bytes.Equal(res.data, seed) {
		t.Fatalf("read across failed reloads: %v, %d of %d bytes", res.err, len(res.data), len(seed))
	}
	// Nothing of the failed configs holds a socket.
	tcpSquatter.Close()
	squatter.Close()
	reloadRequirePortFree(t, busy)
}

// errReloadNoReply is a request the server never answered.
var errReloadNoReply = errors.New("request never answered")

// reloadProbeRead reads name from conn, a fresh socket, with a raw client
// that never retransmits its request, so a request the server dropped shows as errReloadNoReply and
// one it answered late shows as a long first-reply time (which a real
// client would have covered with a retransmit).
func reloadProbeRead(conn *net.UDPConn, server netip.AddrPort, name string, want []byte, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	if _, err := conn.WriteToUDPAddrPort(appendRequest(nil, opRRQ, name, "octet"), server); err != nil {
		return 0, err
	}
	buf := make([]byte, 1024)
	var (
		got      []byte
		first    time.Duration
		expected = uint16(1)
	)
	for range 100 {
		_ = conn.SetReadDeadline(time.Now().Add(limit))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if first == 0 {
				return 0, errReloadNoReply
			}
			return first, fmt.Errorf("after %d bytes: %w", len(got), err)
		}
		if first == 0 {
			first = time.Since(start)
		}
		pkt := buf[:n]
		switch opcode(pkt) {
		case opERROR:
			code, msg, _ := parseError(pkt)
			return first, &serverError{code, msg}
		case opDATA:
			blk, payload, _ := parseBlockPacket(pkt)
			if blk != expected {
				continue
			}
			got = append(got, payload...)
			expected++
			if _, err := conn.WriteToUDPAddrPort(appendAck(nil, blk), from); err != nil {
				return first, err
			}
			if len(payload) < defaultBlockSize {
				if !bytes.Equal(got, want) {
					return first, fmt.Errorf("got %d bytes, want %d identical", len(got), len(want))
				}
				return first, nil
			}
		}
	}
	return first, errors.New("too many packets")
}

// reloadChurn keeps clients reading a two-block file with reloadProbeRead
// while reload is called the given number of times, and fails the test if
// any request went unanswered or any read failed. The configs raise
// max_transfers_per_host: four clients on one address at thousands of
// requests a second can otherwise reach the default 128, because a
// transfer keeps its slot until its access log line is written, which a
// reload can hold up for tens of milliseconds.
func reloadChurn(t *testing.T, server netip.AddrPort, reloads int, reload func(i int) error) {
	t.Helper()
	seed := randomBytes(t, 700)
	putFile(t, server, "probe.bin", seed)
	const (
		clients = 4
		late    = 200 * time.Millisecond // a typical client retransmit timeout
	)
	var (
		stop       atomic.Bool
		probes     atomic.Int64
		lateProbes atomic.Int64
		dropped    atomic.Int64
		failuresMu sync.Mutex
		failures   []string
		wg         sync.WaitGroup
	)
	deadline := time.Now().Add(time.Minute)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each probe uses a new socket, and the last ones stay open so
			// the kernel cannot hand their ports out again at once: a new
			// request from the address of a transfer the server is still
			// finishing is (rightly) taken for a duplicate and ignored.
			var recent []*net.UDPConn
			defer func() {
				for _, c := range recent {
					c.Close()
				}
			}()
			for i := 0; i < 100_000 && !stop.Load() && time.Now().Before(deadline); i++ {
				conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					failuresMu.Lock()
					failures = append(failures, err.Error())
					failuresMu.Unlock()
					return
				}
				if recent = append(recent, conn); len(recent) > 256 {
					recent[0].Close()
					recent = recent[1:]
				}
				first, err := reloadProbeRead(conn, server, "probe.bin", seed, 2*time.Second)
				probes.Add(1)
				if first > late {
					lateProbes.Add(1)
				}
				if errors.Is(err, errReloadNoReply) {
					dropped.Add(1)
				}
				if err != nil {
					failuresMu.Lock()
					if len(failures) < 10 {
						failures = append(failures, err.Error())
					}
					failuresMu.Unlock()
				}
			}
		}()
	}
	for i := range reloads {
		if err := reload(i); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d reloads; %d reads, %d first replies later than %v, %d requests never answered",
		reloads, probes.Load(), lateProbes.Load(), late, dropped.Load())
	for _, f := range failures {
		t.Errorf("failed read: %s", f)
	}
}

// reloadQuietCaddyfile is tftpCaddyfile with logging at WARN: at thousands
// of transfers a second, writing access log lines slows the end of every
// transfer, and a transfer keeps its client address claimed (so a new
// request from a reused port is ignored as a duplicate) until its line is
// written.
func reloadQuietCaddyfile(body string) string {
	return strings.Replace(tftpCaddyfile(body), "\ttftp {", "\tlog {\n\t\tlevel WARN\n\t}\n\ttftp {", 1)
}

// TestReloadFailedStartUnderLoad repeats a reload whose tftp Start fails
// half-way (the first server takes over the running address, the second
// cannot bind) while clients keep reading: a request that lands on the
// doomed config in that window must still be answered and served to the
// end.
func TestReloadFailedStartUnderLoad(t *testing.T) {
	port := reloadStablePort(t)
	listen := fmt.Sprintf("listen 127.0.0.1:%d", port)
	busy := reloadStablePort(t)
	squatter, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback4(busy)))
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	startCaddy(t, reloadQuietCaddyfile(lines("grace_period 10s", "server a {", listen, "max_transfers_per_host 100000", "}")))
	badConfig := adaptCaddyfile(t, reloadQuietCaddyfile(lines("grace_period 10s",
		"server a {", listen, "max_transfers_per_host 100000", "}",
		"server b {", fmt.Sprintf("listen 127.0.0.1:%d", busy), "}")))
	reloadChurn(t, loopback4(port), 1000, func(int) error {
		if err := caddy.Load(badConfig, true); err == nil {
			return errors.New("a config with a busy port loaded")
		}
		return nil
	})
}

// TestReloadSwapUnderLoad reloads between two valid configs on the same
// address many times while clients keep reading: no request may be lost
// at the hand-over.
func TestReloadSwapUnderLoad(t *testing.T) {
	port := reloadStablePort(t)
	listen := fmt.Sprintf("listen 127.0.0.1:%d", port)
	startCaddy(t, reloadQuietCaddyfile(lines("grace_period 10s", listen, "max_transfers_per_host 100000")))
	configs := [][]byte{
		adaptCaddyfile(t, reloadQuietCaddyfile(lines("grace_period 10s", listen, "max_transfers_per_host 100000", "max_window_size 4"))),
		adaptCaddyfile(t, reloadQuietCaddyfile(lines("grace_period 10s", listen, "max_transfers_per_host 100000", "max_window_size 8"))),
	}
	reloadChurn(t, loopback4(port), 1000, func(i int) error { return caddy.Load(configs[i%2], true) })
}

// TestReloadMovesListenAddress checks that changing the listen address
// moves the server: the old port stops answering and is released, the new
// one answers with the same files, and a transfer in flight on the old
// address finishes.
func TestReloadMovesListenAddress(t *testing.T) {
	p1, p2 := reloadStablePort(t), reloadStablePort(t)
	configA := tftpCaddyfile(fmt.Sprintf("listen 127.0.0.1:%d", p1))
	configB := tftpCaddyfile(fmt.Sprintf("listen 127.0.0.1:%d", p2))

	startCaddy(t, configA)
	seed := randomBytes(t, 60_000)
	putFile(t, loopback4(p1), "seed.bin", seed)
	pause := newReloadPause(t, opDATA, 4)
	reader := &testClient{server: loopback4(p1), dropIn: pause.hook}
	readDone := reloadGoGet(reader, "seed.bin")
	pause.await(t, "read on the old address")

	if err := reloadCaddy(t, configB); err != nil {
		t.Fatalf("reload to the new address: %v", err)
	}
	reloadGetEqual(t, loopback4(p2), "seed.bin", seed)
	reloadRequireSilent(t, loopback4(p1), 300*time.Millisecond)
	reloadRequirePortFree(t, p1)
	pause.resume()
	res := reloadAwait(t, readDone, "read on the old address")
	if res.err != nil || !bytes.Equal(res.data, seed) {
		t.Fatalf("read in flight on the old address: %v, %d of %d bytes", res.err, len(res.data), len(seed))
	}

	// And back again.
	if err := reloadCaddy(t, configA); err != nil {
		t.Fatalf("reload back to the old address: %v", err)
	}
	reloadGetEqual(t, loopback4(p1), "seed.bin", seed)
	reloadRequirePortFree(t, p2)
}

// TestReloadStopGracePeriod checks caddy.Stop (not exiting, so Stop does
// not wait): no new transfers, a transfer that goes on finishes within the
// grace period, and a stalled one gets an ERROR packet once it ends.
func TestReloadStopGracePeriod(t *testing.T) {
	const grace = 500 * time.Millisecond
	port := reloadStablePort(t)
	server := loopback4(port)
	startCaddy(t, tftpCaddyfile(lines("grace_period 500ms", "timeout 3s", fmt.Sprintf("listen 127.0.0.1:%d", port))))
	seed := randomBytes(t, 200_000)
	putFile(t, server, "seed.bin", seed)

	stalled := reloadPausedRead(t, server, "seed.bin")
	pause := newReloadPause(t, opDATA, 3)
	reader := &testClient{server: server, options: []option{{"blksize", "8192"}}, dropIn: pause.hook}
	readDone := reloadGoGet(reader, "seed.bin")
	pause.await(t, "read before stop")
	stalledErr := reloadCatchError(stalled, grace+reloadWait)

	start := time.Now()
	if err := caddy.Stop(); err != nil {
		t.Fatalf("caddy.Stop: %v", err)
	}
	if d := time.Since(start); d >= grace {
		t.Errorf("caddy.Stop took %v; when not exiting it must not wait for the %v grace period", d, grace)
	}
	// No new transfers: the listening socket is closed at once.
	reloadRequirePortFree(t, port)
	pause.resume()
	res := reloadAwait(t, readDone, "read continuing in the grace period")
	if res.err != nil || !bytes.Equal(res.data, seed) {
		t.Errorf("read continuing in the grace period: %v, %d of %d bytes", res.err, len(res.data), len(seed))
	}
	reloadCheckGraceError(t, "stalled transfer", stalledErr, start, grace)
}

// ---- Out of process: a real caddy binary reloaded under load ----

// reloadProc is a caddy process started by a test.
type reloadProc struct {
	cmd   *exec.Cmd
	log   string
	admin string
	env   []string
	// client opens one connection per request, on a transport of its own
	// (not http.DefaultTransport): Caddy replaces its admin server on every
	// load, and a connection kept alive from the startup probe would
	// otherwise carry the first POST /load.
	client *http.Client
	exited chan struct{}
	err    error // valid once exited is closed
}

// reloadBuildCaddy builds the dev binary; a race-enabled test builds a
// race-enabled server too.
func reloadBuildCaddy(t *testing.T) (bin string, race bool) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go tool not found: %v", err)
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				race = true
			}
		}
	}
	bin = filepath.Join(t.TempDir(), "caddy")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/caddy")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, goBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("built %s (race %v) in %v", bin, race, time.Since(start).Round(time.Millisecond))
	return bin, race
}

// reloadStartProc runs `caddy run --config file` and waits until the admin
// API answers. The process is killed when the test ends, whatever happens.
func reloadStartProc(t *testing.T, bin, config, admin string) *reloadProc {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"config", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p := &reloadProc{
		log:    filepath.Join(dir, "caddy.log"),
		admin:  admin,
		env:    append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data")),
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second},
		exited: make(chan struct{}),
	}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "run", "--config", config, "--adapter", "caddyfile")
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting caddy: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			select {
			case <-p.exited:
			case <-time.After(reloadWait):
				t.Errorf("caddy pid %d did not die after SIGKILL", p.cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("caddy log tail:\n%s", p.logTail(60))
		}
	})

	client := &http.Client{Transport: p.client.Transport, Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for attempt := 0; ; attempt++ {
		resp, err := client.Get("http://" + admin + "/config/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) || attempt > 1000 {
			t.Fatalf("admin API on %s never answered: %v", admin, err)
		}
		select {
		case <-p.exited:
			t.Fatalf("caddy exited during startup: %v", p.err)
		case <-tick.C:
		}
	}
}

func (p *reloadProc) logTail(n int) string {
	b, _ := os.ReadFile(p.log)
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// postLoad loads a Caddyfile through the admin API, forcing a reload even
// when the config is unchanged.
func (p *reloadProc) postLoad(caddyfile []byte) error {
	req, err := http.NewRequest(http.MethodPost, "http://"+p.admin+"/load", bytes.NewReader(caddyfile))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /load: %s: %s", resp.Status, body)
	}
	return nil
}

// awaitOldAdminClosed returns once a single listening socket is left on
// the admin address, that is once the admin server replaced by the last
// load has closed its listener.
//
// Caddy (v2.11.9, admin.go replaceLocalAdminServer) starts the new admin
// server on a second SO_REUSEPORT socket before the old one is closed,
// and closes the old one from a goroutine that may run only after the
// reply to POST /load has gone out. While both sockets listen, the kernel
// hands each new connection to one of them at random; a connection queued
// on the old socket when it closes is reset. That is how the next POST
// /load, sent as soon as the previous one was answered, met "connection
// reset by peer". No request can be sent safely until the old socket is
// gone, and only the kernel's socket table shows when that is: a bounded
// poll of /proc/net/tcp. Where that table is missing (not Linux) there is
// nothing to wait on.
func (p *reloadProc) awaitOldAdminClosed() error {
	ap, err := netip.ParseAddrPort(p.admin)
	if err != nil || !ap.Addr().Is4() {
		return fmt.Errorf("admin address %q: want an IPv4 address and port (%v)", p.admin, err)
	}
	a4 := ap.Addr().As4()
	// /proc/net/tcp prints the address as the native-endian value of
	// the network-order bytes, then the port in hex; 0A is LISTEN.
	local := fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(a4[:]), ap.Port())
	deadline := time.Now().Add(reloadWait)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	listening := 0
	for range 10000 {
		table, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			return nil
		}
		listening = 0
		for _, line := range strings.Split(string(table), "\n") {
			if f := strings.Fields(line); len(f) > 3 && f[1] == local && f[3] == "0A" {
				listening++
			}
		}
		if listening == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			break
		}
		<-tick.C
	}
	return fmt.Errorf("%d sockets still listen on the admin address %s %v after the load", listening, p.admin, reloadWait)
}

// command runs a caddy subcommand against this process's admin API.
func (p *reloadProc) command(bin string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = p.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("caddy %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// awaitExit waits for the process to end and requires a clean exit.
func (p *reloadProc) awaitExit(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("caddy exited with %v", p.err)
		}
	case <-time.After(limit):
		t.Fatalf("caddy still running %v after being told to stop", limit)
	}
}

// reloadProcConfig is the Caddyfile of the out-of-process tests; variant
// picks one of two configs with different settings (B adds a server).
func reloadProcConfig(admin string, port, port2 uint16, variant byte, grace string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin %s\n\tpersist_config off\n\ttftp {\n\t\tgrace_period %s\n", admin, grace)
	b.WriteString("\t\tstore default {\n\t\t\tmax_bytes 512MiB\n\t\t}\n")
	fmt.Fprintf(&b, "\t\tserver main {\n\t\t\tlisten 127.0.0.1:%d\n", port)
	switch variant {
	case 'A':
		b.WriteString("\t\t\tmax_block_size 8192\n\t\t\tmax_window_size 16\n\t\t\ttimeout 1s\n\t\t}\n")
	case 'B':
		b.WriteString("\t\t\tmax_block_size 1468\n\t\t\tmax_window_size 4\n\t\t\ttimeout 2s\n\t\t}\n")
		fmt.Fprintf(&b, "\t\tserver side {\n\t\t\tlisten 127.0.0.1:%d\n\t\t\tread_only\n\t\t}\n", port2)
	case 'C':
		b.WriteString("\t\t\ttimeout 5s\n\t\t}\n")
		fmt.Fprintf(&b, "\t\tserver side {\n\t\t\tlisten 127.0.0.1:%d\n\t\t\ttimeout 5s\n\t\t}\n", port2)
	}
	b.WriteString("\t}\n}\n")
	return []byte(b.String())
}

// TestReloadUnderLoad runs the dev binary, keeps several clients putting
// and getting files while it is reloaded 50 times (half through POST /load,
// half through `caddy reload`), then stops it with SIGTERM and with
// `caddy stop` while transfers are in flight.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a caddy binary")
	}
	bin, race := reloadBuildCaddy(t)
	dir := t.TempDir()
	port, port2 := reloadStablePort(t), reloadStablePort(t)
	admin := fmt.Sprintf("127.0.0.1:%d", reloadStablePort(t))
	configs := map[byte]string{}
	for _, v := range []byte{'A', 'B', 'C'} {
		configs[v] = filepath.Join(dir, "Caddyfile."+string(v))
		grace := "10s"
		if v == 'C' {
			grace = "1500ms"
		}
		if err := os.WriteFile(configs[v], reloadProcConfig(admin, port, port2, v, grace), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	proc := reloadStartProc(t, bin, configs['A'], admin)
	server := loopback4(port)

	seed := randomBytes(t, 150_000)
	seedSum := sha256.Sum256(seed)
	putFile(t, server, "seed.bin", seed)

	// Clients: each op puts a random file and gets it back, and gets the
	// seed, all checked by checksum. Requests are counted through dropOut
	// (which never drops): the n-th send of the same request is its n-th
	// retransmit.
	const (
		clients   = 4
		maxOps    = 5000
		loadLimit = 3 * time.Minute
	)
	var (
		stop          atomic.Bool
		ops           atomic.Int64
		requests      atomic.Int64
		retransmitted atomic.Int64 // requests sent twice
		unanswered    atomic.Int64 // requests sent three times or more
		failuresMu    sync.Mutex
		failures      []string
		progress      = make(chan struct{}, 1)
		wg            sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		failuresMu.Lock()
		defer failuresMu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	countRequests := func(op, _ uint16, n int) bool {
		if op == opRRQ || op == opWRQ {
			switch n {
			case 0:
				requests.Add(1)
			case 1:
				retransmitted.Add(1)
			case 2:
				unanswered.Add(1)
			}
		}
		return false
	}
	loadStart := time.Now()
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
			blk := []string{"512", "1468", "8192"}
			win := []string{"1", "4", "8"}
			for i := 0; i < maxOps && !stop.Load() && time.Since(loadStart) < loadLimit; i++ {
				opts := []option{{"blksize", blk[rng.IntN(len(blk))]}, {"windowsize", win[rng.IntN(len(win))]}}
				data := make([]byte, rng.IntN(120_000))
				for j := range data {
					data[j] = byte(rng.Uint32())
				}
				sum := sha256.Sum256(data)
				name := fmt.Sprintf("load/%d/%d.bin", g, i)
				c := &testClient{server: server, options: opts, timeout: 200 * time.Millisecond, dropOut: countRequests}
				if err := c.put(name, data); err != nil {
					fail("put %s (%d bytes, %v): %v", name, len(data), opts, err)
					continue
				}
				c = &testClient{server: server, options: opts, timeout: 200 * time.Millisecond, dropOut: countRequests}
				got, err := c.get(name)
				if err != nil {
					fail("get %s: %v", name, err)
				} else if sha256.Sum256(got) != sum {
					fail("get %s: checksum mismatch (%d bytes, want %d)", name, len(got), len(data))
				}
				c = &testClient{server: server, options: opts, timeout: 200 * time.Millisecond, dropOut: countRequests}
				got, err = c.get("seed.bin")
				if err != nil {
					fail("get seed.bin: %v", err)
				} else if sha256.Sum256(got) != seedSum {
					fail("get seed.bin: checksum mismatch (%d bytes)", len(got))
				}
				ops.Add(1)
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}()
	}
	clientsDone := make(chan struct{})
	go func() { wg.Wait(); close(clientsDone) }()
	stopClients := func() {
		stop.Store(true)
		select {
		case <-clientsDone:
		case <-time.After(loadLimit + time.Minute):
			t.Fatal("clients did not finish")
		}
	}

	// 50 reloads alternating A and B, half through POST /load and half
	// through `caddy reload`; after each, wait until some client finished
	// an op so reloads and transfers interleave.
	const reloads = 50
	reloadStart := time.Now()
	for i := range reloads {
		variant := byte('B')
		if i%2 == 1 {
			variant = 'A'
		}
		var err error
		if i%4 < 2 {
			body, _ := os.ReadFile(configs[variant])
			err = proc.postLoad(body)
		} else {
			err = proc.command(bin, "reload", "--config", configs[variant], "--adapter", "caddyfile", "--address", admin, "--force")
		}
		if err == nil {
			err = proc.awaitOldAdminClosed() // before the next admin request
		}
		if err != nil {
			stopClients()
			t.Fatalf("reload %d (config %c): %v", i, variant, err)
		}
		select {
		case <-progress:
		case <-time.After(30 * time.Second):
			stopClients()
			t.Fatalf("no client finished an op within 30s after reload %d", i)
		}
	}
	reloadTime := time.Since(reloadStart)
	stopClients()
	t.Logf("%d reloads in %v; %d client ops (put+get+get), %d requests; %d requests needed one retransmit, %d went unanswered after one retransmit",
		reloads, reloadTime.Round(time.Millisecond), ops.Load(), requests.Load(), retransmitted.Load(), unanswered.Load())
	for _, f := range failures {
		t.Errorf("failed transfer: %s", f)
	}
	if n := unanswered.Load(); n > 0 {
		t.Errorf("%d requests were left unanswered beyond one retransmit", n)
	}
	if ops.Load() < reloads {
		t.Errorf("only %d client ops ran across %d reloads", ops.Load(), reloads)
	}
	reloadGetEqual(t, server, "seed.bin", seed) // the store survived all 50 reloads

	// Shutdown: config C has a 1.5s grace period and two servers, each
	// with a stalled transfer; one more transfer goes on during the grace.
	const grace = 1500 * time.Millisecond
	checkShutdown := func(t *testing.T, p *reloadProc, stopIt func() error) {
		stalled := []*rawConn{reloadPausedRead(t, loopback4(port), "seed.bin"), reloadPausedRead(t, loopback4(port2), "seed.bin")}
		pause := newReloadPause(t, opDATA, 3)
		reader := &testClient{server: server, options: []option{{"blksize", "1468"}}, dropIn: pause.hook}
		readDone := reloadGoGet(reader, "seed.bin")
		pause.await(t, "read before shutdown")
		var stalledErr []<-chan reloadErrorAt
		for _, r := range stalled {
			stalledErr = append(stalledErr, reloadCatchError(r, grace+reloadWait))
		}

		start := time.Now()
		stopDone := make(chan error, 1)
		go func() { stopDone <- stopIt() }() // `caddy stop` returns only once caddy has stopped
		// No new transfers: the servers close their listening sockets
		// when they stop. The paused read then goes on in the grace period.
		reloadAwaitPortFree(t, port, reloadWait)
		reloadAwaitPortFree(t, port2, reloadWait)
		pause.resume()
		res := reloadAwait(t, readDone, "read continuing in the grace period")
		if res.err != nil || !bytes.Equal(res.data, seed) {
			t.Errorf("read continuing in the grace period: %v, %d of %d bytes", res.err, len(res.data), len(seed))
		}
		// Every server's stalled transfer is ended once the grace period
		// is over, all at the same time, not one server after another.
		for i, ch := range stalledErr {
			reloadCheckGraceError(t, fmt.Sprintf("stalled transfer %d", i), ch, start, grace)
		}
		if err := reloadAwait(t, stopDone, "stop command"); err != nil {
			t.Errorf("stopping: %v", err)
		}
		p.awaitExit(t, reloadWait)
		if race {
			if b, _ := os.ReadFile(p.log); bytes.Contains(b, []byte("WARNING: DATA RACE")) {
				t.Errorf("the race detector fired in caddy:\n%s", p.logTail(80))
			}
		}
	}
	t.Run("SIGTERM", func(t *testing.T) {
		body, _ := os.ReadFile(configs['C'])
		if err := proc.postLoad(body); err != nil {
			t.Fatalf("loading config C: %v", err)
		}
		checkShutdown(t, proc, func() error { return proc.cmd.Process.Signal(syscall.SIGTERM) })
	})
	t.Run("caddy stop", func(t *testing.T) {
		p := reloadStartProc(t, bin, configs['C'], admin)
		putFile(t, server, "seed.bin", seed)
		checkShutdown(t, p, func() error { return p.command(bin, "stop", "--address", admin) })
	})
	if race {
		if b, _ := os.ReadFile(proc.log); bytes.Contains(b, []byte("WARNING: DATA RACE")) {
			t.Errorf("the race detector fired in caddy:\n%s", proc.logTail(80))
		}
	}
}
