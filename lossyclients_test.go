package tftp

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// lossyUploader runs one real client's upload of local as remote through
// addr, with the client's retransmission timeout set to 1 s where it can be
// set, so a lost packet costs a second rather than the client's default.
type lossyUploader struct {
	name string
	bin  string
	run  func(ctx context.Context, addr, port, local, remote string) *exec.Cmd
}

var lossyUploaders = []lossyUploader{
	{"curl", curlBin, func(ctx context.Context, addr, port, local, remote string) *exec.Cmd {
		// curl derives its retransmission interval from the connect
		// timeout: a third of it, at least 1 s.
		return exec.CommandContext(ctx, curlBin, "-sS", "--connect-timeout", "3", "-T", local, "tftp://"+addr+":"+port+"/"+remote)
	}},
	{"tftp-hpa", tftpHPABin, func(ctx context.Context, addr, port, local, remote string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, tftpHPABin, "-4", "-v", "-l", addr, port)
		cmd.Stdin = strings.NewReader(fmt.Sprintf("binary\nrexmt 1\ntimeout 60\nput %s %s\nquit\n", local, remote))
		return cmd
	}},
	{"atftp", atftpBin, func(ctx context.Context, addr, port, local, remote string) *exec.Cmd {
		return exec.CommandContext(ctx, atftpBin, "--tftp-timeout", "1", "-p", "-r", remote, "-l", local, addr, port)
	}},
}

// TestReliabilityLossyUploads runs uploads from curl, tftp-hpa and atftp
// through a relay that loses 5% and duplicates 5% of the packets in each
// direction (seeded, so every run sees the same faults). Every upload must
// be stored whole, and the client must not send more DATA packets than the
// blocks plus one per fault that calls for it: a server that ACKs every duplicate DATA
// makes curl send every later block twice (the Sorcerer's Apprentice).
func TestReliabilityLossyUploads(t *testing.T) {
	for _, u := range lossyUploaders {
		requireClient(t, u.bin)
	}
	port := advStart(t)
	server := loopback4(port)
	dir := t.TempDir()
	const size = 40*defaultBlockSize + 100
	blocks := size/defaultBlockSize + 1
	var wg sync.WaitGroup
	for i, u := range lossyUploaders {
		data := randomBytes(t, size)
		local := writeLocal(t, dir, u.name+".bin", data)
		remote := "lossy-" + u.name
		relay := startFaultRelay(t, server, uint64(1000+i), 0.05, 0.05)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := u.run(ctx, relay.addr().Addr().String(), strconv.Itoa(int(relay.addr().Port())), local, remote)
			cmd.WaitDelay = 5 * time.Second
			start := time.Now()
			out, err := cmd.CombinedOutput()
			sent, dropped, doubled, dataSeen := relay.faultCounts()
			// Each lost packet costs the client one DATA retransmission,
			// and so does each ACK the relay doubles (atftp answers every
			// ACK, duplicates too). The slack of 4 covers a client timing
			// out on a machine too loaded to answer in time; the Sorcerer's
			// Apprentice this guards against doubles the traffic (over 100
			// packets here).
			limit := blocks + dropped[0] + dropped[1] + doubled[1] + 4
			t.Logf("%s: %v; %d DATA sent for %d blocks; to server %d (lost %d, doubled %d), to client %d (lost %d, doubled %d)",
				u.name, time.Since(start).Round(time.Millisecond), dataSeen, blocks, sent[0], dropped[0], doubled[0], sent[1], dropped[1], doubled[1])
			if err != nil || tftpHPAFailure.Match(out) || atftpFailure.Match(out) {
				t.Errorf("%s upload through a lossy, duplicating path failed: %v\n%s", u.name, err, out)
				return
			}
			if dataSeen > limit {
				t.Errorf("%s sent %d DATA packets for %d blocks (limit %d for these faults): duplicate ACKs multiplied the traffic", u.name, dataSeen, blocks, limit)
			}
			got, err := (&testClient{server: server}).get(remote)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s upload stored %d bytes (err %v), want the %d bytes sent", u.name, len(got), err, len(data))
			}
		}()
	}
	wg.Wait()
	_ = os.RemoveAll(filepath.Join(dir, "unused"))
}
