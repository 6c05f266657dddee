package tftp

// The store modules that live in packages of their own are registered by
// importing them here, so a plain `xcaddy build --with
// github.com/caddy-tftp/tftp` gets every store.
import (
	_ "github.com/caddy-tftp/tftp/modules/caddystorage"
	_ "github.com/caddy-tftp/tftp/modules/filesystem"
	_ "github.com/caddy-tftp/tftp/modules/httpstore"
)
