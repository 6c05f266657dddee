package command

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
)

// transferInfo is an entry of GET /tftp/transfers.
type transferInfo struct {
	Server    string    `json:"server"`
	Listen    string    `json:"listen"`
	Remote    string    `json:"remote"`
	File      string    `json:"file"`
	Direction string    `json:"direction"`
	Mode      string    `json:"mode"`
	Bytes     int64     `json:"bytes"`
	Size      *int64    `json:"size"` // absent from servers that do not report it
	BlockSize int       `json:"block_size"`
	Start     time.Time `json:"start"`
}

// size returns the transfer's known size, or -1.
func (t transferInfo) size() int64 {
	if t.Size == nil || *t.Size < 0 {
		return -1
	}
	return *t.Size
}

// key identifies a transfer across polls.
func (t transferInfo) key() string {
	return t.Listen + " " + t.Remote + " " + t.File + " " + t.Start.String()
}

// label names a transfer on its progress bar.
func (t transferInfo) label() string {
	arrow := "->"
	if t.Direction == "write" {
		arrow = "<-"
	}
	return fmt.Sprintf("%s %s %s", t.File, arrow, t.Remote)
}

// transfersCommand is caddy tftp transfers: the transfers in progress,
// once or (with --watch) as live progress bars.
func transfersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "transfers [--watch]",
		Short: "Shows the transfers in progress",
		Long: `
Shows the transfers in progress: server, client, file, direction, bytes
moved (and the file's size where it is known), rate and time left.

With --watch, each transfer is shown as a progress bar that refreshes until
Ctrl-C; a line is printed above the bars when a transfer ends.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAdminClient(cmd)
			if err != nil {
				return err
			}
			watch, _ := cmd.Flags().GetBool("watch")
			interval, _ := cmd.Flags().GetDuration("interval")
			if !watch {
				return printTransfers(cmd, c)
			}
			if interval <= 0 {
				return fmt.Errorf("--interval %v: must be positive", interval)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			if !isTerminal(os.Stdout) {
				return pollTransfers(ctx, cmd, c, interval)
			}
			return watchTransfers(ctx, c, interval)
		},
	}
	cmd.Flags().BoolP("watch", "w", false, "Show live progress bars until Ctrl-C")
	cmd.Flags().Duration("interval", time.Second, "How often --watch asks the server")
	return cmd
}

// printTransfers prints the transfers in progress as a table.
func printTransfers(cmd *cobra.Command, c *adminClient) error {
	var list []transferInfo
	if err := c.getJSON(cmd.Context(), "/tftp/transfers", &list); err != nil {
		return err
	}
	writeTransferTable(cmd.OutOrStdout(), list, time.Now())
	return nil
}

// writeTransferTable writes transfers as a table with their progress,
// average rate and estimated time left.
func writeTransferTable(out io.Writer, list []transferInfo, now time.Time) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVER\tREMOTE\tDIRECTION\tFILE\tPROGRESS\tRATE\tETA")
	for _, t := range list {
		progress := humanize.IBytes(uint64(t.Bytes))
		elapsed := now.Sub(t.Start).Seconds()
		rate, eta := "-", "-"
		if elapsed > 0 {
			bps := float64(t.Bytes) / elapsed
			rate = humanize.IBytes(uint64(bps)) + "/s"
			if size := t.size(); size >= 0 && bps > 0 {
				eta = (time.Duration(float64(size-t.Bytes)/bps) * time.Second).Round(time.Second).String()
			}
		}
		if size := t.size(); size > 0 {
			progress += fmt.Sprintf(" / %s (%.0f%%)", humanize.IBytes(uint64(size)), 100*float64(t.Bytes)/float64(size))
		} else if size == 0 {
			progress += " / 0 B"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Server, t.Remote, t.Direction, t.File, progress, rate, eta)
	}
	w.Flush()
}

// pollTransfers prints the table at each interval until ctx ends, for
// --watch when stdout is not a terminal.
func pollTransfers(ctx context.Context, cmd *cobra.Command, c *adminClient, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		var list []transferInfo
		if err := c.getJSON(ctx, "/tftp/transfers", &list); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		writeTransferTable(cmd.OutOrStdout(), list, time.Now())
		fmt.Fprintln(cmd.OutOrStdout())
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// watchedTransfer is a transfer shown by watchTransfers.
type watchedTransfer struct {
	info     transferInfo
	bar      *mpb.Bar
	lastSeen time.Time
}

// watchTransfers shows each transfer as a progress bar, refreshed at each
// interval, until ctx ends.
func watchTransfers(ctx context.Context, c *adminClient, interval time.Duration) error {
	p := newProgress(os.Stdout)
	shown := map[string]*watchedTransfer{}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var err error
	for err == nil {
		var list []transferInfo
		if err = c.getJSON(ctx, "/tftp/transfers", &list); err != nil {
			break
		}
		now := time.Now()
		seen := map[string]bool{}
		for _, t := range list {
			k := t.key()
			seen[k] = true
			wt := shown[k]
			if wt == nil {
				wt = &watchedTransfer{bar: addBar(p, t.label(), t.size(), mpb.BarRemoveOnComplete()), lastSeen: t.Start}
				shown[k] = wt
			}
			wt.bar.EwmaSetCurrent(t.Bytes, now.Sub(wt.lastSeen))
			wt.info, wt.lastSeen = t, now
		}
		for k, wt := range shown {
			if seen[k] {
				continue
			}
			delete(shown, k)
			wt.bar.SetTotal(-1, true)
			fmt.Fprintf(p, "ended: %s, %s in %s\n", wt.info.label(), humanize.IBytes(uint64(wt.info.Bytes)), now.Sub(wt.info.Start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
			continue
		}
		break
	}
	for _, wt := range shown {
		wt.bar.Abort(false)
	}
	p.Shutdown()
	if ctx.Err() != nil {
		return nil // Ctrl-C
	}
	return err
}
