package tftp

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Tests of the per-request policy: address lists, name rules, root and
// rewrites, over the wire.

func TestPolicyAccessControl(t *testing.T) {
	// Each case runs a server under test ("guarded") beside an unrestricted
	// one ("open") on the same store, which seeds files and checks what a
	// refused write left behind.
	const ok = ErrorCode(0xffff)
	cases := []struct {
		name           string
		directives     []string
		read4, read6   ErrorCode
		write4, write6 ErrorCode
	}{
		{"allow_read 127.0.0.1", []string{"allow_read 127.0.0.1"}, ok, ErrCodeAccessViolated, ok, ok},
		{"allow_read 10.0.0.0/8 only", []string{"allow_read 10.0.0.0/8"}, ErrCodeAccessViolated, ErrCodeAccessViolated, ok, ok},
		{"allow_write 10.0.0.0/8, reads open", []string{"allow_write 10.0.0.0/8"}, ok, ok, ErrCodeAccessViolated, ErrCodeAccessViolated},
		{"private_ranges", []string{"allow_read private_ranges", "allow_write private_ranges"}, ok, ok, ok, ok},
		{"v4-only list vs ::1", []string{"allow_read 127.0.0.0/8", "allow_write 127.0.0.1/32"}, ok, ErrCodeAccessViolated, ok, ErrCodeAccessViolated},
		{"allow ::1 only", []string{"allow_read ::1", "allow_write ::1/128"}, ErrCodeAccessViolated, ok, ErrCodeAccessViolated, ok},
		{"read_only despite allow_write", []string{"read_only", "allow_write 127.0.0.1 ::1"}, ok, ok, ErrCodeAccessViolated, ErrCodeAccessViolated},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			open, guarded := freePort(t), freePort(t)
			body := []string{
				"server open {", fmt.Sprintf("listen :%d", open), "}",
				"server guarded {", fmt.Sprintf("listen :%d", guarded),
			}
			body = append(append(body, tc.directives...), "}")
			startCaddy(t, advCaddyfile(lines(body...)))
			data := randomBytes(t, 700)
			advPut(t, loopback4(open), "f", data)

			for _, fam := range []struct {
				v6           bool
				read, write  ErrorCode
				serverGuard  netip.AddrPort
				serverOpen   netip.AddrPort
				familyString string
			}{
				{false, tc.read4, tc.write4, loopback4(guarded), loopback4(open), "v4"},
				{true, tc.read6, tc.write6, loopback6(guarded), loopback6(open), "v6"},
			} {
				p := advDial(t, fam.v6)
				// Read.
				p.send(fam.serverGuard, appendRequest(nil, opRRQ, "f", "octet"))
				if fam.read == ok {
					pkt, tid := p.expectBlock(fam.familyString+" read", opDATA, 1)
					if got := advReadRest(t, p, tid, pkt); !bytes.Equal(got, data) {
						t.Errorf("%s read: got %d bytes, want %d identical", fam.familyString, len(got), len(data))
					}
				} else {
					p.expectError(fam.familyString+" read", fam.serverGuard, fam.read, "f")
				}
				// Write, from a new port (a new client TID, as RFC 1350 asks).
				p = advDial(t, fam.v6)
				name := fmt.Sprintf("w%d-%s", i, fam.familyString)
				p.send(fam.serverGuard, appendRequest(nil, opWRQ, name, "octet"))
				if fam.write == ok {
					_, tid := p.expectBlock(fam.familyString+" write", opACK, 0)
					p.send(tid, advData(1, []byte("hello")))
					p.expectBlock(fam.familyString+" write", opACK, 1)
					advGetOK(t, fam.serverOpen, name, []byte("hello"))
				} else {
					p.expectError(fam.familyString+" write", fam.serverGuard, fam.write, name)
					p.expectSilence(fam.familyString+" refused write", 50*time.Millisecond)
					advGetCode(t, fam.serverOpen, name, ErrCodeFileNotFound)
				}
			}
			// The process still serves normally.
			advGetOK(t, loopback4(open), "f", data)
			advGetOK(t, loopback6(open), "f", data)
		})
	}
}

// advAccessControlMapped: an allow list written with the IPv4-mapped form
// of an address must either be refused when the config loads or match the
// IPv4 client it names. Today it loads and silently never matches.
func TestPolicyAccessControlMappedIPv4(t *testing.T) {
	port := freePort(t)
	err := caddy.Load(adaptCaddyfile(t, advCaddyfile(lines(fmt.Sprintf("listen :%d", port), "allow_read ::ffff:127.0.0.1"))), true)
	if err != nil {
		t.Logf("config with a mapped address refused at load (acceptable): %v", err)
		return
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	server := loopback4(port)
	// Seeding needs a write; writes are open.
	advPut(t, server, "f", []byte("mapped"))
	p := advDial(t, false)
	p.send(server, appendRequest(nil, opRRQ, "f", "octet"))
	pkt, from, okRecv := p.recv(advReply)
	if !okRecv {
		t.Fatal("no reply")
	}
	if opcode(pkt) != opDATA {
		t.Errorf("allow_read ::ffff:127.0.0.1 loaded, but a read from 127.0.0.1 got %s from %s: the mapped form never matches the unmapped client address (allowed() compares remote.Addr().Unmap() with an IPv6 prefix), so the list silently locks out the host it names", advDescribe(pkt), from)
	}
}

func TestPolicyNames(t *testing.T) {
	port := advStart(t)
	server := loopback4(port)
	x, file, long := randomBytes(t, 600), randomBytes(t, 900), randomBytes(t, 100)
	advPut(t, server, "x", x)
	advPut(t, server, "dir/file", file)
	longName := strings.Repeat("n", maxNameLen)
	advPut(t, server, longName, long)
	p := advDial(t, false)

	// Refused names: ERROR 2 for climbing out, ERROR 0 for names over the
	// length limit, ERROR 4 for malformed requests; the message never
	// repeats the name.
	refused := []struct {
		op   uint16
		name string
		code ErrorCode
	}{
		{opRRQ, "../x", ErrCodeAccessViolated},
		{opRRQ, "a/../../x", ErrCodeAccessViolated},
		{opRRQ, `..\x`, ErrCodeAccessViolated},
		{opRRQ, `a\..\..\x`, ErrCodeAccessViolated},
		{opRRQ, "/../x", ErrCodeAccessViolated},
		{opRRQ, "../../../../../../etc/passwd", ErrCodeAccessViolated},
		{opRRQ, "..", ErrCodeAccessViolated},
		{opWRQ, "../evil", ErrCodeAccessViolated},
		{opWRQ, `..\evil`, ErrCodeAccessViolated},
		{opWRQ, "dir/../../evil", ErrCodeAccessViolated},
		{opRRQ, strings.Repeat("n", maxNameLen+1), ErrCodeUndefined},
		{opWRQ, strings.Repeat("w", maxNameLen+1), ErrCodeUndefined},
		{opRRQ, "/etc/passwd", ErrCodeFileNotFound},
		{opRRQ, "secret-token-zq7", ErrCodeFileNotFound},
		{opRRQ, "%s%n%x%v", ErrCodeFileNotFound},
	}
	for _, r := range refused {
		// A new port per request: a refusal sent from a transfer (ERROR 1)
		// may still hold the port's claim for a moment (see SamePortAfterError).
		p := advDial(t, false)
		what := fmt.Sprintf("%s %.40q", advOpName(r.op), r.name)
		p.send(server, appendRequest(nil, r.op, r.name, "octet"))
		p.expectError(what, server, r.code, r.name, strings.Trim(r.name, "./\\"))
		p.expectSilence(what+" (nothing after the ERROR)", 30*time.Millisecond)
	}
	advGetCode(t, server, "evil", ErrCodeFileNotFound)
	advGetCode(t, server, "dir/../../evil", ErrCodeAccessViolated)

	// Raw malformed requests around the name.
	raw := []struct {
		what string
		pkt  []byte
		code ErrorCode
	}{
		{"empty name", []byte("\x00\x01\x00octet\x00"), ErrCodeIllegalOp},
		{"empty name (WRQ)", []byte("\x00\x02\x00octet\x00"), ErrCodeIllegalOp},
		{"name then garbage mode", []byte("\x00\x01x\x00\xff\xfegarbage\x00"), ErrCodeIllegalOp},
		{"name then garbage, no terminator", []byte("\x00\x01x\x00\xff\xfe\x01garbage"), ErrCodeIllegalOp},
		{"valid request then unterminated garbage", []byte("\x00\x01x\x00octet\x00\x01\x02garbage"), ErrCodeIllegalOp},
	}
	for _, r := range raw {
		p.send(server, r.pkt)
		p.expectError(r.what, server, r.code, "garbage")
	}

	// Accepted spellings of stored names.
	served := []struct {
		name string
		want []byte
	}{
		{"/x", x}, {"//x", x}, {"./x", x}, {"a/../x", x}, {`\x`, x},
		{`dir\file`, file}, {`\dir\file`, file}, {"dir/./file", file}, {"/dir//file", file},
		{longName, long},
	}
	for _, s := range served {
		advGetOK(t, server, s.name, s.want)
	}
	// A request with a dangling option name (some firmware pads requests)
	// is served as if the option were absent.
	p.send(server, []byte("\x00\x01x\x00octet\x00blksize\x00"))
	pkt, tid := p.expectBlock("request with a dangling option", opDATA, 1)
	if got := advReadRest(t, p, tid, pkt); !bytes.Equal(got, x) {
		t.Errorf("dangling option: got %d bytes, want %d", len(got), len(x))
	}
	advGetOK(t, server, "x", x)
}

func TestPolicyRootAndRewrites(t *testing.T) {
	plainPort, rootedPort := freePort(t), freePort(t)
	startCaddy(t, advCaddyfile(lines(
		"server plain {", fmt.Sprintf("listen :%d", plainPort), "}",
		"server rooted {", fmt.Sprintf("listen :%d", rootedPort),
		"root lab1",
		`rewrite ^up/(.*)$ ../$1`,
		`rewrite ^cfg/(.*)$ per/{remote_host}/$1`,
		"}",
	)))
	plain, rooted := loopback4(plainPort), loopback4(rootedPort)
	inside, sibling, top := randomBytes(t, 100), randomBytes(t, 100), randomBytes(t, 100)
	literal, perHost := randomBytes(t, 100), randomBytes(t, 100)
	advPut(t, plain, "lab1/x", inside)
	advPut(t, plain, "lab1x/secret", sibling)
	advPut(t, plain, "secret", top)
	advPut(t, plain, "lab1/per/127.0.0.1/{remote_host}", literal)
	advPut(t, plain, "lab1/per/127.0.0.1/a", perHost)

	advGetOK(t, rooted, "x", inside)
	advGetOK(t, rooted, "/x", inside)
	advGetOK(t, rooted, "cfg/a", perHost)
	// A placeholder in the requested name is not expanded.
	advGetOK(t, rooted, "cfg/{remote_host}", literal)

	p := advDial(t, false)
	for _, name := range []string{"../lab1x/secret", "../secret", "/../secret", `..\lab1x\secret`, "up/secret"} {
		p.send(rooted, appendRequest(nil, opRRQ, name, "octet"))
		p.expectError(fmt.Sprintf("rooted RRQ %q", name), rooted, ErrCodeAccessViolated, name, "lab1", "secret")
	}
	// Names that look like the sibling stay inside the root.
	for _, name := range []string{"/lab1x/secret", "lab1/../lab1x/secret", "up/../lab1x/secret", "up/x/../../secret"} {
		p := advDial(t, false)
		p.send(rooted, appendRequest(nil, opRRQ, name, "octet"))
		p.expectError(fmt.Sprintf("rooted RRQ %q", name), rooted, ErrCodeFileNotFound, name, "lab1", "secret")
	}
	advGetOK(t, rooted, "x", inside)
}
