// Command caddy is a Caddy binary with the TFTP app built in, for
// development: go run ./cmd/caddy run --config examples/Caddyfile
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-tftp/tftp"
	_ "github.com/caddy-tftp/tftp/modules/proxydhcp"
)

func main() {
	caddycmd.Main()
}
