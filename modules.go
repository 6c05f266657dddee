package tftp

// The proxy_dhcp app lives in its own package, which does not import this
// one; importing the module registers it alongside the tftp app, so a
// Caddy built with this module can run a whole netboot lab: proxyDHCP,
// TFTP and HTTP from one Caddyfile.
import _ "github.com/caddy-tftp/tftp/modules/proxydhcp"
