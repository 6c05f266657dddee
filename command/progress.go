package command

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// isTerminal reports whether f is a terminal; progress bars are drawn only
// on one, so piped and scripted use stays quiet.
func isTerminal(f *os.File) bool {
	return term.IsTerminal(int(f.Fd()))
}

// ewmaAge is the number of samples the rate and ETA average over.
const ewmaAge = 30

// newProgress returns a container of progress bars drawn on w.
func newProgress(w io.Writer) *mpb.Progress {
	return mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
}

// addBar adds a bar for a transfer of total bytes (-1 when unknown) that
// shows the bytes moved, the percentage and the time left where the total
// is known, and the rate.
func addBar(p *mpb.Progress, label string, total int64, opts ...mpb.BarOption) *mpb.Bar {
	if total <= 0 {
		total = 0 // mpb: unknown total
	}
	known := func(s decor.Statistics) bool { return s.Total > 0 }
	opts = append(opts,
		mpb.PrependDecorators(decor.Name(label, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(
			decor.Any(func(s decor.Statistics) string {
				if known(s) {
					return humanize.IBytes(uint64(s.Current)) + " / " + humanize.IBytes(uint64(s.Total))
				}
				return humanize.IBytes(uint64(s.Current))
			}, decor.WCSyncSpace),
			decor.Any(func(s decor.Statistics) string {
				if known(s) {
					return fmt.Sprintf("%3.0f%%", 100*float64(s.Current)/float64(s.Total))
				}
				return ""
			}, decor.WCSyncSpace),
			decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", ewmaAge, decor.WCSyncSpace),
			decor.OnCondition(decor.EwmaETA(decor.ET_STYLE_GO, ewmaAge, decor.WCSyncSpace), total > 0),
		),
	)
	return p.New(total, mpb.BarStyle(), opts...)
}

// copyWithProgress copies src to dst, drawing a bar on stderr when it is a
// terminal.
func copyWithProgress(dst io.Writer, src io.Reader, label string, total int64) (int64, error) {
	if !isTerminal(os.Stderr) {
		return io.Copy(dst, src)
	}
	p := newProgress(os.Stderr)
	bar := addBar(p, label, total)
	r, err := bar.ProxyReader(src)
	if err != nil {
		p.Shutdown()
		return io.Copy(dst, src)
	}
	n, err := io.Copy(dst, r)
	if err != nil {
		bar.Abort(false)
	} else {
		bar.SetTotal(-1, true) // complete, also when the total was unknown
	}
	p.Wait()
	return n, err
}
