//go:build firmware

package firmware

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tftpOptions are the option label values of
// caddy_tftp_options_negotiated_total.
var tftpOptions = []string{"blksize", "timeout", "tsize", "windowsize"}

// sample is one line of a /metrics scrape.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

func (s sample) String() string {
	keys := make([]string, 0, len(s.labels))
	for k := range s.labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, s.labels[k])
	}
	return fmt.Sprintf("%s{%s} %g", s.name, b.String(), s.value)
}

// metrics is a parsed /metrics scrape.
type metrics []sample

var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// parseMetrics parses the Prometheus text format.
func parseMetrics(text string) (metrics, error) {
	var out metrics
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				return nil, fmt.Errorf("metric line %q: unbalanced braces", line)
			}
			s.name = line[:i]
			for _, m := range labelPair.FindAllStringSubmatch(line[i+1:j], -1) {
				v, err := strconv.Unquote(`"` + m[2] + `"`)
				if err != nil {
					v = m[2]
				}
				s.labels[m[1]] = v
			}
			rest = line[j+1:]
		} else {
			s.name, rest, _ = strings.Cut(line, " ")
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("metric line %q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %v", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// samples returns the samples of name whose labels include every
// name, value pair given.
func (m metrics) samples(name string, labels ...string) []sample {
	var out []sample
	for _, s := range m {
		if s.name != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if s.labels[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if match {
			out = append(out, s)
		}
	}
	return out
}

// sum adds up the samples of name whose labels include every name, value
// pair given.
func (m metrics) sum(name string, labels ...string) float64 {
	var v float64
	for _, s := range m.samples(name, labels...) {
		v += s.value
	}
	return v
}

// scrape fetches the server's /metrics from its admin endpoint; inside the
// server's network namespace with curl when it runs in one.
func (s *tftpServer) scrape(t *testing.T) metrics {
	t.Helper()
	url := "http://" + s.admin + "/metrics"
	var text string
	if s.netns != "" {
		out, err := runErr("ip", "netns", "exec", s.netns, "curl", "-sS", "--fail", "--max-time", "10", url)
		if err != nil {
			t.Fatalf("scraping %s in %s: %v", url, s.netns, err)
		}
		text = out
	} else {
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("scraping %s: %v", url, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("scraping %s: %s %v\n%s", url, resp.Status, err, body)
		}
		text = string(body)
	}
	m, err := parseMetrics(text)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	return m
}

// seededMetrics waits until the access log shows the n seeding uploads
// finished (their counters are updated before the log line), and scrapes
// /metrics, as the baseline the firmware's reads are counted from.
func (s *tftpServer) seededMetrics(t *testing.T, n int) metrics {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(s.finished(t, "write", "")) < n {
		if time.Now().After(deadline) {
			t.Fatalf("access log has %d finished uploads, want %d", len(s.finished(t, "write", "")), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s.scrape(t)
}

// firmwareMetrics scrapes /metrics after a boot and logs the options the
// firmware's reads negotiated since base (the seeding uploads negotiate
// blksize and tsize too), their outcomes and the ERROR packets sent. It
// checks each option count against the access log's reads and returns
// the option counts and the scrape.
func (s *tftpServer) firmwareMetrics(t *testing.T, who string, base metrics) (map[string]float64, metrics) {
	t.Helper()
	const optName = "caddy_tftp_options_negotiated_total"
	now := s.scrape(t)
	reads := s.reads(t, "")
	opts := map[string]float64{}
	var counts []string
	for _, o := range tftpOptions {
		opts[o] = now.sum(optName, "option", o) - base.sum(optName, "option", o)
		counts = append(counts, fmt.Sprintf("%s=%g", o, opts[o]))
		logged := 0
		for _, e := range reads {
			if option(e.Options, o) != "" {
				logged++
			}
		}
		if opts[o] != float64(logged) {
			t.Errorf("%s: %s{option=%q} went up by %g during the boot, but the access log has %d reads that negotiated it", who, optName, o, opts[o], logged)
		}
	}
	t.Logf("%s metrics: %s during the boot: %s", who, optName, strings.Join(counts, " "))
	for _, name := range []string{"caddy_tftp_transfers_total", "caddy_tftp_errors_sent_total"} {
		ss := now.samples(name)
		if len(ss) == 0 {
			t.Logf("%s metrics: no %s samples", who, name)
		}
		for _, smp := range ss {
			t.Logf("%s metrics: %s", who, smp)
		}
	}
	return opts, now
}

// freeTCPPort returns a TCP port that is free on 127.0.0.1 right now.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
