package tftp

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/caddy-tftp/tftp/internal/directive"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("tftp", parseGlobalOption)
}

// parseGlobalOption sets up the tftp app from the global option block.
// Several tftp blocks are merged. Syntax:
//
//	tftp {
//		# settings of the app
//		grace_period <duration>
//
//		# a server written at the top level (named srv0)
//		listen <addresses...>
//		store <name>
//		read_only
//		no_overwrite
//		timeout <duration>
//		retries <count>
//		max_block_size <bytes>
//		max_window_size <blocks>
//		disable_options
//		allow_read <addresses|ranges|private_ranges...>
//		allow_write <addresses|ranges|private_ranges...>
//		root <path>
//		rewrite <regexp> <replacement>
//		single_port
//		max_transfers <count>
//		max_transfers_per_host <count>
//		max_transfer_duration <duration>
//		min_transfer_rate <bytes per second>|off [<window>]
//
//		# more servers, each with the directives above
//		server <name> {
//			...
//		}
//
//		# store settings; with a module or a block this declares the
//		# store, and the top-level server uses the first store declared
//		# at the top level unless a plain `store <name>` line names one
//		store <name> [<module>] {
//			max_bytes <size>
//			max_file_size <size>
//			preload <directory>
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		prev, ok := existing.(httpcaddyfile.App)
		if !ok {
			return nil, d.Errf("unexpected existing tftp config of type %T", existing)
		}
		if err := json.Unmarshal(prev.Value, app); err != nil {
			return nil, d.Errf("merging tftp blocks: %v", err)
		}
	}
	if app.Servers == nil {
		app.Servers = make(map[string]*Server)
	}
	d.Next() // the option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	check := newAdaptCheck()
	implicit := new(Server)
	implicitUsed := false
	// The top-level server uses the store a plain `store NAME` line names,
	// or else the first store declared with settings at the top level.
	implicitStoreNamed := false
	firstDeclared := ""
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "grace_period":
			dur, err := directive.Duration(d)
			if err != nil {
				return nil, err
			}
			if dur < 0 {
				return nil, d.Errf("grace_period must not be negative")
			}
			app.GracePeriod = dur
		case "server":
			name, err := directive.Single(d)
			if err != nil {
				return nil, err
			}
			if _, dup := app.Servers[name]; dup {
				return nil, d.Errf("server %q is defined more than once", name)
			}
			srv := new(Server)
			for inner := d.Nesting(); d.NextBlock(inner); {
				if err := parseServerDirective(d, app, srv, check.on("server "+name, srv)); err != nil {
					return nil, err
				}
			}
			app.Servers[name] = srv
		case "store":
			if storeDeclares(d) {
				name, err := parseStore(d, app)
				if err != nil {
					return nil, err
				}
				if firstDeclared == "" {
					firstDeclared = name
				}
				continue
			}
			implicitStoreNamed = true
			fallthrough
		default:
			if err := parseServerDirective(d, app, implicit, check.on("the top-level server", implicit)); err != nil {
				return nil, err
			}
			implicitUsed = true
		}
	}
	if implicitUsed {
		if !implicitStoreNamed && firstDeclared != "" {
			implicit.Store = firstDeclared
		}
		app.Servers[unusedServerName(app.Servers)] = implicit
	}
	if err := check.stores(app); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "tftp", Value: caddyconfig.JSON(app, nil)}, nil
}

// parseServerDirective applies one server directive at the dispenser's
// current token.
func parseServerDirective(d *caddyfile.Dispenser, app *App, s *Server, check serverCheck) error {
	switch d.Val() {
	case "listen":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		for _, a := range args {
			if err := check.listen(d, a); err != nil {
				return err
			}
		}
		s.Listen = append(s.Listen, args...)
	case "store":
		check.storeLine(d)
		name, err := parseStore(d, app)
		if err != nil {
			return err
		}
		s.Store = name
	case "read_only":
		return directive.Flag(d, &s.ReadOnly)
	case "no_overwrite":
		return directive.Flag(d, &s.NoOverwrite)
	case "disable_options":
		return directive.Flag(d, &s.DisableOptions)
	case "timeout":
		dur, err := directive.PositiveDuration(d)
		if err != nil {
			return err
		}
		s.Timeout = dur
	case "retries":
		if err := directive.IntOrOff(d, &s.Retries, 0, math.MaxInt32); err != nil {
			return err
		}
		if s.Retries == 0 {
			// "retries 0" means none, which JSON writes as off: there a
			// zero means the default.
			s.Retries = directive.Off
		}
	case "max_block_size":
		return directive.IntRange(d, &s.MaxBlockSize, defaultBlockSize, maxBlockSize)
	case "max_window_size":
		return directive.IntRange(d, &s.MaxWindowSize, minWindowSize, maxWindowSize)
	case "allow_read":
		return parseAddressList(d, &s.AllowRead)
	case "allow_write":
		return parseAddressList(d, &s.AllowWrite)
	case "root":
		v, err := directive.Single(d)
		if err != nil {
			return err
		}
		if _, err := cleanName(v); err != nil {
			return d.Errf("root: %q is not a usable path inside a store", v)
		}
		s.Root = v
	case "rewrite":
		var match, replace string
		if !d.AllArgs(&match, &replace) {
			return d.ArgErr()
		}
		if _, err := regexp.Compile(match); err != nil {
			return d.Errf("rewrite: bad regular expression %q: %v", match, err)
		}
		s.Rewrites = append(s.Rewrites, &Rewrite{Match: match, Replace: replace})
	case "single_port":
		return directive.Flag(d, &s.SinglePort)
	case "max_transfers":
		return directive.IntOrOff(d, &s.MaxTransfers, 1, math.MaxInt32)
	case "max_transfers_per_host":
		return directive.IntOrOff(d, &s.MaxTransfersPerHost, 1, math.MaxInt32)
	case "max_transfer_duration":
		dur, err := directive.DurationOrOff(d)
		if err != nil {
			return err
		}
		s.MaxTransferDuration = dur
	case "min_transfer_rate":
		return parseMinRate(d, s)
	default:
		return d.Errf("unrecognized tftp directive: %s", d.Val())
	}
	return nil
}

// parseStore reads `store <name> [<module>] [{...}]`. With a module name or a
// block it also declares the store's settings in the app.
func parseStore(d *caddyfile.Dispenser, app *App) (string, error) {
	seg := d.NewFromNextSegment()
	seg.Next() // "store"
	if !seg.NextArg() {
		return "", seg.ArgErr()
	}
	name := seg.Val()
	module := ""
	if seg.NextArg() {
		module = seg.Val()
		if seg.NextArg() {
			return "", seg.ArgErr()
		}
	}
	if module == "" && !blockFollows(seg) {
		return name, nil
	}
	if module == "" {
		module = "memory"
	}
	// Errors name the line of the store directive, not the end of its block.
	seg.Reset()
	seg.Next()
	if _, dup := app.StoresRaw[name]; dup {
		return "", seg.Errf("store %q is configured more than once", name)
	}
	mod, err := caddy.GetModule("tftp.stores." + module)
	if err != nil {
		return "", seg.Errf("store %q: unknown store module %q", name, module)
	}
	unm, ok := mod.New().(caddyfile.Unmarshaler)
	if !ok {
		return "", seg.Errf("store module %q cannot be configured from a Caddyfile", module)
	}
	seg.Reset()
	if err := unm.UnmarshalCaddyfile(seg); err != nil {
		return "", err
	}
	if app.StoresRaw == nil {
		app.StoresRaw = make(map[string]json.RawMessage)
	}
	app.StoresRaw[name] = caddyconfig.JSONModuleObject(unm, "module", module, nil)
	return name, nil
}

// UnmarshalCaddyfile sets up the memory store from its Caddyfile block:
//
//	store <name> [memory] {
//		max_bytes <size>
//		max_file_size <size>
//		preload <directory>
//	}
//
// Sizes are bytes, or forms such as 64MiB or 1GB.
func (m *MemoryStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()          // "store"
	d.RemainingArgs() // name and module, read by the caller
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "max_bytes":
			if err := directive.Size(d, &m.MaxBytes); err != nil {
				return err
			}
		case "max_file_size":
			if err := directive.Size(d, &m.MaxFileSize); err != nil {
				return err
			}
		case "preload":
			dir, err := directive.Single(d)
			if err != nil {
				return err
			}
			m.Preload = dir
		default:
			return d.Errf("unrecognized memory store directive: %s", d.Val())
		}
	}
	return nil
}

// blockFollows reports whether a block opens on the current token's line,
// without moving the cursor.
func blockFollows(d *caddyfile.Dispenser) bool {
	line := d.Line()
	if !d.Next() {
		return false
	}
	open := d.Val() == "{" && d.Line() == line
	d.Prev()
	return open
}

// storeDeclares reports, without moving the cursor, whether the store
// directive at the cursor carries settings (a module name or a block) rather
// than only naming the store to use.
func storeDeclares(d *caddyfile.Dispenser) bool {
	switch d.CountRemainingArgs() {
	case 0:
		return false
	case 1:
		d.NextArg()
		open := blockFollows(d)
		d.Prev()
		return open
	default:
		return true
	}
}

// parseMinRate reads `min_transfer_rate <bytes per second>|off [<window>]`.
func parseMinRate(d *caddyfile.Dispenser, s *Server) error {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 || len(args) > 2 {
		return d.ArgErr()
	}
	if args[0] == "off" || args[0] == "-1" {
		if len(args) > 1 {
			return d.ArgErr()
		}
		s.MinTransferRate = directive.Off
		return nil
	}
	n, err := humanize.ParseBytes(args[0])
	if err != nil || n == 0 || n > 1<<40 {
		return d.Errf("%s: bad rate %q (bytes per second, or off)", name, args[0])
	}
	s.MinTransferRate = int64(n)
	if len(args) == 2 {
		dur, err := caddy.ParseDuration(args[1])
		if err != nil || dur <= 0 {
			return d.Errf("%s: bad window %q", name, args[1])
		}
		s.MinTransferRateWindow = caddy.Duration(dur)
	}
	return nil
}

// parseAddressList reads IP addresses, CIDR ranges and private_ranges.
func parseAddressList(d *caddyfile.Dispenser, dst *[]string) error {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	for _, a := range args {
		if a == "private_ranges" {
			*dst = append(*dst, a)
			continue
		}
		if _, err := caddyhttp.CIDRExpressionToPrefix(a); err != nil {
			return d.Errf("%s: %v", name, err)
		}
		*dst = append(*dst, a)
	}
	return nil
}

// unusedServerName picks srv0, srv1, ... for a server with no name.
func unusedServerName(servers map[string]*Server) string {
	for i := 0; ; i++ {
		name := "srv" + strconv.Itoa(i)
		if _, taken := servers[name]; !taken {
			return name
		}
	}
}

// Interface guards
var _ caddyfile.Unmarshaler = (*MemoryStore)(nil)

// adaptCheck finds, while a tftp block is read, the mistakes that involve
// more than one directive: two servers on one address, a server using a
// store that is not declared. Each is reported at the line to fix.
type adaptCheck struct {
	listens   map[string]site // expanded listen address -> where first named
	storeRefs map[*Server]site
}

// site is a place in the Caddyfile and the server it belongs to.
type site struct {
	server, file string
	line         int
}

func (s site) errorf(format string, args ...any) error {
	return fmt.Errorf("%s, at %s:%d", fmt.Sprintf(format, args...), s.file, s.line)
}

func newAdaptCheck() *adaptCheck {
	return &adaptCheck{listens: make(map[string]site), storeRefs: make(map[*Server]site)}
}

// serverCheck is the adaptCheck of one server's directives.
type serverCheck struct {
	*adaptCheck
	label string
	srv   *Server
}

func (c *adaptCheck) on(label string, srv *Server) serverCheck {
	return serverCheck{c, label, srv}
}

// listen checks one listen address: a UDP network address, not named
// before by this or another server. Addresses with placeholders are
// checked when the config loads.
func (c serverCheck) listen(d *caddyfile.Dispenser, addr string) error {
	if strings.Contains(addr, "{") {
		return nil
	}
	na, err := caddy.ParseNetworkAddressWithDefaults(addr, "udp", 69)
	if err != nil {
		return d.Errf("listen: %q is not a network address: %v", addr, err)
	}
	switch na.Network {
	case "udp", "udp4", "udp6":
	default:
		return d.Errf("listen: %q uses network %q; TFTP runs over udp, udp4 or udp6", addr, na.Network)
	}
	for _, one := range na.Expand() {
		key := one.String()
		if prev, dup := c.listens[key]; dup {
			return d.Errf("listen: %s is already used by %s (%s:%d)", key, prev.server, prev.file, prev.line)
		}
		c.listens[key] = site{server: c.label, file: d.File(), line: d.Line()}
	}
	return nil
}

// storeLine remembers where a server names its store.
func (c serverCheck) storeLine(d *caddyfile.Dispenser) {
	c.storeRefs[c.srv] = site{server: c.label, file: d.File(), line: d.Line()}
}

// stores reports a server that uses a store no block declares (only the
// store named "default" is created when missing).
func (c *adaptCheck) stores(app *App) error {
	for srv, at := range c.storeRefs {
		if srv.Store == "" || srv.Store == defaultStoreName {
			continue
		}
		if _, ok := app.StoresRaw[srv.Store]; !ok {
			return at.errorf("store %q is not declared: add a `store %s <module> { ... }` block, or use the store named default", srv.Store, srv.Store)
		}
	}
	return nil
}
