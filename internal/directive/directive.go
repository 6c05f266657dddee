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

// Off is what a limit turned off (written off or unlimited in a
// Caddyfile) is stored as in JSON. Zero, or leaving a field out, means the
// field's default.
const Off = -1

// offWord reports whether v turns a limit off.
func offWord(v string) bool {
	return v == "off" || v == "unlimited" || v == "-1"
}

// IntOrOff reads a whole number from lo to hi, or off / unlimited / -1,
// stored as Off.
func IntOrOff(d *caddyfile.Dispenser, dst *int, lo, hi int) error {
	if off, err := takeOff(d); off || err != nil {
		*dst = Off
		return err
	}
	return intIn(d, dst, lo, hi, ", or off")
}

// IntRange reads a whole number from lo to hi.
func IntRange(d *caddyfile.Dispenser, dst *int, lo, hi int) error {
	return intIn(d, dst, lo, hi, "")
}

// intIn reads a whole number from lo to hi; hint ends the error message.
func intIn(d *caddyfile.Dispenser, dst *int, lo, hi int, hint string) error {
	name := d.Val()
	v, err := Single(d)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return d.Errf("%s: %q is not a whole number from %d to %d%s", name, v, lo, hi, hint)
	}
	*dst = n
	return nil
}

// PositiveDuration reads a duration above zero.
func PositiveDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	dur, err := Duration(d)
	if err == nil && dur <= 0 {
		err = d.Errf("%s: the duration must be above zero", name)
	}
	return dur, err
}

// DurationOrOff reads a duration above zero, or off / unlimited / -1,
// stored as Off.
func DurationOrOff(d *caddyfile.Dispenser) (caddy.Duration, error) {
	if off, err := takeOff(d); off || err != nil {
		return Off, err
	}
	return PositiveDuration(d)
}

// takeOff consumes the directive's argument when it turns a limit off
// (off, unlimited or -1); otherwise the cursor stays on the directive.
func takeOff(d *caddyfile.Dispenser) (bool, error) {
	if !d.NextArg() {
		return false, nil
	}
	v := d.Val()
	d.Prev()
	if !offWord(v) {
		return false, nil
	}
	_, err := Single(d)
	return true, err
}
