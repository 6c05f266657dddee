package command

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "tftp",
		Usage: "ls|get|put|rm|transfers [--address <admin>] [--config <file>] [--adapter <name>]",
		Short: "Manages the files and transfers of a running TFTP app",
		Long: `
Lists, downloads, uploads and deletes the files of a running TFTP app's
stores, and shows the transfers in progress, through Caddy's admin API.

The admin API is found like caddy reload finds it: --address, else the
admin address of the config given with --config (and --adapter), else
localhost:2019.`,
		CobraFunc: func(cmd *cobra.Command) {
			addAdminFlags(cmd)
			cmd.AddCommand(lsCommand(), getCommand(), putCommand(), rmCommand(), transfersCommand())
		},
	})
}

// lsCommand is caddy tftp ls: the stores, or the files of one store.
func lsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ls [<store>]",
		Short: "Lists the stores, or the files of a store",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAdminClient(cmd)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			if len(args) == 0 {
				var stores []storeInfo
				if err := c.getJSON(cmd.Context(), "/tftp/stores", &stores); err != nil {
					return err
				}
				fmt.Fprintln(w, "STORE\tMODULE\tFILES\tSIZE\tLIMIT")
				for _, s := range stores {
					limit := "-"
					if s.MaxBytes > 0 {
						limit = humanize.IBytes(uint64(s.MaxBytes))
					}
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", s.Name, s.Module, s.Files, humanize.IBytes(uint64(s.Bytes)), limit)
				}
				return w.Flush()
			}
			var files []fileInfo
			if err := c.getJSON(cmd.Context(), storePath(args[0])+"/files", &files); err != nil {
				return err
			}
			fmt.Fprintln(w, "NAME\tSIZE\tMODIFIED\tSHA256")
			for _, f := range files {
				mod := f.ModTime
				if t, err := time.Parse(time.RFC3339Nano, f.ModTime); err == nil {
					mod = t.Local().Format("2006-01-02 15:04:05")
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.Name, humanize.IBytes(uint64(f.Size)), mod, f.SHA256)
			}
			return w.Flush()
		},
	}
}

// getCommand is caddy tftp get: download a file from a store.
func getCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get <store> <name> [<file>|-]",
		Short: "Downloads a file from a store (to a local file, or to stdout with -)",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, name := args[0], args[1]
			target := path.Base(name)
			if len(args) == 3 {
				target = args[2]
			}
			c, err := newAdminClient(cmd)
			if err != nil {
				return err
			}
			resp, err := c.do(cmd.Context(), http.MethodGet, filePath(store, name), nil, 0)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if target == "-" {
				if _, err := copyWithProgress(cmd.OutOrStdout(), resp.Body, name, resp.ContentLength); err != nil {
					return fmt.Errorf("downloading %s: %w", name, err)
				}
				return nil
			}
			return download(target, resp.Body, name, resp.ContentLength)
		},
	}
}

// download writes body to a temporary file next to target and renames it
// into place once it is complete, so a failed download leaves no partial
// file.
func download(target string, body io.Reader, name string, size int64) error {
	tmp, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".part-*")
	if err != nil {
		return fmt.Errorf("downloading %s: %w", name, err)
	}
	_, err = copyWithProgress(tmp, body, name, size)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), target)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("downloading %s to %s: %w", name, target, err)
	}
	return nil
}

// putCommand is caddy tftp put: upload a file into a store.
func putCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "put <store> <file>|- [<name>]",
		Short: "Uploads a local file (or stdin with -) into a store, replacing a file of the same name",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, local := args[0], args[1]
			name := filepath.Base(local)
			if len(args) == 3 {
				name = args[2]
			} else if local == "-" {
				return errors.New("put from stdin needs a <name>")
			}
			var (
				src  io.Reader = cmd.InOrStdin()
				size int64     = -1
			)
			if local != "-" {
				f, err := os.Open(local)
				if err != nil {
					return fmt.Errorf("uploading: %w", err)
				}
				defer f.Close()
				info, err := f.Stat()
				if err != nil {
					return fmt.Errorf("uploading: %w", err)
				}
				src, size = f, info.Size()
			}
			c, err := newAdminClient(cmd)
			if err != nil {
				return err
			}
			body, bodyErr := progressBody(src, name, size)
			resp, err := c.do(cmd.Context(), http.MethodPut, filePath(store, name), body, size)
			if werr := bodyErr(); err == nil && werr != nil {
				err = werr
			}
			if err != nil {
				return fmt.Errorf("uploading %s: %w", name, err)
			}
			defer resp.Body.Close()
			var got fileInfo
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				return fmt.Errorf("uploading %s: decoding the answer: %w", name, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s: %s, sha256 %s\n", store, got.Name, humanize.IBytes(uint64(got.Size)), got.SHA256)
			return nil
		},
	}
}

// progressBody returns the request body of an upload: src, copied through
// a pipe that draws a progress bar when stderr is a terminal. The returned
// function waits for the copy and returns its error.
func progressBody(src io.Reader, name string, size int64) (io.Reader, func() error) {
	if !isTerminal(os.Stderr) {
		return src, func() error { return nil }
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := copyWithProgress(pw, src, name, size)
		pw.CloseWithError(err)
		done <- err
	}()
	return pr, func() error {
		pr.Close() // unblocks the copy if the request ended early
		return <-done
	}
}

// rmCommand is caddy tftp rm: delete a file from a store.
func rmCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rm <store> <name>",
		Short: "Deletes a file from a store",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAdminClient(cmd)
			if err != nil {
				return err
			}
			resp, err := c.do(cmd.Context(), http.MethodDelete, filePath(args[0], args[1]), nil, 0)
			if err != nil {
				return err
			}
			return resp.Body.Close()
		},
	}
}
