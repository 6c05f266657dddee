//go:build firmware

package firmware

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a child process that is always stopped by its PID: at its
// deadline, or when the test ends.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
}

// startProc starts argv with its output going to out and env added to the
// environment. The process is sent SIGTERM, then SIGKILL, when ctx ends
// and when the test ends.
func startProc(t *testing.T, ctx context.Context, name string, out io.Writer, env []string, argv ...string) *proc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Env = append(os.Environ(), env...)
	// Should the test binary die, the kernel ends the child too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			p.stop()
		case <-p.done:
		}
	}()
	t.Cleanup(p.stop)
	return p
}

// pid is the process's ID.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to exit on its own.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// stop ends the process by PID: SIGTERM, then SIGKILL after 10 seconds.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(p.pid(), syscall.SIGTERM)
	if p.wait(10 * time.Second) {
		return
	}
	_ = syscall.Kill(p.pid(), syscall.SIGKILL)
	<-p.done
}

// run runs a short command and fails the test when it fails.
func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := runErr(argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runErr runs a short command (bounded to 30 seconds).
func runErr(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out), nil
}

// console records a guest's serial output, raw to a file and as text with
// terminal escape sequences removed for matching.
type console struct {
	start time.Time
	file  *os.File

	mu      sync.Mutex
	raw     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newConsole(path string) (*console, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &console{file: f, changed: make(chan struct{})}, nil
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.raw.Write(p)
	_, _ = c.file.Write(p)
	close(c.changed)
	c.changed = make(chan struct{})
	return len(p), nil
}

func (c *console) Close() error { return c.file.Close() }

var (
	escapeSeq = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>78cDEHM])`)
	newlines  = regexp.MustCompile(`\r\n|\r`)
)

// text returns the output so far without escape sequences, and a channel
// that is closed at the next write.
func (c *console) text() (string, <-chan struct{}) {
	c.mu.Lock()
	s := c.raw.String()
	ch := c.changed
	c.mu.Unlock()
	s = escapeSeq.ReplaceAllString(s, "")
	s = newlines.ReplaceAllString(s, "\n")
	return s, ch
}

// tail returns the last n lines of the cleaned output, for failure messages.
func (c *console) tail(n int) string {
	s, _ := c.text()
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

var errFailureMarker = errors.New("failure marker on the console")

// waitFor waits until success matches the console output and returns the
// match (with its submatches) and the time since the console started. It
// fails on a failure match, at the context's deadline, or when the
// process ends first.
func (c *console) waitFor(ctx context.Context, p *proc, success, failure *regexp.Regexp) ([]string, time.Duration, error) {
	for {
		s, changed := c.text()
		if m := success.FindStringSubmatch(s); m != nil {
			return m, time.Since(c.start), nil
		}
		if failure != nil {
			if m := failure.FindString(s); m != "" {
				return nil, time.Since(c.start), fmt.Errorf("%w: %q while waiting for /%s/", errFailureMarker, m, success)
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, time.Since(c.start), fmt.Errorf("no /%s/ on the console after %.1fs: %v", success, time.Since(c.start).Seconds(), ctx.Err())
		case <-p.done:
			// Give the output copier a moment to deliver the last bytes.
			time.Sleep(200 * time.Millisecond)
			s, _ = c.text()
			if m := success.FindStringSubmatch(s); m != nil {
				return m, time.Since(c.start), nil
			}
			return nil, time.Since(c.start), fmt.Errorf("%s exited (%v) after %.1fs before /%s/ appeared", p.name, p.err, time.Since(c.start).Seconds(), success)
		}
	}
}

// guest is a QEMU process with its serial console.
type guest struct {
	*proc
	con *console
	ctx context.Context
}

// startGuest runs QEMU with the serial console on stdio, bounded by
// timeout. netns, when not empty, is the namespace to run it in.
func startGuest(t *testing.T, dir, name, netns string, timeout time.Duration, qemu ...string) *guest {
	t.Helper()
	con, err := newConsole(dir + "/" + name + "-console.log")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	argv := qemu
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, qemu...)
	}
	if err := os.WriteFile(dir+"/"+name+"-cmdline.txt", []byte(strings.Join(argv, " ")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	con.start = time.Now()
	p := startProc(t, ctx, name, con, nil, argv...)
	t.Cleanup(func() {
		p.stop()
		con.Close()
	})
	return &guest{proc: p, con: con, ctx: ctx}
}

// expect waits for success on the console; on failure it stops the guest
// and fails the test with the console's tail.
func (g *guest) expect(t *testing.T, what string, success, failure *regexp.Regexp) ([]string, time.Duration) {
	t.Helper()
	m, d, err := g.con.waitFor(g.ctx, g.proc, success, failure)
	if err != nil {
		g.stop()
		t.Fatalf("%s: waiting for %s: %v\n--- last console lines ---\n%s", g.name, what, err, g.con.tail(40))
	}
	t.Logf("%s: %s at %.2fs", g.name, what, d.Seconds())
	return m, d
}

// finish lets the guest exit on its own for up to grace, then stops it.
func (g *guest) finish(t *testing.T, grace time.Duration) {
	t.Helper()
	if g.wait(grace) {
		t.Logf("%s: QEMU exited by itself after %.2fs (%v)", g.name, time.Since(g.con.start).Seconds(), exitStatus(g.err))
		return
	}
	g.stop()
	t.Logf("%s: QEMU stopped by PID after %.2fs", g.name, time.Since(g.con.start).Seconds())
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
