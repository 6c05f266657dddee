package filesystem

import (
	"github.com/caddy-tftp/tftp/internal/directive"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the store from its block in the tftp global
// option:
//
//	store <name> file_system {
//		root <directory>
//		create_dirs
//		file_mode <octal>
//		dir_mode <octal>
//		max_file_size <size>
//	}
//
// Sizes are bytes, or forms such as 512MiB.
func (s *FileSystem) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()          // "store"
	d.RemainingArgs() // name and module, read by the caller
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "root":
			if s.Root != "" {
				return d.Err("root is already set")
			}
			v, err := directive.Single(d)
			if err != nil {
				return err
			}
			s.Root = v
		case "create_dirs":
			if err := directive.Flag(d, &s.CreateDirs); err != nil {
				return err
			}
		case "file_mode", "dir_mode":
			name := d.Val()
			v, err := directive.Single(d)
			if err != nil {
				return err
			}
			if _, err := parseMode(v, 0); err != nil {
				return d.Errf("%s: %v", name, err)
			}
			if name == "file_mode" {
				s.FileMode = v
			} else {
				s.DirMode = v
			}
		case "max_file_size":
			if err := directive.Size(d, &s.MaxFileSize); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized file_system store directive: %s", d.Val())
		}
	}
	if s.Root == "" {
		return d.Err("file_system store: root is required")
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*FileSystem)(nil)
