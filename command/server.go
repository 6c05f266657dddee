// Package command adds two commands to the caddy binary: tftp-server, which
// serves a directory over TFTP with no config file, and tftp, which manages
// a running TFTP app through Caddy's admin API. The package speaks only
// JSON and HTTP to the app, so it does not import it.
package command

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "tftp-server",
		Usage: "[--root <dir>] [--listen <addr>]... [--writable] [--single-port] [--max-block-size <bytes>] [--max-window-size <blocks>] [--access-log]",
		Short: "Serves a directory over TFTP",
		Long: `
Serves the files of a directory over TFTP, with no config file. The
directory is served live: files added, changed or removed on disk are
served as they are at the moment of each request.

The server is read-only unless --writable is given; then any client that
can reach the port may upload files into the directory.

--listen may be repeated, and defaults to :69 (all addresses, the standard
TFTP port). Binding a port below 1024 needs root or the
CAP_NET_BIND_SERVICE capability; use a higher port such as --listen :6969
otherwise.

Ctrl-C stops the server; transfers still running are ended.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringP("root", "r", ".", "The directory to serve")
			cmd.Flags().StringArrayP("listen", "l", []string{":69"}, "An address to listen on (repeatable)")
			cmd.Flags().BoolP("writable", "w", false, "Accept uploads from any client")
			cmd.Flags().Bool("single-port", false, "Keep every transfer on the listening port (for NAT and firewalls)")
			cmd.Flags().Int("max-block-size", 0, "The largest block size a client may negotiate, 512 to 65464 (default 65464)")
			cmd.Flags().Int("max-window-size", 0, "The largest window a client may negotiate, 1 to 65535 (default 64)")
			cmd.Flags().BoolP("access-log", "a", false, "Log every transfer")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdTFTPServer)
		},
	})
}

// serverOptions are the settings of a tftp-server command line.
type serverOptions struct {
	root          string
	listen        []string
	writable      bool
	singlePort    bool
	maxBlockSize  int
	maxWindowSize int
	accessLog     bool
}

// stopGrace is how long transfers in flight may continue after Ctrl-C. It
// is short: a foreground server should stop when asked.
const stopGrace = "500ms"

// cmdTFTPServer runs the tftp-server command until the process is stopped.
func cmdTFTPServer(fl caddycmd.Flags) (int, error) {
	caddy.TrapSignals()

	listen, err := fl.GetStringArray("listen")
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("reading --listen: %w", err)
	}
	opts := serverOptions{
		root:          fl.String("root"),
		listen:        listen,
		writable:      fl.Bool("writable"),
		singlePort:    fl.Bool("single-port"),
		maxBlockSize:  fl.Int("max-block-size"),
		maxWindowSize: fl.Int("max-window-size"),
		accessLog:     fl.Bool("access-log"),
	}
	if opts.root, err = checkRoot(opts.root); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	cfg, err := serverConfig(opts)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if err := caddy.Run(cfg); err != nil {
		if isPermissionError(err) {
			fmt.Fprintf(os.Stderr, "Error: %v\n\n%s\n", err, privilegeHint)
		}
		return caddy.ExitCodeFailedStartup, err
	}

	mode := "read-only"
	if opts.writable {
		mode = "writable"
	}
	log.Printf("Caddy serving %s over TFTP (%s) on %s", opts.root, mode, strings.Join(opts.listen, ", "))
	if opts.writable {
		log.Printf("WARNING: uploads are on: any client that can reach the port may upload files into %s", opts.root)
	}
	select {}
}

// checkRoot makes the directory to serve absolute and checks that it is a
// directory, so a typo fails before anything listens.
func checkRoot(root string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("--root %s: %w", root, err)
	}
	info, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("--root: %w", err)
	}
	if !info.IsDir() {
		return "", fmt.Errorf("--root %s: not a directory", abs)
	}
	return abs, nil
}

// serverConfig builds the JSON config of a tftp-server command line: one
// file_system store and one server, with the admin API off.
func serverConfig(o serverOptions) (*caddy.Config, error) {
	if len(o.listen) == 0 {
		return nil, errors.New("--listen: at least one address is needed")
	}
	server := map[string]any{
		"listen":      o.listen,
		"store":       "files",
		"read_only":   !o.writable,
		"single_port": o.singlePort,
	}
	if o.writable {
		// Uploads are loopback-only unless allow_write names more; the
		// operator asked for uploads, from anywhere.
		server["allow_write"] = []string{"0.0.0.0/0", "::/0"}
	}
	if o.maxBlockSize != 0 {
		server["max_block_size"] = o.maxBlockSize
	}
	if o.maxWindowSize != 0 {
		server["max_window_size"] = o.maxWindowSize
	}
	app, err := json.Marshal(map[string]any{
		"grace_period": stopGrace,
		"stores": map[string]any{
			"files": map[string]any{"module": "file_system", "root": o.root},
		},
		"servers": map[string]any{"srv": server},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the tftp app config: %w", err)
	}
	persist := false
	cfg := &caddy.Config{
		Admin: &caddy.AdminConfig{
			Disabled: true,
			Config:   &caddy.ConfigSettings{Persist: &persist},
		},
		AppsRaw: caddy.ModuleMap{"tftp": app},
	}
	if !o.accessLog {
		cfg.Logging = &caddy.Logging{Logs: map[string]*caddy.CustomLog{
			"default": {Exclude: []string{"tftp.access"}},
		}}
	}
	return cfg, nil
}

// privilegeHint tells the operator how to bind a privileged port.
const privilegeHint = `Binding a port below 1024 needs privileges. Either use a port above 1024:

	caddy tftp-server --listen :6969 ...

or let this binary bind low ports without running as root:

	sudo setcap cap_net_bind_service=+ep "$(command -v caddy)"`

// isPermissionError reports whether starting failed for lack of privilege.
// Caddy reports an app's start error as text, so the message is checked
// too.
func isPermissionError(err error) bool {
	return errors.Is(err, fs.ErrPermission) || strings.Contains(err.Error(), syscall.EACCES.Error())
}
