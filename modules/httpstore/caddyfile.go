package httpstore

import (
	"net/http"
	"strings"

	"github.com/caddy-tftp/tftp/internal/directive"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the store from its block in the tftp global
// option:
//
//	store <name> http {
//		url <url>
//		header <field> <value>
//		client_header <field>|off
//		upload_method <method>
//		dial_timeout <duration>
//		response_header_timeout <duration>
//		idle_timeout <duration>
//		max_file_size <size>
//		temp_dir <directory>
//		tls_ca <pem file>
//		tls_client_certificate <cert file> <key file>
//		tls_server_name <name>
//		cache {
//			max_size <size>
//			ttl <duration>
//		}
//	}
//
// A bare `cache` turns the cache on with its defaults. Sizes are bytes, or
// forms such as 512MiB.
func (s *HTTP) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()          // "store"
	d.RemainingArgs() // name and module, read by the caller
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "url":
			if s.URL != "" {
				return d.Err("url is already set")
			}
			s.URL, err = directive.Single(d)
		case "header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.ArgErr()
			}
			if s.Headers == nil {
				s.Headers = http.Header{}
			}
			s.Headers.Add(args[0], args[1])
		case "client_header":
			var v string
			if v, err = directive.Single(d); err == nil {
				if v == "off" {
					v = "-"
				}
				s.ClientHeader = v
			}
		case "upload_method":
			var v string
			if v, err = directive.Single(d); err == nil {
				s.UploadMethod = strings.ToUpper(v)
			}
		case "dial_timeout":
			s.DialTimeout, err = directive.Duration(d)
		case "response_header_timeout":
			s.ResponseHeaderTimeout, err = directive.Duration(d)
		case "idle_timeout":
			s.IdleTimeout, err = directive.Duration(d)
		case "max_file_size":
			err = directive.Size(d, &s.MaxFileSize)
		case "temp_dir":
			s.TempDir, err = directive.Single(d)
		case "tls_ca", "tls_server_name":
			name := d.Val()
			var v string
			if v, err = directive.Single(d); err == nil {
				if s.TLS == nil {
					s.TLS = new(TLSConfig)
				}
				if name == "tls_ca" {
					s.TLS.CA = v
				} else {
					s.TLS.ServerName = v
				}
			}
		case "tls_client_certificate":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.ArgErr()
			}
			if s.TLS == nil {
				s.TLS = new(TLSConfig)
			}
			s.TLS.ClientCertificate, s.TLS.ClientKey = args[0], args[1]
		case "cache":
			err = s.unmarshalCache(d)
		default:
			return d.Errf("unrecognized http store directive: %s", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if s.URL == "" {
		return d.Err("http store: url is required")
	}
	if _, err := parseURLTemplate(caddy.NewReplacer().ReplaceKnown(s.URL, "")); err != nil {
		return d.Errf("http store: url %q: %v", s.URL, err)
	}
	return nil
}

// unmarshalCache reads the cache block.
func (s *HTTP) unmarshalCache(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	if s.Cache != nil {
		return d.Err("cache is already set")
	}
	s.Cache = new(CacheConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "max_size":
			err = directive.Size(d, &s.Cache.MaxSize)
		case "ttl":
			s.Cache.TTL, err = directive.Duration(d)
		default:
			return d.Errf("unrecognized http store cache directive: %s", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*HTTP)(nil)
