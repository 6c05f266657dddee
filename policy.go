package tftp

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Per-request policy: who may read or write, and which store name a
// requested name resolves to.

// requestRules is a server's per-request policy, fixed when the config
// is provisioned.
type requestRules struct {
	server   string         // the server's name, for the {tftp.server} placeholder
	readACL  []netip.Prefix // empty: every address
	writeACL []netip.Prefix // never empty: loopback unless allow_write says more
	rewrites []*Rewrite
	root     string // cleaned; empty for the store's top
}

// allowed applies the address lists to a read or write.
func (r *requestRules) allowed(op uint16, addr netip.Addr) bool {
	acl := r.readACL
	if op == opWRQ {
		acl = r.writeACL
	}
	if len(acl) == 0 {
		return true
	}
	for _, p := range acl {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// resolveName cleans the requested name, applies the rewrite rules and the
// root prefix, and returns the store key.
func (r *requestRules) resolveName(raw string, remote netip.AddrPort) (string, error) {
	name, err := cleanName(raw)
	if err != nil {
		return "", err
	}
	if len(r.rewrites) > 0 {
		repl := caddy.NewReplacer()
		repl.Set("remote_host", remote.Addr().Unmap().String())
		repl.Set("remote_port", strconv.Itoa(int(remote.Port())))
		repl.Set("tftp.server", r.server)
		for _, rw := range r.rewrites {
			if out, ok := rw.apply(name, repl); ok {
				if name, err = cleanName(out); err != nil {
					return "", err
				}
				break
			}
		}
	}
	if r.root != "" {
		name = r.root + "/" + name
	}
	return name, nil
}

// refuseLongName answers a request whose name is over the length limit like
// any other name that cannot be served: ERROR 2 when the part received
// climbs above the root, otherwise ERROR 0 saying the name is too long. A
// long request whose name is short is malformed: ERROR 4.
func refuseLongName(body []byte) (ErrorCode, string) {
	name := body
	if i := bytes.IndexByte(body, 0); i >= 0 {
		name = body[:i]
	}
	if len(name) <= maxNameLen {
		return ErrCodeIllegalOp, "illegal TFTP operation"
	}
	if climbsAboveRoot(name) {
		return ErrCodeAccessViolated, "access violation"
	}
	return ErrCodeUndefined, "file name too long"
}

// climbsAboveRoot reports whether a name's ".." segments ever climb above
// the root, the way cleanName would refuse it.
func climbsAboveRoot(name []byte) bool {
	depth := 0
	for len(name) > 0 {
		i := bytes.IndexAny(name, `/\`)
		seg := name
		if i >= 0 {
			seg, name = name[:i], name[i+1:]
		} else {
			name = nil
		}
		switch string(seg) {
		case "", ".":
		case "..":
			if depth == 0 {
				return true
			}
			depth--
		default:
			depth++
		}
	}
	return false
}

// Rewrite changes a requested file name before it is looked up, for
// example to serve a per-client configuration.
type Rewrite struct {
	// Match is a regular expression (RE2 syntax) tried against the whole
	// cleaned file name, without a leading slash.
	Match string `json:"match"`

	// Replace is the new name. $1 or ${name} insert match groups, and Caddy
	// placeholders are expanded: {remote_host} (the client's IP address),
	// {remote_port}, {tftp.server} (the server's name) and the global ones
	// such as {env.VAR}.
	Replace string `json:"replace"`

	re *regexp.Regexp
}

func (rw *Rewrite) provision() error {
	if rw == nil {
		return fmt.Errorf("empty rule")
	}
	re, err := regexp.Compile(rw.Match)
	if err != nil {
		return fmt.Errorf("match %q: %w", rw.Match, err)
	}
	rw.re = re
	return nil
}

// apply returns the rewritten name if the rule matches.
func (rw *Rewrite) apply(name string, repl *caddy.Replacer) (string, bool) {
	m := rw.re.FindStringSubmatchIndex(name)
	if m == nil {
		return "", false
	}
	// Placeholder values come from the config and the client's address,
	// never from the requested name, so expanding them first is safe.
	tmpl := repl.ReplaceKnown(rw.Replace, "")
	return string(rw.re.ExpandString(nil, tmpl, name, m)), true
}

// loopbackPrefixes are the addresses that may upload when allow_write is
// not set.
var loopbackPrefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// onlyLoopback reports whether every prefix lies within a loopback range.
func onlyLoopback(acl []netip.Prefix) bool {
	for _, p := range acl {
		inside := false
		for _, lo := range loopbackPrefixes {
			if p.Bits() >= lo.Bits() && lo.Contains(p.Addr()) {
				inside = true
			}
		}
		if !inside {
			return false
		}
	}
	return true
}

// linkLocalRanges are added to Caddy's private ranges: PXE clients on a
// network without DHCP may use them.
var linkLocalRanges = []string{"169.254.0.0/16", "fe80::/10"}

// parseACL turns address expressions into prefixes. IPv4-mapped IPv6
// prefixes are turned into IPv4 ones, since client addresses are compared
// unmapped.
func parseACL(exprs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range exprs {
		list := []string{e}
		if e == "private_ranges" {
			list = append(caddyhttp.PrivateRangesCIDR(), linkLocalRanges...)
		}
		for _, expr := range list {
			p, err := caddyhttp.CIDRExpressionToPrefix(expr)
			if err != nil {
				return nil, err
			}
			if p.Addr().Is4In6() {
				if p.Bits() < 96 {
					return nil, fmt.Errorf("%s: an IPv4-mapped range must be /96 or longer", expr)
				}
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
		}
	}
	return out, nil
}
