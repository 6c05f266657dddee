package tftp

// The command package adds the caddy tftp-server and caddy tftp commands.
// Importing it here means any Caddy built with this module (for example
// with xcaddy build --with github.com/caddy-tftp/tftp) has them.
import _ "github.com/caddy-tftp/tftp/command"
