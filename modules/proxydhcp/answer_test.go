package proxydhcp

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

var (
	testMAC        = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	testGUID       = append([]byte{0}, bytes.Repeat([]byte{0xab}, 16)...)
	testLocal      = netip.MustParseAddr("192.168.77.1")
	testClientAddr = netip.MustParseAddr("192.168.77.100")
)

// testAnswers is the configuration most answer tests use.
func testAnswers() *answerConfig {
	return &answerConfig{
		boot: map[uint16]string{
			0:  "undionly.kpxe",
			7:  "ipxe.efi",
			9:  "ipxe.efi",
			11: "ipxe-arm64.efi",
			16: "http://192.168.77.1/x64.efi",
		},
		ipxe: "http://192.168.77.1/boot.ipxe",
	}
}

// clientReq builds a request as PXE firmware sends it: vendor class
// PXEClient with the architecture, options 93, 94 and 97, and optionally
// the user class iPXE.
func clientReq(t testing.TB, mt dhcpv4.MessageType, arch uint16, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	base := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithHwAddr(testMAC),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:003016", arch))),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{byte(arch >> 8), byte(arch)}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 3, 16}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, testGUID),
	}
	req, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func withIPXE() dhcpv4.Modifier {
	return dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE"))
}

// roundTrip encodes and decodes a packet, as it travels on the wire.
func roundTrip(t testing.TB, p *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	out, err := dhcpv4.FromBytes(p.ToBytes())
	if err != nil {
		t.Fatalf("re-parsing %s: %v", p.Summary(), err)
	}
	return out
}

// checkProxyAnswer checks what every proxyDHCP answer must carry.
func checkProxyAnswer(t *testing.T, req, reply *dhcpv4.DHCPv4, mt dhcpv4.MessageType, siaddr, file string) {
	t.Helper()
	if reply.OpCode != dhcpv4.OpcodeBootReply || reply.TransactionID != req.TransactionID || !bytes.Equal(reply.ClientHWAddr, req.ClientHWAddr) {
		t.Errorf("op %v xid %v chaddr %v, want a reply to xid %v from %v", reply.OpCode, reply.TransactionID, reply.ClientHWAddr, req.TransactionID, req.ClientHWAddr)
	}
	if got := reply.MessageType(); got != mt {
		t.Errorf("message type %v, want %v", got, mt)
	}
	if got := reply.ServerIPAddr.String(); got != siaddr {
		t.Errorf("siaddr %s, want %s", got, siaddr)
	}
	if got := reply.ServerIdentifier(); !got.Equal(net.IP(testLocal.AsSlice())) {
		t.Errorf("option 54 %v, want our address %s", got, testLocal)
	}
	if reply.BootFileName != file {
		t.Errorf("file %q, want %q", reply.BootFileName, file)
	}
	if got := reply.GetOneOption(dhcpv4.OptionClientMachineIdentifier); !bytes.Equal(got, testGUID) {
		t.Errorf("option 97 %x, want the client's %x", got, testGUID)
	}
}

func TestAnswerOfferPerArchitecture(t *testing.T) {
	for _, tc := range []struct {
		name   string
		arch   uint16
		file   string
		opt43  []byte
		client string
	}{
		// BIOS ROMs boot the file in the offer (43.6 = 8).
		{"bios", 0, "undionly.kpxe", []byte{6, 1, 8, 255}, "pxe"},
		// UEFI gets no option 43 and confirms on port 4011.
		{"efi-x64 (7)", 7, "ipxe.efi", nil, "pxe"},
		{"efi-x64 (9, EFI BC as sent by some x64 firmware)", 9, "ipxe.efi", nil, "pxe"},
		{"efi-arm64", 11, "ipxe-arm64.efi", nil, "pxe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := clientReq(t, dhcpv4.MessageTypeDiscover, tc.arch)
			a := buildAnswer(roundTrip(t, req), serviceDHCP, testLocal, testAnswers())
			if a.reply == nil {
				t.Fatalf("ignored (%s), want an offer", a.ignored)
			}
			reply := roundTrip(t, a.reply)
			checkProxyAnswer(t, req, reply, dhcpv4.MessageTypeOffer, "192.168.77.1", tc.file)
			if !reply.YourIPAddr.IsUnspecified() || !reply.ClientIPAddr.IsUnspecified() {
				t.Errorf("yiaddr %v ciaddr %v: a proxy offer hands out no address", reply.YourIPAddr, reply.ClientIPAddr)
			}
			if !reply.IsBroadcast() {
				t.Errorf("broadcast flag not set")
			}
			if got := reply.ClassIdentifier(); got != "PXEClient" {
				t.Errorf("option 60 %q, want PXEClient", got)
			}
			if got := reply.GetOneOption(dhcpv4.OptionVendorSpecificInformation); !bytes.Equal(got, tc.opt43) {
				t.Errorf("option 43 %x, want %x", got, tc.opt43)
			}
			if a.arch != tc.arch || a.client != tc.client || a.file != tc.file {
				t.Errorf("answer arch %d client %s file %s, want %d %s %s", a.arch, a.client, a.file, tc.arch, tc.client, tc.file)
			}
		})
	}
}

func TestAnswerIPXEGetsScript(t *testing.T) {
	for _, arch := range []uint16{0, 7, 11} {
		req := clientReq(t, dhcpv4.MessageTypeDiscover, arch, withIPXE())
		a := buildAnswer(roundTrip(t, req), serviceDHCP, testLocal, testAnswers())
		if a.reply == nil {
			t.Fatalf("arch %d: ignored (%s)", arch, a.ignored)
		}
		checkProxyAnswer(t, req, roundTrip(t, a.reply), dhcpv4.MessageTypeOffer, "192.168.77.1", "http://192.168.77.1/boot.ipxe")
		if a.client != "ipxe" {
			t.Errorf("arch %d: client %q, want ipxe", arch, a.client)
		}
	}
	// The RFC 3004 form of the user class is recognised too.
	req := clientReq(t, dhcpv4.MessageTypeDiscover, 7, dhcpv4.WithUserClass("iPXE", true))
	if a := buildAnswer(roundTrip(t, req), serviceDHCP, testLocal, testAnswers()); a.file != "http://192.168.77.1/boot.ipxe" {
		t.Errorf("RFC 3004 user class iPXE: file %q, want the script", a.file)
	}
	// Without an ipxe setting, iPXE gets the boot file like firmware.
	cfg := testAnswers()
	cfg.ipxe = ""
	req = clientReq(t, dhcpv4.MessageTypeDiscover, 7, withIPXE())
	if a := buildAnswer(roundTrip(t, req), serviceDHCP, testLocal, cfg); a.file != "ipxe.efi" || a.client != "pxe" {
		t.Errorf("no ipxe setting: file %q client %q, want ipxe.efi from boot", a.file, a.client)
	}
}

func TestAnswerBootServerRequest(t *testing.T) {
	// EDK2 after a proxy offer without option 43: a unicast REQUEST to
	// port 4011 with its new address in ciaddr.
	req := clientReq(t, dhcpv4.MessageTypeRequest, 7, dhcpv4.WithClientIP(net.IP(testClientAddr.AsSlice())))
	a := buildAnswer(roundTrip(t, req), servicePXE, testLocal, testAnswers())
	if a.reply == nil {
		t.Fatalf("ignored (%s), want an ack", a.ignored)
	}
	reply := roundTrip(t, a.reply)
	checkProxyAnswer(t, req, reply, dhcpv4.MessageTypeAck, "192.168.77.1", "ipxe.efi")
	if !reply.YourIPAddr.Equal(net.IP(testClientAddr.AsSlice())) {
		t.Errorf("yiaddr %v, want the client's own %s", reply.YourIPAddr, testClientAddr)
	}
	if got := reply.GetOneOption(dhcpv4.OptionVendorSpecificInformation); got != nil {
		t.Errorf("option 43 %x in a UEFI ack, want none", got)
	}
	if dst, bc := replyDestination(req, servicePXE, netip.MustParseAddrPort("192.168.77.100:4011")); dst.String() != "192.168.77.100:4011" || bc {
		t.Errorf("4011 reply goes to %s (broadcast %v), want the request's source 192.168.77.100:4011", dst, bc)
	}

	// A classic boot server discovery names a boot item (43.71), which
	// the ack repeats.
	item := []byte{pxeBootItem, 4, 0x80, 0x00, 0x00, 0x00, pxeEnd}
	req = clientReq(t, dhcpv4.MessageTypeRequest, 0, dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, item))
	a = buildAnswer(roundTrip(t, req), servicePXE, testLocal, testAnswers())
	if a.reply == nil {
		t.Fatalf("boot item request ignored (%s)", a.ignored)
	}
	if got := a.reply.GetOneOption(dhcpv4.OptionVendorSpecificInformation); !bytes.Equal(got, item) {
		t.Errorf("option 43 %x, want the boot item echoed %x", got, item)
	}
}

func TestAnswerServerAddress(t *testing.T) {
	cfg := testAnswers()
	cfg.serverAddr = netip.MustParseAddr("192.168.77.9")
	req := clientReq(t, dhcpv4.MessageTypeDiscover, 7, dhcpv4.WithRequestedOptions(dhcpv4.OptionTFTPServerName))
	a := buildAnswer(roundTrip(t, req), serviceDHCP, testLocal, cfg)
	if a.reply == nil {
		t.Fatalf("ignored (%s)", a.ignored)
	}
	reply := roundTrip(t, a.reply)
	checkProxyAnswer(t, req, reply, dhcpv4.MessageTypeOffer, "192.168.77.9", "ipxe.efi")
	if got := reply.TFTPServerName(); got != "192.168.77.9" {
		t.Errorf("option 66 %q, want 192.168.77.9 as requested", got)
	}
	// UEFI would send its port 4011 request to the other host: it is told
	// to boot from the offer instead.
	if got := reply.GetOneOption(dhcpv4.OptionVendorSpecificInformation); !bytes.Equal(got, []byte{6, 1, 8, 255}) {
		t.Errorf("option 43 %x, want 06 01 08 ff with a remote boot server", got)
	}
}

func TestAnswerHTTPClient(t *testing.T) {
	req := clientReq(t, dhcpv4.MessageTypeDiscover, 16,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003000")))
	a := buildAnswer(roundTrip(t, req), serviceDHCP, testLocal, testAnswers())
	if a.reply == nil {
		t.Fatalf("ignored (%s)", a.ignored)
	}
	reply := roundTrip(t, a.reply)
	checkProxyAnswer(t, req, reply, dhcpv4.MessageTypeOffer, "192.168.77.1", "http://192.168.77.1/x64.efi")
	if got := reply.ClassIdentifier(); got != "HTTPClient" {
		t.Errorf("option 60 %q, want HTTPClient", got)
	}
	if got := reply.GetOneOption(dhcpv4.OptionVendorSpecificInformation); got != nil {
		t.Errorf("option 43 %x for an HTTP client, want none", got)
	}
}

func TestAnswerIgnored(t *testing.T) {
	cfg := testAnswers()
	plain, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(testMAC),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("MSFT 5.0")))
	if err != nil {
		t.Fatal(err)
	}
	noArch := clientReq(t, dhcpv4.MessageTypeDiscover, 7,
		dhcpv4.WithoutOption(dhcpv4.OptionClientSystemArchitectureType),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")))
	reply := clientReq(t, dhcpv4.MessageTypeOffer, 7)
	reply.OpCode = dhcpv4.OpcodeBootReply
	for _, tc := range []struct {
		name   string
		req    *dhcpv4.DHCPv4
		svc    service
		reason string
	}{
		{"not a PXE client", plain, serviceDHCP, ignoredNotPXE},
		{"no vendor class", clientReq(t, dhcpv4.MessageTypeDiscover, 7, dhcpv4.WithoutOption(dhcpv4.OptionClassIdentifier)), serviceDHCP, ignoredNotPXE},
		{"a reply", reply, serviceDHCP, ignoredNotRequest},
		{"architecture not configured", clientReq(t, dhcpv4.MessageTypeDiscover, 6), serviceDHCP, ignoredNoBootFile},
		{"no architecture", noArch, serviceDHCP, ignoredNoArch},
		{"REQUEST on 67 to the DHCP server", clientReq(t, dhcpv4.MessageTypeRequest, 7,
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 168, 77, 2)))), serviceDHCP, ignoredDHCPRequest},
		// The DHCP server may run on our own address: its REQUEST is
		// still not ours to answer.
		{"REQUEST on 67 naming our address", clientReq(t, dhcpv4.MessageTypeRequest, 7,
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(testLocal.AsSlice())))), serviceDHCP, ignoredDHCPRequest},
		{"REQUEST on 67 without server id", clientReq(t, dhcpv4.MessageTypeRequest, 7), serviceDHCP, ignoredDHCPRequest},
		{"DISCOVER on 4011", clientReq(t, dhcpv4.MessageTypeDiscover, 7), servicePXE, ignoredMessageType},
		{"RELEASE", clientReq(t, dhcpv4.MessageTypeRelease, 7), serviceDHCP, ignoredMessageType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := buildAnswer(roundTrip(t, tc.req), tc.svc, testLocal, cfg)
			if a.reply != nil || a.ignored != tc.reason {
				t.Errorf("answered %v / ignored %q, want ignored %q", a.reply != nil, a.ignored, tc.reason)
			}
		})
	}

	// Option 60 alone names the architecture when option 93 is missing.
	req := clientReq(t, dhcpv4.MessageTypeDiscover, 0, dhcpv4.WithoutOption(dhcpv4.OptionClientSystemArchitectureType))
	if a := buildAnswer(roundTrip(t, req), serviceDHCP, testLocal, cfg); a.file != "undionly.kpxe" {
		t.Errorf("arch from option 60: file %q, want undionly.kpxe", a.file)
	}
}

func TestReplyDestination(t *testing.T) {
	src := netip.MustParseAddrPort("0.0.0.0:68")
	req := clientReq(t, dhcpv4.MessageTypeDiscover, 7)
	if dst, bc := replyDestination(req, serviceDHCP, src); dst.String() != "255.255.255.255:68" || !bc {
		t.Errorf("DISCOVER from 0.0.0.0:68: reply to %s (broadcast %v), want 255.255.255.255:68", dst, bc)
	}
	relayed := clientReq(t, dhcpv4.MessageTypeDiscover, 7, dhcpv4.WithRelay(net.IPv4(10, 1, 2, 1)))
	if dst, _ := replyDestination(relayed, serviceDHCP, netip.MustParseAddrPort("10.1.2.1:67")); dst.String() != "10.1.2.1:67" {
		t.Errorf("relayed DISCOVER: reply to %s, want the relay 10.1.2.1:67", dst)
	}
	bound := clientReq(t, dhcpv4.MessageTypeDiscover, 7, dhcpv4.WithClientIP(net.IPv4(192, 168, 77, 100)))
	if dst, _ := replyDestination(bound, serviceDHCP, netip.MustParseAddrPort("192.168.77.100:68")); dst.String() != "192.168.77.100:68" {
		t.Errorf("DISCOVER with ciaddr: reply to %s, want 192.168.77.100:68", dst)
	}
}

// FuzzParseRequest feeds arbitrary datagrams through the request parser
// and the answer builder, and the answers through the encoder: nothing may
// panic, and every answer must parse back.
func FuzzParseRequest(f *testing.F) {
	for _, arch := range []uint16{0, 7, 11, 16} {
		f.Add(clientReq(f, dhcpv4.MessageTypeDiscover, arch).ToBytes())
		f.Add(clientReq(f, dhcpv4.MessageTypeRequest, arch, withIPXE()).ToBytes())
	}
	f.Add(clientReq(f, dhcpv4.MessageTypeRequest, 0,
		dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{71, 4, 0x80, 0, 0, 0, 255})).ToBytes())
	f.Add([]byte{})
	f.Add(make([]byte, 240))
	cfg := testAnswers()
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := parseRequest(b)
		if err != nil {
			return
		}
		for _, svc := range []service{serviceDHCP, servicePXE} {
			a := buildAnswer(req, svc, testLocal, cfg)
			if a.reply == nil {
				if a.ignored == "" {
					t.Fatalf("no reply and no reason")
				}
				continue
			}
			if _, err := dhcpv4.FromBytes(a.reply.ToBytes()); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
			replyDestination(req, svc, netip.MustParseAddrPort("0.0.0.0:68"))
		}
	})
}
