package tftp

// The modules and commands that live in packages of their own (the store
// modules, the proxy_dhcp app, the tftp-server and tftp commands) are
// registered by importing them here, so a plain
// `xcaddy build --with github.com/caddy-tftp/tftp` gets all of them.
import (
	_ "github.com/caddy-tftp/tftp/command"
	_ "github.com/caddy-tftp/tftp/modules/caddystorage"
	_ "github.com/caddy-tftp/tftp/modules/filesystem"
	_ "github.com/caddy-tftp/tftp/modules/httpstore"
	_ "github.com/caddy-tftp/tftp/modules/proxydhcp"
)
