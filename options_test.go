package tftp

import (
	"strconv"
	"testing"
	"time"
)

var testPolicy = negotiationPolicy{maxBlockSize: 8192, maxWindowSize: 16, timeout: time.Second}

func negotiateOpts(pol negotiationPolicy, readSize int64, opts ...option) transferParams {
	req := request{op: opRRQ, filename: "f", mode: "octet", options: opts}
	if readSize < 0 {
		req.op = opWRQ
	}
	return negotiate(&req, pol, readSize)
}

func oackString(p transferParams) string { return formatOptions(p.oack) }

func TestNegotiate(t *testing.T) {
	cases := []struct {
		name      string
		readSize  int64
		opts      []option
		oack      string
		blockSize int
		window    int
		timeout   time.Duration
		tsize     int64
	}{
		{"no options", 10, nil, "", 512, 1, time.Second, -1},
		{"blksize accepted", 10, []option{{"blksize", "1468"}}, "blksize=1468", 1468, 1, time.Second, -1},
		{"blksize minimum", 10, []option{{"blksize", "8"}}, "blksize=8", 8, 1, time.Second, -1},
		{"blksize capped", 10, []option{{"blksize", "65464"}}, "blksize=8192", 8192, 1, time.Second, -1},
		{"blksize too small ignored", 10, []option{{"blksize", "7"}}, "", 512, 1, time.Second, -1},
		{"blksize too large ignored", 10, []option{{"blksize", "65465"}}, "", 512, 1, time.Second, -1},
		{"blksize not a number", 10, []option{{"blksize", "x"}}, "", 512, 1, time.Second, -1},
		{"blksize negative", 10, []option{{"blksize", "-512"}}, "", 512, 1, time.Second, -1},
		{"timeout accepted", 10, []option{{"timeout", "6"}}, "timeout=6", 512, 1, 6 * time.Second, -1},
		{"timeout zero ignored", 10, []option{{"timeout", "0"}}, "", 512, 1, time.Second, -1},
		{"timeout 256 ignored", 10, []option{{"timeout", "256"}}, "", 512, 1, time.Second, -1},
		{"tsize read filled in", 1234, []option{{"tsize", "0"}}, "tsize=1234", 512, 1, time.Second, -1},
		{"tsize read of empty file left out", 0, []option{{"tsize", "0"}}, "", 512, 1, time.Second, -1},
		{"tsize write echoed", -1, []option{{"tsize", "5000"}}, "tsize=5000", 512, 1, time.Second, 5000},
		{"tsize write garbage ignored", -1, []option{{"tsize", "enable"}}, "", 512, 1, time.Second, -1},
		{"windowsize accepted", 10, []option{{"windowsize", "8"}}, "windowsize=8", 512, 8, time.Second, -1},
		{"windowsize capped", 10, []option{{"windowsize", "64"}}, "windowsize=16", 512, 16, time.Second, -1},
		{"windowsize zero ignored", 10, []option{{"windowsize", "0"}}, "", 512, 1, time.Second, -1},
		{"windowsize too large ignored", 10, []option{{"windowsize", "65536"}}, "", 512, 1, time.Second, -1},
		{"unknown ignored", 10, []option{{"multicast", ""}, {"rollover", "0"}}, "", 512, 1, time.Second, -1},
		{"repeated option: first wins", 10, []option{{"blksize", "1024"}, {"blksize", "2048"}}, "blksize=1024", 1024, 1, time.Second, -1},
		{"client order kept", 100, []option{{"tsize", "0"}, {"blksize", "1468"}, {"timeout", "5"}}, "tsize=100 blksize=1468 timeout=5", 1468, 1, 5 * time.Second, -1},
		{"uefi probe", 5 << 20, []option{{"tsize", "0"}, {"blksize", "1468"}}, "tsize=" + strconv.Itoa(5<<20) + " blksize=1468", 1468, 1, time.Second, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := negotiateOpts(testPolicy, c.readSize, c.opts...)
			if got := oackString(p); got != c.oack {
				t.Errorf("oack %q, want %q", got, c.oack)
			}
			if p.blockSize != c.blockSize || p.windowSize != c.window || p.timeout != c.timeout || p.tsize != c.tsize {
				t.Errorf("params blksize=%d window=%d timeout=%v tsize=%d, want %d %d %v %d",
					p.blockSize, p.windowSize, p.timeout, p.tsize, c.blockSize, c.window, c.timeout, c.tsize)
			}
		})
	}
}

func TestNegotiateDisabled(t *testing.T) {
	pol := testPolicy
	pol.disabled = true
	p := negotiateOpts(pol, 100, option{"blksize", "1468"}, option{"tsize", "0"}, option{"windowsize", "4"})
	if len(p.oack) != 0 || p.blockSize != 512 || p.windowSize != 1 {
		t.Fatalf("options honoured although disabled: %+v", p)
	}
}

// FuzzNegotiate checks that any option list yields settings within the
// protocol's and the policy's bounds, and an OACK that only names options
// the client sent.
func FuzzNegotiate(f *testing.F) {
	f.Add("blksize", "1468", "tsize", "0", int64(100))
	f.Add("windowsize", "99999", "timeout", "0", int64(-1))
	f.Add("BLKSIZE", "7", "tsize", "-5", int64(0))
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string, size int64) {
		if size < -1 {
			size = -1
		}
		req, err := parseRequest(appendRequest(nil, opRRQ, "f", "octet", option{k1, v1}, option{k2, v2}))
		if err != nil {
			return
		}
		p := negotiate(&req, testPolicy, size)
		if p.blockSize < minBlockSize || p.blockSize > testPolicy.maxBlockSize && p.blockSize != defaultBlockSize {
			t.Fatalf("block size %d out of bounds", p.blockSize)
		}
		if p.windowSize < 1 || p.windowSize > testPolicy.maxWindowSize {
			t.Fatalf("window %d out of bounds", p.windowSize)
		}
		if p.timeout < time.Second || p.timeout > maxTimeoutOption*time.Second {
			t.Fatalf("timeout %v out of bounds", p.timeout)
		}
		for _, o := range p.oack {
			if _, asked := req.option(o.name); !asked {
				t.Fatalf("OACK carries %q, which the client did not ask for", o.name)
			}
		}
	})
}
