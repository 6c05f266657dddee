package proxydhcp

import (
	"encoding/json"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("proxy_dhcp", parseGlobalOption)
}

// parseGlobalOption sets up the proxy_dhcp app from the global option
// block. Several proxy_dhcp blocks are merged. Syntax:
//
//	proxy_dhcp {
//		listen <addresses or interfaces...>
//		boot <architecture> <file or URL>
//		ipxe <file or URL>
//		server_address <ip>
//		dhcp_port <port>
//		pxe_port <port>
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		prev, ok := existing.(httpcaddyfile.App)
		if !ok {
			return nil, d.Errf("unexpected existing proxy_dhcp config of type %T", existing)
		}
		if err := json.Unmarshal(prev.Value, app); err != nil {
			return nil, d.Errf("merging proxy_dhcp blocks: %v", err)
		}
	}
	d.Next() // the option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "listen":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			for _, entry := range args {
				if _, err := parseListen(entry); err != nil {
					return nil, d.Errf("listen: %v", err)
				}
			}
			app.Listen = append(app.Listen, args...)
		case "boot":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.ArgErr()
			}
			if _, err := parseArch(args[0]); err != nil {
				return nil, d.Errf("boot: %v", err)
			}
			if err := checkBootFile(args[1]); err != nil {
				return nil, d.Errf("boot %s: %v", args[0], err)
			}
			if _, dup := app.Boot[args[0]]; dup {
				return nil, d.Errf("boot: %s is configured twice", args[0])
			}
			if app.Boot == nil {
				app.Boot = make(map[string]string)
			}
			app.Boot[args[0]] = args[1]
		case "ipxe":
			v, err := singleArg(d)
			if err != nil {
				return nil, err
			}
			if err := checkBootFile(v); err != nil {
				return nil, d.Errf("ipxe: %v", err)
			}
			app.IPXE = v
		case "server_address":
			v, err := singleArg(d)
			if err != nil {
				return nil, err
			}
			if l, err := parseListen(v); err != nil || !l.addr.IsValid() {
				return nil, d.Errf("server_address: %q is not an IPv4 address", v)
			}
			app.ServerAddress = v
		case "dhcp_port":
			if err := parsePort(d, &app.DHCPPort); err != nil {
				return nil, err
			}
		case "pxe_port":
			if err := parsePort(d, &app.PXEPort); err != nil {
				return nil, err
			}
		default:
			return nil, d.Errf("unrecognized proxy_dhcp subdirective %q", d.Val())
		}
	}
	return httpcaddyfile.App{
		Name:  "proxy_dhcp",
		Value: caddyconfig.JSON(app, nil),
	}, nil
}

// singleArg returns the one argument of the current directive.
func singleArg(d *caddyfile.Dispenser) (string, error) {
	args := d.RemainingArgs()
	if len(args) != 1 {
		return "", d.ArgErr()
	}
	return args[0], nil
}

func parsePort(d *caddyfile.Dispenser, dst *int) error {
	directive := d.Val()
	v, err := singleArg(d)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return d.Errf("%s: %q is not a port number", directive, v)
	}
	*dst = n
	return nil
}
