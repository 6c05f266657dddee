// Package proxydhcp is the Caddy app "proxy_dhcp": a proxyDHCP server (PXE
// 2.1 "Proxy DHCP", RFC 4578) that tells network boot firmware which boot
// server and file to load, by client architecture, without handing out
// addresses, so it runs beside the site's unmodified DHCP server. With the
// tftp app and an HTTP site in the same Caddy, one Caddyfile runs a whole
// netboot lab.
package proxydhcp

import (
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(new(App))
}

// Default ports.
const (
	defaultDHCPPort = 67   // DHCP server port
	defaultPXEPort  = 4011 // PXE boot server port
)

// maxBootFileLen is the longest boot file name: the header's file field
// is 128 bytes and ends with a NUL.
const maxBootFileLen = 127

// App answers PXE and UEFI HTTP boot clients with proxyDHCP offers: no
// address (the site's DHCP server leases those), but the boot server and
// the boot file for the client's architecture. It answers DHCPDISCOVERs on
// the DHCP port (67) and boot server requests on the PXE port (4011), and
// ignores every client whose vendor class (option 60) is not PXEClient or
// HTTPClient.
type App struct {
	// Listen lists where to answer: IPv4 addresses or interface names.
	// Each is served on the DHCP and the PXE port of the interface that
	// has the address (or of the named interface), bound to that
	// interface; a socket bound to an address would not receive the
	// broadcast DISCOVERs. Required; IPv4 only.
	Listen []string `json:"listen,omitempty"`

	// Boot maps client architectures to the boot file they are given,
	// a file name on the boot server's TFTP service or, for HTTP boot
	// clients, a URL. Keys are architecture names (bios, efi-ia32,
	// efi-x64, efi-arm64, http-x64, http-arm64, ...; see the README's
	// table) or option 93 type numbers in decimal. Architectures that
	// are not listed are not answered. At most 127 bytes per file.
	Boot map[string]string `json:"boot,omitempty"`

	// IPXE is the boot file given to clients that are already iPXE (user
	// class "iPXE", option 77), usually the URL of an iPXE script, so
	// that an iPXE binary handed out by Boot does not load itself again
	// in a loop. Default: empty, iPXE clients get the file in Boot like
	// any other client.
	IPXE string `json:"ipxe,omitempty"`

	// ServerAddress is the boot server's IPv4 address handed out in
	// siaddr, where clients fetch the boot file by TFTP. Default: the
	// address of ours the request arrived on.
	ServerAddress string `json:"server_address,omitempty"`

	// DHCPPort is the UDP port DHCPDISCOVERs are answered on. Default: 67.
	DHCPPort int `json:"dhcp_port,omitempty"`

	// PXEPort is the UDP port boot server requests are answered on.
	// Default: 4011.
	PXEPort int `json:"pxe_port,omitempty"`

	logger   *zap.Logger
	listens  []listenSpec
	answers  answerConfig
	bindings []*binding
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "proxy_dhcp",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision fills in the defaults and parses the listen entries, the boot
// files and the server address. It binds nothing.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if a.DHCPPort == 0 {
		a.DHCPPort = defaultDHCPPort
	}
	if a.PXEPort == 0 {
		a.PXEPort = defaultPXEPort
	}
	a.listens = nil
	for _, entry := range a.Listen {
		l, err := parseListen(entry)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		a.listens = append(a.listens, l)
	}
	a.answers = answerConfig{boot: make(map[uint16]string), ipxe: a.IPXE}
	byType := make(map[uint16]string)
	for _, name := range sortedKeys(a.Boot) {
		types, err := parseArch(name)
		if err != nil {
			return fmt.Errorf("boot: %w", err)
		}
		for _, t := range types {
			if other, dup := byType[t]; dup {
				return fmt.Errorf("boot: architecture type %d is configured by both %q and %q", t, other, name)
			}
			byType[t] = name
			a.answers.boot[t] = a.Boot[name]
		}
	}
	if a.ServerAddress != "" {
		addr, err := netip.ParseAddr(a.ServerAddress)
		if err != nil || !addr.Is4() {
			return fmt.Errorf("server_address: %q is not an IPv4 address", a.ServerAddress)
		}
		a.answers.serverAddr = addr
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	return nil
}

// Validate rejects configs that cannot run.
func (a *App) Validate() error {
	if len(a.listens) == 0 {
		return fmt.Errorf("listen: at least one address or interface is required")
	}
	seen := make(map[string]bool)
	for _, l := range a.listens {
		if seen[l.entry] {
			return fmt.Errorf("listen: %s is listed twice", l.entry)
		}
		seen[l.entry] = true
	}
	for name, p := range map[string]int{"dhcp_port": a.DHCPPort, "pxe_port": a.PXEPort} {
		if p < 1 || p > 65535 {
			return fmt.Errorf("%s: %d is not a port number", name, p)
		}
	}
	if a.DHCPPort == a.PXEPort {
		return fmt.Errorf("dhcp_port and pxe_port are both %d", a.DHCPPort)
	}
	if len(a.answers.boot) == 0 && a.IPXE == "" {
		return fmt.Errorf("nothing to hand out: configure boot files (boot) or an iPXE script (ipxe)")
	}
	for _, name := range sortedKeys(a.Boot) {
		if err := checkBootFile(a.Boot[name]); err != nil {
			return fmt.Errorf("boot %s: %w", name, err)
		}
	}
	for t, file := range a.answers.boot {
		if httpArchs[t] && !isURL(file) {
			return fmt.Errorf("boot %s: HTTP boot clients need an http:// or https:// URL, not %q", archLabel(t), file)
		}
	}
	if a.IPXE != "" {
		if err := checkBootFile(a.IPXE); err != nil {
			return fmt.Errorf("ipxe: %w", err)
		}
	}
	return nil
}

// Start binds the DHCP and PXE ports on every configured interface, or
// takes over the sockets of the config it replaces.
func (a *App) Start() error {
	onIface := make(map[string]string)
	for _, l := range a.listens {
		iface, err := l.interfaceName()
		if err != nil {
			a.stopBindings()
			return fmt.Errorf("listen %s: %w", l.entry, err)
		}
		if other, dup := onIface[iface]; dup {
			a.stopBindings()
			return fmt.Errorf("listen %s and %s are both on interface %s", other, l.entry, iface)
		}
		onIface[iface] = l.entry
		for _, sp := range []struct {
			svc  service
			port int
		}{{serviceDHCP, a.DHCPPort}, {servicePXE, a.PXEPort}} {
			sock, err := acquireSocket(iface, uint16(sp.port), a.logger)
			if err != nil {
				a.stopBindings()
				return err
			}
			b := &binding{app: a, sock: sock, svc: sp.svc, addr: l.addr}
			b.prev = sock.setHandler(b)
			a.bindings = append(a.bindings, b)
		}
		a.logger.Info("serving proxyDHCP",
			zap.String("listen", l.entry),
			zap.String("interface", iface),
			zap.Int("dhcp_port", a.DHCPPort),
			zap.Int("pxe_port", a.PXEPort))
	}
	return nil
}

// Stop hands the sockets back to the config this one replaced if it is
// still running (a rolled-back reload), and releases them; the last
// config to release a socket closes it.
func (a *App) Stop() error {
	a.stopBindings()
	return nil
}

// Cleanup releases what a failed Start may have left.
func (a *App) Cleanup() error {
	a.stopBindings()
	return nil
}

func (a *App) stopBindings() {
	for _, b := range a.bindings {
		b.sock.restoreHandler(b, b.prev)
		b.stopped.Store(true)
		if err := b.sock.release(); err != nil {
			a.logger.Error("closing socket", zap.String("interface", b.sock.iface), zap.Uint16("port", b.sock.port), zap.Error(err))
		}
	}
	a.bindings = nil
}

// binding is one config's use of a shared socket.
type binding struct {
	app     *App
	sock    *socket
	svc     service
	addr    netip.Addr    // the configured address, if the listen entry is one
	prev    packetHandler // the handler this one replaced
	stopped atomic.Bool
}

// handlePacket answers one request.
func (b *binding) handlePacket(s *socket, pkt []byte, src netip.AddrPort, info packetInfo) {
	if b.stopped.Load() {
		return
	}
	logger := b.app.logger
	req, err := parseRequest(pkt)
	if err != nil {
		metricIgnored.WithLabelValues(ignoredMalformed).Inc()
		logger.Debug("ignored malformed request", zap.Stringer("remote", src), zap.String("interface", s.iface), zap.Error(err))
		return
	}
	local := b.localAddr(info)
	ans := buildAnswer(req, b.svc, local, &b.app.answers)
	if ans.reply == nil {
		metricIgnored.WithLabelValues(ans.ignored).Inc()
		logger.Debug("ignored request",
			zap.String("reason", ans.ignored),
			zap.Stringer("mac", req.ClientHWAddr),
			zap.Stringer("remote", src),
			zap.String("interface", s.iface),
			zap.String("service", b.svc.String()),
			zap.String("message_type", req.MessageType().String()),
			zap.String("vendor_class", req.ClassIdentifier()))
		return
	}
	dst, _ := replyDestination(req, b.svc, src)
	if err := s.send(ans.reply.ToBytes(), dst, info.ifIndex, local); err != nil {
		metricSendErrors.Inc()
		logger.Error("sending answer", zap.Stringer("to", dst), zap.String("interface", s.iface), zap.Error(err))
		return
	}
	msgType := strings.ToLower(strings.TrimPrefix(ans.reply.MessageType().String(), "DHCP"))
	metricAnswers.WithLabelValues(archLabel(ans.arch), msgType, ans.client).Inc()
	logger.Info("answered boot client",
		zap.Stringer("mac", req.ClientHWAddr),
		zap.String("type", msgType),
		zap.String("arch", archLabel(ans.arch)),
		zap.String("client", ans.client),
		zap.String("file", ans.file),
		zap.Stringer("server", ans.reply.ServerIPAddr),
		zap.Stringer("remote", src),
		zap.Stringer("to", dst),
		zap.String("interface", s.iface),
		zap.String("service", b.svc.String()))
}

// localAddr is our address for answering a request: the one it was sent
// to when that is a unicast address of ours, else the configured address,
// else the address the kernel picks on the interface.
func (b *binding) localAddr(info packetInfo) netip.Addr {
	if info.dst.Is4() && info.dst == info.local {
		return info.dst
	}
	if b.addr.IsValid() {
		return b.addr
	}
	if info.local.Is4() && !info.local.IsUnspecified() {
		return info.local
	}
	return netip.Addr{}
}

// checkBootFile rejects boot files that do not fit the header's file
// field.
func checkBootFile(file string) error {
	switch {
	case file == "":
		return fmt.Errorf("empty boot file")
	case len(file) > maxBootFileLen:
		return fmt.Errorf("%q is %d bytes long; the DHCP file field holds %d", file, len(file), maxBootFileLen)
	case strings.ContainsRune(file, 0):
		return fmt.Errorf("%q contains a NUL byte", file)
	}
	return nil
}

func isURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ packetHandler      = (*binding)(nil)
)
