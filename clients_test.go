package tftp

// Wrappers around real TFTP client binaries (curl, tftp-hpa, atftp and
// busybox tftp) used by the end-to-end tests. ./test.sh installs them.
//
// Every helper runs the client with a timeout, works with IPv4 and IPv6
// loopback addresses and returns an error containing the client's combined
// output when the transfer failed. Options a client cannot express yield an
// error instead of being silently ignored.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Client binary names as looked up in $PATH.
const (
	curlBin    = "curl"
	tftpHPABin = "tftp" // the tftp-hpa client
	atftpBin   = "atftp"
	busyboxBin = "busybox"
)

// clientTimeout bounds a single client invocation.
const clientTimeout = 60 * time.Second

// requireClient returns the path of the client binary bin and fails the test
// (it never skips) when the binary is not installed.
func requireClient(t testing.TB, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("TFTP client %q not found in $PATH (%v); run ./test.sh, which installs curl, tftp-hpa, atftp and busybox", bin, err)
	}
	return p
}

// clientOpts selects the TFTP options a client requests. The zero value
// means the client's defaults. Not every client supports every field; see
// the supports field of realClients.
type clientOpts struct {
	BlockSize  int  // blksize option (RFC 2348); 0 = client default
	WindowSize int  // windowsize option (RFC 7440); 0 = not requested
	Timeout    int  // timeout option in seconds (RFC 2349); 0 = client default
	Tsize      bool // request the tsize option (RFC 2349)
	NoOptions  bool // send a plain RFC 1350 request without any options
	Netascii   bool // netascii mode instead of octet
}

// check returns an error when o sets a field that is zero/false in supported
// (the set of options the named client can express), or when it combines
// NoOptions with an option.
func (o clientOpts) check(client string, supported clientOpts) error {
	var bad []string
	if o.BlockSize != 0 && supported.BlockSize == 0 {
		bad = append(bad, "BlockSize")
	}
	if o.WindowSize != 0 && supported.WindowSize == 0 {
		bad = append(bad, "WindowSize")
	}
	if o.Timeout != 0 && supported.Timeout == 0 {
		bad = append(bad, "Timeout")
	}
	if o.Tsize && !supported.Tsize {
		bad = append(bad, "Tsize")
	}
	if o.NoOptions && !supported.NoOptions {
		bad = append(bad, "NoOptions")
	}
	if o.Netascii && !supported.Netascii {
		bad = append(bad, "Netascii")
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s does not support clientOpts %s", client, strings.Join(bad, ", "))
	}
	if o.NoOptions && (o.BlockSize != 0 || o.WindowSize != 0 || o.Timeout != 0 || o.Tsize) {
		return fmt.Errorf("%s: clientOpts.NoOptions conflicts with requesting options: %+v", client, o)
	}
	return nil
}

// Options each client can express (non-zero field = supported).
var (
	// curl always sends "tsize blksize timeout" unless --tftp-no-options.
	// Its netascii mode does no line-end translation, so it is not listed
	// here (curlGet/curlPut still accept Netascii, see curlURL).
	curlSupports = clientOpts{BlockSize: 1, Tsize: true, NoOptions: true}
	// tftp-hpa never sends options.
	tftpHPASupports = clientOpts{NoOptions: true, Netascii: true}
	// atftp sends no options unless asked.
	atftpSupports = clientOpts{BlockSize: 1, WindowSize: 1, Timeout: 1, Tsize: true, NoOptions: true, Netascii: true}
	// busybox always sends tsize; blksize only when -b is not 512. It
	// rejects -b below 33 and fails with "remote filename is too long" when
	// the request does not fit in blksize bytes, so use -b >= 64.
	busyboxSupports = clientOpts{BlockSize: 1, Tsize: true}
)

// curlOptsAccepted is curlSupports plus raw (untranslated) netascii.
var curlOptsAccepted = func() clientOpts { o := curlSupports; o.Netascii = true; return o }()

// tftpClient describes one real client for table-driven tests.
type tftpClient struct {
	name     string
	bin      string
	supports clientOpts // options the client can express, see clientOpts.check
	get      func(ctx context.Context, server netip.AddrPort, remote, local string, o clientOpts) error
	put      func(ctx context.Context, server netip.AddrPort, remote, local string, o clientOpts) error
}

// realClients lists all real client wrappers.
var realClients = []tftpClient{
	{"curl", curlBin, curlSupports, curlGet, curlPut},
	{"tftp-hpa", tftpHPABin, tftpHPASupports, tftpHPAGet, tftpHPAPut},
	{"atftp", atftpBin, atftpSupports, atftpGet, atftpPut},
	{"busybox", busyboxBin, busyboxSupports, busyboxGet, busyboxPut},
}

// runClient runs bin with args under a clientTimeout deadline derived from
// ctx. It returns the combined output and an error (including that output)
// when the process failed or failed(output) reports a failure.
func runClient(ctx context.Context, failed func(out string) bool, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err == nil && failed != nil && failed(out) {
		err = errors.New("output reports a failure")
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		return out, fmt.Errorf("%s %s: %w\n--- output ---\n%s", bin, quoteArgs(args), err, out)
	}
	return out, nil
}

// quoteArgs renders args for error messages.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'\\") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// curlURL builds tftp://host:port/<remote>[;mode=netascii]. The whole
// remote name is percent-encoded as one segment (so "/" becomes %2F, " "
// %20, ";" %3B); curl strips the URL's leading "/" and percent-decodes the
// rest into the TFTP filename, so the server sees remote verbatim. In
// netascii mode curl only changes the mode string: it transfers the raw
// bytes without CRLF translation in either direction.
func curlURL(server netip.AddrPort, remote string, netascii bool) string {
	hp := netip.AddrPortFrom(server.Addr().Unmap(), server.Port())
	u := "tftp://" + hp.String() + "/" + url.PathEscape(remote)
	if netascii {
		u += ";mode=netascii"
	}
	return u
}

// curlArgs returns the common curl arguments for o.
func curlArgs(o clientOpts) []string {
	// -v makes curl print "TFTP error: <server message>"; curl 7.88's own
	// error line is a misleading "getpeername() failed" text.
	args := []string{"-sS", "-v", "--globoff", "--path-as-is"}
	if o.BlockSize != 0 {
		args = append(args, "--tftp-blksize", strconv.Itoa(o.BlockSize))
	}
	if o.NoOptions {
		args = append(args, "--tftp-no-options")
	}
	return args
}

// curlGet downloads remote from server into local with curl. curl exits
// non-zero on a TFTP ERROR (68 file not found, 69 access violation, 71
// illegal operation, ...). Note curl (7.88) rejects an OACK carrying
// tsize=0 for downloads, so empty files need NoOptions or a server that
// omits tsize from the OACK for them.
func curlGet(ctx context.Context, server netip.AddrPort, remote, local string, o clientOpts) error {
	if err := o.check("curl", curlOptsAccepted); err != nil {
		return err
	}
	args := append(curlArgs(o), "-o", local, curlURL(server, remote, o.Netascii))
	_, err := runClient(ctx, nil, curlBin, args...)
	return err
}

// curlPut uploads local to server as remote with curl -T.
func curlPut(ctx context.Context, server netip.AddrPort, remote, local string, o clientOpts) error {
	if err := o.check("curl", curlOptsAccepted); err != nil {
		return err
	}
	if remote == "" {
		return errors.New("curl: empty remote name (curl would substitute the local file name)")
	}
	args := append(curlArgs(o), "-T", local, curlURL(server, remote, o.Netascii))
	_, err := runClient(ctx, nil, curlBin, args...)
	return err
}

// tftpHPAFailure matches tftp-hpa output reporting a failed transfer:
// tftp-hpa exits 0 even when the server answers with an ERROR packet.
var tftpHPAFailure = regexp.MustCompile(`(?m)^(Error code|Transfer timed out|tftp: |.*unknown host|Not connected)`)

// tftpHPA runs "tftp -4|-6 -v -l -m mode host port -c get|put a b". -l
// (literal) keeps ':' in file names from being parsed as host:file; the -c
// command takes its arguments from argv, so names may contain spaces.
func tftpHPA(ctx context.Context, server netip.AddrPort, o clientOpts, cmd, a, b string) error {
	if err := o.check("tftp-hpa", tftpHPASupports); err != nil {
		return err
	}
	family, mode := "-4", "binary"
	if server.Addr().Is6() && !server.Addr().Is4In6() {
		family = "-6"
	}
	if o.Netascii {
		mode = "netascii"
	}
	_, err := runClient(ctx, tftpHPAFailure.MatchString, tftpHPABin,
		family, "-v", "-l", "-m", mode, server.Addr().Unmap().String(), strconv.Itoa(int(server.Port())),
		"-c", cmd, a, b)
	return err
}

// tftpHPAGet downloads remote into local with the tftp-hpa client (no TFTP
// options are ever sent). On failure it leaves an empty local file behind.
func tftpHPAGet(ctx context.Context, server netip.AddrPort, remote, local string, o clientOpts) error {
	return tftpHPA(ctx, server, o, "get", remote, local)
}

// tftpHPAPut uploads local as remote with the tftp-hpa client.
func tftpHPAPut(ctx context.Context, server netip.AddrPort, remote, local string, o clientOpts) error {
	return tftpHPA(ctx, server, o, "put", local, remote)
}

// atftpFailure matches atftp output reporting a failure (atftp also exits
// 255 in that case).
var atftpFailure = regexp.MustCompile(`(?m)^tftp: (aborting|error received)`)

// atftp runs "atftp [--option ...] -g|-p -r remote -l local host port".
// IPv6 hosts are given bare (::1); brackets are rejected.
func atftp(ctx context.Context, server netip.AddrPort, o clientOpts, dir, remote, local string) error {
	if err := o.check("atftp", atftpSupports); err != nil {
		return err
	}
	var args []string
	opt := func(s string) { args = append(args, "--option", s) }
	if o.BlockSize != 0 {
		opt("blksize " + strconv.Itoa(o.BlockSize))
	}
	if o.Timeout != 0 {
		opt("timeout " + strconv.Itoa(o.Timeout))
	}
	if o.Tsize {
		// Not "tsize enable": atftp 0.8 puts the literal "enable" on the wire.
		opt("tsize 0")
	}
	if o.WindowSize != 0 {
		opt("windowsize " + strconv.Itoa(o.WindowSize))
	}
	if o.Netascii {
		opt("mode netascii")
	}
	args = append(args, dir, "-r", remote, "-l", local,
		server.Addr().Unmap().String(), strconv.Itoa(int(server.Port())))
	_, err := runClient(ctx, atftpFailure.MatchString, atftpBin, args...)
	return err
}

// atftpGet downloads remote into local with atftp. On failure it leaves an
// empty local file behind.
func atftpGet(ctx context.Context, server netip.AddrPort, remote, local string, o clientOpts) error {
	return atftp(ctx, server, o, "-g", remote, local)
}

// atftpPut uploads local as remote with atftp.
func atftpPut(ctx context.Context, server netip.AddrPort, remote, local string, o clientOpts) error {
	return atftp(ctx, server, o, "-p", remote, local)
}

// busybox runs "busybox tftp [-b N] -g|-p -r remote -l local host port".
// busybox always requests tsize and only supports octet mode.
func busybox(ctx context.Context, server netip.AddrPort, o clientOpts, dir, remote, local string) error {
	if err := o.check("busybox", busyboxSupports); err != nil {
		return err
	}
	args := []string{"tftp"}
	if o.BlockSize != 0 {
		args = append(args, "-b", strconv.Itoa(o.BlockSize))
	}
	args = append(args, dir, "-r", remote, "-l", local,
		server.Addr().Unmap().String(), strconv.Itoa(int(server.Port())))
	_, err := runClient(ctx, nil, busyboxBin, args...)
	return err
}

// busyboxGet downloads remote into local with busybox tftp (exit status 1
// and "tftp: server error: (N) msg" on a TFTP ERROR; the local file is
// removed).
func busyboxGet(ctx context.Context, server netip.AddrPort, remote, local string, o clientOpts) error {
	return busybox(ctx, server, o, "-g", remote, local)
}

// busyboxPut uploads local as remote with busybox tftp.
func busyboxPut(ctx context.Context, server netip.AddrPort, remote, local string, o clientOpts) error {
	return busybox(ctx, server, o, "-p", remote, local)
}
