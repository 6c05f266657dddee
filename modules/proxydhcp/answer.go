package proxydhcp

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// service is the port a request arrived on.
type service int

const (
	// serviceDHCP is the DHCP server port (67): proxy offers to broadcast
	// DISCOVERs.
	serviceDHCP service = iota
	// servicePXE is the PXE boot server port (4011): acknowledgements to
	// the boot-server REQUESTs firmware sends after it has an address.
	servicePXE
)

func (s service) String() string {
	if s == servicePXE {
		return "pxe"
	}
	return "dhcp"
}

// Vendor classes (option 60) of network boot clients.
const (
	vendorPXE  = "PXEClient"
	vendorHTTP = "HTTPClient"
)

// ipxeUserClass is the user class (option 77) iPXE sends.
const ipxeUserClass = "iPXE"

// PXE vendor sub-options (option 43, PXE 2.1 table 2-1).
const (
	pxeDiscoveryControl = 6   // bit 3: boot the file in this offer, no discovery
	pxeBootItem         = 71  // boot server type and layer
	pxeEnd              = 255 // end of the sub-options
)

// Reasons a request is left unanswered, used as metric labels.
const (
	ignoredMalformed   = "malformed"    // not a DHCP packet
	ignoredNotRequest  = "not_request"  // a BOOTREPLY, not a request
	ignoredNotPXE      = "not_pxe"      // no PXEClient or HTTPClient vendor class
	ignoredMessageType = "message_type" // a message type proxyDHCP does not answer on this port
	ignoredDHCPRequest = "dhcp_request" // a DHCPREQUEST on port 67, the DHCP server's business
	ignoredNoArch      = "no_arch"      // no client architecture (option 93)
	ignoredNoBootFile  = "no_boot_file" // no boot file configured for the architecture
	ignoredNoAddress   = "no_address"   // no IPv4 address of ours on the link
)

// answerConfig is what answers are built from, resolved from the app's
// config in Provision.
type answerConfig struct {
	boot       map[uint16]string // boot file by option 93 type
	ipxe       string            // boot file for iPXE clients; "" hands them the boot file
	serverAddr netip.Addr        // siaddr; invalid means our own address
}

// answer is the outcome of one request: a reply, or the reason there is
// none, and what the log line and metrics report.
type answer struct {
	reply   *dhcpv4.DHCPv4 // nil when the request is ignored
	ignored string         // why there is no reply
	arch    uint16         // the architecture the boot file was chosen for
	client  string         // "pxe" (firmware), "ipxe" or "http"
	file    string
}

// parseRequest decodes a datagram received on a proxyDHCP port.
func parseRequest(b []byte) (*dhcpv4.DHCPv4, error) {
	return dhcpv4.FromBytes(b)
}

// buildAnswer decides how to answer req, which arrived on svc at our
// address local (the address on the link the request came in on), and
// builds the reply. It does no I/O.
//
// On the DHCP port only DISCOVERs are answered, with offers; on the PXE
// port only REQUESTs, with acks. Answers carry no address (yiaddr 0 in
// offers): the site's DHCP server leases those. They name the boot server
// in siaddr, our address in option 54, the boot file in the header's file
// field and the client's vendor class in option 60, and echo the client's
// machine identifier (option 97). iPXE clients get the iPXE script when
// one is configured, every other client the boot file of the first of its
// architectures that has one. BIOS clients
// get option 43 with discovery control 8, so they boot the file in the
// offer; UEFI clients get no option 43, which makes EDK2 confirm with a
// request on port 4011, the path every EDK2 version accepts. When the boot
// server is another host, every PXE client gets option 43, since EDK2
// would send its port 4011 request there.
func buildAnswer(req *dhcpv4.DHCPv4, svc service, local netip.Addr, cfg *answerConfig) answer {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return answer{ignored: ignoredNotRequest}
	}
	vendor := vendorClass(req.ClassIdentifier())
	if vendor == "" {
		return answer{ignored: ignoredNotPXE}
	}
	var replyType dhcpv4.MessageType
	switch mt := req.MessageType(); {
	case svc == serviceDHCP && mt == dhcpv4.MessageTypeDiscover:
		replyType = dhcpv4.MessageTypeOffer
	case svc == serviceDHCP && mt == dhcpv4.MessageTypeRequest:
		// A DHCPREQUEST on port 67 takes the address the DHCP server
		// offered; the proxy has no part in it (PXE 2.1 2.2.3). An ack
		// from us would carry no address: with the DHCP server on our
		// own address (same host, same option 54), OVMF took such an
		// ack for the server's and declined address 0.0.0.0.
		return answer{ignored: ignoredDHCPRequest}
	case svc == servicePXE && mt == dhcpv4.MessageTypeRequest:
		replyType = dhcpv4.MessageTypeAck
	default:
		return answer{ignored: ignoredMessageType}
	}
	archs := clientArchs(req)
	if len(archs) == 0 {
		return answer{ignored: ignoredNoArch}
	}
	a := answer{arch: archs[0], client: "pxe"}
	switch {
	case vendor == vendorHTTP:
		a.client = "http"
	case cfg.ipxe != "" && isIPXE(req):
		a.client = "ipxe"
		a.file = cfg.ipxe
	}
	if a.file == "" {
		for _, t := range archs {
			if f, ok := cfg.boot[t]; ok {
				a.arch, a.file = t, f
				break
			}
		}
	}
	if a.file == "" {
		return answer{ignored: ignoredNoBootFile, arch: archs[0], client: a.client}
	}
	if !local.Is4() {
		return answer{ignored: ignoredNoAddress, arch: a.arch, client: a.client}
	}
	siaddr := local
	if cfg.serverAddr.IsValid() {
		siaddr = cfg.serverAddr
	}

	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(replyType),
		dhcpv4.WithServerIP(net.IP(siaddr.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(local.AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendor)),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientMachineIdentifier),
	}
	if svc == serviceDHCP {
		// yiaddr is 0, so the client cannot be reached by unicast.
		mods = append(mods, dhcpv4.WithBroadcast(true))
	}
	if req.IsOptionRequested(dhcpv4.OptionTFTPServerName) {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptTFTPServerName(siaddr.String())))
	}
	if vendor == vendorPXE {
		if v := vendorOptions(req, a.arch, siaddr != local); v != nil {
			mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, v))
		}
	}
	reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return answer{ignored: ignoredMalformed}
	}
	if replyType == dhcpv4.MessageTypeAck && svc == servicePXE {
		// As dnsmasq does: the boot server confirms the address the
		// client already has.
		reply.YourIPAddr = req.ClientIPAddr
	}
	reply.ServerHostName = siaddr.String()
	reply.BootFileName = a.file
	a.reply = reply
	return a
}

// vendorOptions returns option 43 for a PXEClient answer, or nil.
func vendorOptions(req *dhcpv4.DHCPv4, arch uint16, remoteServer bool) []byte {
	var v []byte
	// A classic boot server discovery request names a boot item, which
	// the acknowledgement repeats.
	if sub := req.Options.Get(dhcpv4.OptionVendorSpecificInformation); sub != nil {
		opts := make(dhcpv4.Options)
		if opts.FromBytes(sub) == nil {
			if item := opts.Get(dhcpv4.GenericOptionCode(pxeBootItem)); len(item) == 4 {
				v = append(v, pxeBootItem, 4)
				v = append(v, item...)
			}
		}
	}
	if v == nil && (arch == 0 || remoteServer) {
		v = []byte{pxeDiscoveryControl, 1, 8}
	}
	if v == nil {
		return nil
	}
	return append(v, pxeEnd)
}

// vendorClass returns the vendor class of a network boot client, or "".
func vendorClass(class string) string {
	switch {
	case strings.HasPrefix(class, vendorPXE):
		return vendorPXE
	case strings.HasPrefix(class, vendorHTTP):
		return vendorHTTP
	}
	return ""
}

// clientArchs returns the client's architecture types from option 93 or,
// for clients that omit it, from the "Arch:xxxxx" field of option 60.
func clientArchs(req *dhcpv4.DHCPv4) []uint16 {
	var out []uint16
	for _, a := range req.ClientArch() {
		out = append(out, uint16(a))
	}
	if len(out) > 0 {
		return out
	}
	fields := strings.Split(req.ClassIdentifier(), ":")
	for i := 1; i+1 < len(fields); i++ {
		if fields[i] == "Arch" {
			if n, err := strconv.ParseUint(fields[i+1], 10, 16); err == nil {
				return []uint16{uint16(n)}
			}
		}
	}
	return nil
}

// isIPXE reports whether the client is iPXE (user class "iPXE").
func isIPXE(req *dhcpv4.DHCPv4) bool {
	for _, uc := range req.UserClass() {
		if uc == ipxeUserClass {
			return true
		}
	}
	return false
}

// limitedBroadcast is 255.255.255.255.
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// replyDestination is where the reply to a request from src goes. Port
// 4011 answers go back to the request's source address and port (EDK2
// sends from 4011, iPXE from 68). Port 67 answers follow RFC 2131 section
// 4.1: to the relay agent (giaddr), else to the client's address (ciaddr),
// else broadcast on the link the request came in on, since yiaddr is 0.
// The port is the request's source port: 68 from clients, 67 from relays.
func replyDestination(req *dhcpv4.DHCPv4, svc service, src netip.AddrPort) (dst netip.AddrPort, broadcast bool) {
	if svc == servicePXE {
		return src, false
	}
	port := src.Port()
	if port == 0 {
		port = dhcpv4.ClientPort
	}
	if a, ok := netip.AddrFromSlice(req.GatewayIPAddr.To4()); ok && !a.IsUnspecified() {
		return netip.AddrPortFrom(a, port), false
	}
	if a, ok := netip.AddrFromSlice(req.ClientIPAddr.To4()); ok && !a.IsUnspecified() {
		return netip.AddrPortFrom(a, port), false
	}
	return netip.AddrPortFrom(limitedBroadcast, port), true
}
