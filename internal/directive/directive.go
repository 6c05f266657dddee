// Package directive reads the arguments of Caddyfile directives shared by
// the tftp app and its store modules, so every module reports a bad value
// the same way, with the file and line of the directive.
package directive

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// Single returns the directive's one argument.
func Single(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

// Flag sets *flag for a directive that takes no argument.
func Flag(d *caddyfile.Dispenser, flag *bool) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	*flag = true
	return nil
}

// Int reads a whole number.
func Int(d *caddyfile.Dispenser, dst *int) error {
	name := d.Val()
	v, err := Single(d)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return d.Errf("%s: %q is not a whole number", name, v)
	}
	*dst = n
	return nil
}

// Duration reads a duration in Caddy's forms (1s, 500ms, 2d).
func Duration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	v, err := Single(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("%s: bad duration %q: %v", name, v, err)
	}
	return caddy.Duration(dur), nil
}

// Size reads a positive size in bytes, plain or with a unit (64MiB, 2GB).
func Size(d *caddyfile.Dispenser, dst *int64) error {
	name := d.Val()
	v, err := Single(d)
	if err != nil {
		return err
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n == 0 || n > 1<<62 {
		return d.Errf("%s: bad size %q", name, v)
	}
	*dst = int64(n)
	return nil
}
