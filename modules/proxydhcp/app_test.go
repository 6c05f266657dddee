package proxydhcp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/logging" // the file log writer and JSON encoder
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMain keeps Caddy's autosave and data directories out of the user's
// home.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caddy-proxydhcp-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CONFIG_HOME", dir)
	os.Setenv("XDG_DATA_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// Every test stops Caddy, whose Stop closes the sockets and
		// waits for their readers.
		n := 0
		sockets.Range(func(any, any) bool { n++; return true })
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if n > 0 || strings.Contains(stacks, "proxydhcp.(*socket).serve") {
			fmt.Fprintf(os.Stderr, "leak check: %d sockets still held, reader goroutines:\n%s\n", n, stacks)
			code = 1
		}
	}
	os.Exit(code)
}

var loopback = netip.MustParseAddr("127.0.0.1")

// freeUDPPort returns a UDP port that is free on 127.0.0.1 right now.
func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// labConfig is a Caddy config running proxy_dhcp on loopback with ports of
// the test, logging JSON to logPath.
type labConfig struct {
	dhcpPort, pxePort uint16
	ipxe              string
	logPath           string
	extraApps         string // more "name": {...} entries of apps
}

func (c labConfig) json() []byte {
	apps := fmt.Sprintf(`"proxy_dhcp": {
		"listen": ["127.0.0.1"],
		"boot": {"bios": "undionly.kpxe", "efi-x64": "ipxe.efi", "efi-arm64": "ipxe-arm64.efi"},
		"ipxe": %q,
		"dhcp_port": %d,
		"pxe_port": %d
	}`, c.ipxe, c.dhcpPort, c.pxePort)
	if c.extraApps != "" {
		apps += ", " + c.extraApps
	}
	logging := ""
	if c.logPath != "" {
		logging = fmt.Sprintf(`"logging": {"logs": {"default": {"writer": {"output": "file", "filename": %q}, "encoder": {"format": "json"}, "level": "DEBUG"}}},`, c.logPath)
	}
	return []byte(fmt.Sprintf(`{"admin": {"disabled": true, "config": {"persist": false}}, %s "apps": {%s}}`, logging, apps))
}

// load runs cfg as Caddy's config; Caddy is stopped when the test ends.
func load(t *testing.T, cfg []byte) {
	t.Helper()
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading config: %v\n%s", err, cfg)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
}

// testClient is a PXE client on a loopback socket. Its requests carry
// ciaddr 127.0.0.1, so answers on the DHCP port come back by unicast
// (RFC 2131 4.1); a broadcast would not arrive over lo.
type testClient struct {
	t    *testing.T
	conn *net.UDPConn
}

func newTestClient(t *testing.T) *testClient {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &testClient{t: t, conn: c}
}

func (c *testClient) sendRaw(port uint16, b []byte) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDPAddrPort(b, netip.AddrPortFrom(loopback, port)); err != nil {
		c.t.Fatal(err)
	}
}

// exchange sends req to port and returns its answer, from, and an error
// when no answer comes within the timeout or an answer to another request
// arrives first (a duplicate, or an answer to a request that should have
// been ignored).
func (c *testClient) exchange(port uint16, req *dhcpv4.DHCPv4, timeout time.Duration) (*dhcpv4.DHCPv4, netip.AddrPort, error) {
	c.sendRaw(port, req.ToBytes())
	buf := make([]byte, 2048)
	if err := c.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, netip.AddrPort{}, err
	}
	n, from, err := c.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, from, fmt.Errorf("no answer to xid %s: %w", req.TransactionID, err)
	}
	reply, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		return nil, from, fmt.Errorf("answer does not parse: %w", err)
	}
	if reply.TransactionID != req.TransactionID {
		return reply, from, fmt.Errorf("got an answer to xid %s (%s, file %q) while waiting for xid %s", reply.TransactionID, reply.MessageType(), reply.BootFileName, req.TransactionID)
	}
	return reply, from, nil
}

func (c *testClient) mustExchange(port uint16, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, netip.AddrPort) {
	c.t.Helper()
	reply, from, err := c.exchange(port, req, 5*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	return reply, from
}

func loopbackReq(t *testing.T, mt dhcpv4.MessageType, arch uint16, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	return clientReq(t, mt, arch, append([]dhcpv4.Modifier{dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1))}, mods...)...)
}

func answered(arch, typ, client string) float64 {
	return testutil.ToFloat64(metricAnswers.WithLabelValues(arch, typ, client))
}

func ignored(reason string) float64 {
	return testutil.ToFloat64(metricIgnored.WithLabelValues(reason))
}

// TestServeLoopback runs the app in Caddy and talks to it over real UDP:
// offers on the DHCP port, acks on the PXE port, the iPXE script, and no
// answer to non-PXE clients or garbage; with metrics and one log line per
// answer.
func TestServeLoopback(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	cfg := labConfig{dhcpPort: freeUDPPort(t), pxePort: freeUDPPort(t), ipxe: "http://127.0.0.1/boot.ipxe", logPath: logPath}
	load(t, cfg.json())
	c := newTestClient(t)
	biosOffers, efiAcks := answered("bios", "offer", "pxe"), answered("efi-x64", "ack", "pxe")
	notPXE, malformed := ignored(ignoredNotPXE), ignored(ignoredMalformed)

	// BIOS DISCOVER on the DHCP port: an offer naming us and the BIOS file.
	req := loopbackReq(t, dhcpv4.MessageTypeDiscover, 0)
	reply, from := c.mustExchange(cfg.dhcpPort, req)
	if from.Port() != cfg.dhcpPort {
		t.Errorf("offer came from port %d, want the DHCP port %d", from.Port(), cfg.dhcpPort)
	}
	if reply.MessageType() != dhcpv4.MessageTypeOffer || reply.BootFileName != "undionly.kpxe" ||
		!reply.ServerIPAddr.Equal(net.IPv4(127, 0, 0, 1)) || !reply.ServerIdentifier().Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("BIOS offer: %s", reply.Summary())
	}

	// UEFI boot server request on the PXE port: an ack from that port.
	req = loopbackReq(t, dhcpv4.MessageTypeRequest, 7)
	reply, from = c.mustExchange(cfg.pxePort, req)
	if from.Port() != cfg.pxePort || reply.MessageType() != dhcpv4.MessageTypeAck || reply.BootFileName != "ipxe.efi" {
		t.Errorf("UEFI ack from %s: %s", from, reply.Summary())
	}

	// iPXE gets the script.
	reply, _ = c.mustExchange(cfg.dhcpPort, loopbackReq(t, dhcpv4.MessageTypeDiscover, 11, withIPXE()))
	if reply.BootFileName != "http://127.0.0.1/boot.ipxe" {
		t.Errorf("iPXE got %q, want the script URL", reply.BootFileName)
	}

	// A plain DHCP client and a malformed datagram get nothing: the next
	// answer is the one to the PXE request sent after them.
	plain, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("MSFT 5.0")))
	if err != nil {
		t.Fatal(err)
	}
	c.sendRaw(cfg.dhcpPort, plain.ToBytes())
	garbage := loopbackReq(t, dhcpv4.MessageTypeDiscover, 0).ToBytes()
	c.sendRaw(cfg.dhcpPort, garbage[:len(garbage)/2])
	c.sendRaw(cfg.pxePort, []byte("not DHCP at all"))
	c.mustExchange(cfg.dhcpPort, loopbackReq(t, dhcpv4.MessageTypeDiscover, 0))

	if d := answered("bios", "offer", "pxe") - biosOffers; d != 2 {
		t.Errorf("caddy_proxy_dhcp_answers_total{arch=bios,type=offer,client=pxe} went up by %g, want 2", d)
	}
	if d := answered("efi-x64", "ack", "pxe") - efiAcks; d != 1 {
		t.Errorf("caddy_proxy_dhcp_answers_total{arch=efi-x64,type=ack,client=pxe} went up by %g, want 1", d)
	}
	if d := ignored(ignoredNotPXE) - notPXE; d != 1 {
		t.Errorf("ignored{reason=not_pxe} went up by %g, want 1", d)
	}
	if d := ignored(ignoredMalformed) - malformed; d != 2 {
		t.Errorf("ignored{reason=malformed} went up by %g, want 2", d)
	}

	// One info line per answer, with what was handed out.
	var lines []map[string]any
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil && e["msg"] == "answered boot client" {
			lines = append(lines, e)
		}
	}
	if len(lines) != 4 {
		t.Fatalf("%d 'answered boot client' log lines, want 4:\n%s", len(lines), data)
	}
	first := lines[0]
	for k, want := range map[string]any{"logger": "proxy_dhcp", "level": "info", "type": "offer", "arch": "bios", "client": "pxe",
		"file": "undionly.kpxe", "server": "127.0.0.1", "mac": testMAC.String(), "interface": "lo", "service": "dhcp"} {
		if first[k] != want {
			t.Errorf("log line field %s = %v, want %v (%v)", k, first[k], want, first)
		}
	}
}

// TestReloadSharesSocket reloads the config while a client keeps asking:
// every request is answered exactly once (one shared socket, no second
// answer from the config being replaced), none is lost, and right after
// each reload the new config answers. A reload that fails after
// proxy_dhcp started gives the socket back to the running config.
func TestReloadSharesSocket(t *testing.T) {
	cfg := labConfig{dhcpPort: freeUDPPort(t), pxePort: freeUDPPort(t), ipxe: "gen-1", logPath: filepath.Join(t.TempDir(), "caddy.log")}
	load(t, cfg.json())

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bgErr error
	var bgCount int
	wg.Add(1)
	go func() {
		defer wg.Done()
		bg := newTestClient(t)
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			req := loopbackReq(t, dhcpv4.MessageTypeDiscover, 7, withIPXE())
			if _, _, err := bg.exchange(cfg.dhcpPort, req, 3*time.Second); err != nil {
				bgErr = fmt.Errorf("request %d: %w", i, err)
				return
			}
			bgCount++
		}
	}()

	c := newTestClient(t)
	for gen := 2; gen <= 6; gen++ {
		cfg.ipxe = fmt.Sprintf("gen-%d", gen)
		if err := caddy.Load(cfg.json(), true); err != nil {
			t.Fatalf("reload %d: %v", gen, err)
		}
		reply, _ := c.mustExchange(cfg.dhcpPort, loopbackReq(t, dhcpv4.MessageTypeDiscover, 7, withIPXE()))
		if reply.BootFileName != cfg.ipxe {
			t.Errorf("after reload %d the answer names %q, want %q", gen, reply.BootFileName, cfg.ipxe)
		}
	}
	// A reload whose http app cannot bind fails after proxy_dhcp may have
	// started; the running config must keep answering.
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	failing := cfg
	failing.ipxe = "never"
	failing.extraApps = fmt.Sprintf(`"http": {"servers": {"s": {"listen": [%q], "automatic_https": {"disable": true}}}}`, busy.Addr().String())
	if err := caddy.Load(failing.json(), true); err == nil {
		t.Fatal("a config with a busy http listener loaded")
	}
	reply, _ := c.mustExchange(cfg.dhcpPort, loopbackReq(t, dhcpv4.MessageTypeDiscover, 7, withIPXE()))
	if reply.BootFileName != cfg.ipxe {
		t.Errorf("after the failed reload the answer names %q, want the running config's %q", reply.BootFileName, cfg.ipxe)
	}

	close(stop)
	wg.Wait()
	if bgErr != nil {
		t.Errorf("client asking during the reloads: %v", bgErr)
	}
	t.Logf("%d requests during 5 reloads and a failed one, each answered once", bgCount)
	// A last request: a duplicate answer to the background client's last
	// request would have shown up there; here nothing but this answer.
	c.mustExchange(cfg.pxePort, loopbackReq(t, dhcpv4.MessageTypeRequest, 7))

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	n := 0
	sockets.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Errorf("%d sockets still open after caddy.Stop", n)
	}
}

// TestCaddyfile adapts the global option and checks that errors name the
// file and line.
func TestCaddyfile(t *testing.T) {
	input := `{
	proxy_dhcp {
		listen 192.168.1.10 eth0
		boot bios undionly.kpxe
		boot efi-x64 ipxe.efi
		boot 41 rpi.bin
		ipxe http://192.168.1.10/boot.ipxe
		server_address 192.168.1.11
		dhcp_port 1067
		pxe_port 14011
	}
}
`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			ProxyDHCP json.RawMessage `json:"proxy_dhcp"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	want := `{"listen":["192.168.1.10","eth0"],"boot":{"41":"rpi.bin","bios":"undionly.kpxe","efi-x64":"ipxe.efi"},"ipxe":"http://192.168.1.10/boot.ipxe","server_address":"192.168.1.11","dhcp_port":1067,"pxe_port":14011}`
	if string(cfg.Apps.ProxyDHCP) != want {
		t.Errorf("adapted to\n%s\nwant\n%s", cfg.Apps.ProxyDHCP, want)
	}

	for _, tc := range []struct{ line, want string }{
		{"boot arm64 ipxe.efi", "unknown architecture"},
		{"boot bios", "wrong argument count"},
		{"boot bios a b", "wrong argument count"},
		{"listen", "wrong argument count"},
		{"listen 192.168.1.300", "neither an IPv4 address nor an interface name"},
		{"listen 10.0.0.1:67", "neither an IPv4 address nor an interface name"},
		{"listen fe80::1", "IPv4 only"},
		{"ipxe", "wrong argument count"},
		{"server_address eth0", "not an IPv4 address"},
		{"pxe_port 70000", "not a port number"},
		{"tftp_port 69", "unrecognized proxy_dhcp subdirective"},
	} {
		input := "{\n\tproxy_dhcp {\n\t\tlisten 192.168.1.10\n\t\t" + tc.line + "\n\t}\n}\n"
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Caddyfile:4") {
			t.Errorf("%q: error %v, want %q at Caddyfile:4", tc.line, err, tc.want)
		}
	}
}

// TestValidate checks the errors Provision and Validate report for JSON
// configs, which do not pass through the Caddyfile checks.
func TestValidate(t *testing.T) {
	long := strings.Repeat("x", 128)
	for _, tc := range []struct{ app, want string }{
		{`{"boot": {"bios": "a"}}`, "at least one address"},
		{`{"listen": ["10.0.0.1"]}`, "nothing to hand out"},
		{`{"listen": ["10.0.0.1/24"], "boot": {"bios": "a"}}`, "neither an IPv4 address"},
		{`{"listen": ["10.0.0.1"], "boot": {"bios": "a", "http-x64": "x64.efi"}}`, "need an http:// or https:// URL"},
		{`{"listen": ["10.0.0.1"], "boot": {"bios": "` + long + `"}}`, "holds 127"},
		{`{"listen": ["10.0.0.1"], "boot": {"efi-x64": "a", "9": "b"}}`, "configured by both"},
		{`{"listen": ["10.0.0.1"], "boot": {"risc": "a"}}`, "unknown architecture"},
		{`{"listen": ["10.0.0.1"], "boot": {"bios": "a"}, "dhcp_port": 4011}`, "both 4011"},
		{`{"listen": ["10.0.0.1"], "boot": {"bios": "a"}, "server_address": "::1"}`, "not an IPv4 address"},
	} {
		var cfg caddy.Config
		raw := `{"admin": {"disabled": true}, "apps": {"proxy_dhcp": ` + tc.app + `}}`
		if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
			t.Fatal(err)
		}
		if err := caddy.Validate(&cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.app, err, tc.want)
		}
	}
}

// TestListenInterfaceName serves an interface given by name: answers name
// the address the request was sent to.
func TestListenInterfaceName(t *testing.T) {
	dhcpPort, pxePort := freeUDPPort(t), freeUDPPort(t)
	cfg := fmt.Sprintf(`{"admin": {"disabled": true, "config": {"persist": false}},
		"logging": {"logs": {"default": {"writer": {"output": "file", "filename": %q}}}},
		"apps": {"proxy_dhcp": {"listen": ["lo"], "boot": {"efi-x64": "ipxe.efi"}, "dhcp_port": %d, "pxe_port": %d}}}`,
		filepath.Join(t.TempDir(), "caddy.log"), dhcpPort, pxePort)
	load(t, []byte(cfg))
	c := newTestClient(t)
	reply, from := c.mustExchange(pxePort, loopbackReq(t, dhcpv4.MessageTypeRequest, 7))
	if from.Port() != pxePort || reply.BootFileName != "ipxe.efi" ||
		!reply.ServerIPAddr.Equal(net.IPv4(127, 0, 0, 1)) || !reply.ServerIdentifier().Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("ack from %s: %s", from, reply.Summary())
	}
	// Not configured for BIOS: ignored, so the next answer is to the
	// UEFI request sent after it.
	c.sendRaw(dhcpPort, loopbackReq(t, dhcpv4.MessageTypeDiscover, 0).ToBytes())
	if reply, _ := c.mustExchange(dhcpPort, loopbackReq(t, dhcpv4.MessageTypeDiscover, 7)); reply.MessageType() != dhcpv4.MessageTypeOffer {
		t.Errorf("want an offer, got %s", reply.Summary())
	}

	// An interface that does not exist fails the config at start.
	bad := strings.Replace(cfg, `["lo"]`, `["nosuchif0"]`, 1)
	if err := caddy.Load([]byte(bad), true); err == nil || !strings.Contains(err.Error(), "nosuchif0") {
		t.Errorf("loading a config on a missing interface: %v, want an error naming it", err)
	}
}
