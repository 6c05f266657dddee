package tftp

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAccessLogNamesRequestedAndServedFile checks that the access line of a
// transfer whose name a rewrite changed carries both the name the client
// asked for and the name served, and that a refusal carries the requested
// name.
func TestAccessLogNamesRequestedAndServedFile(t *testing.T) {
	port := freePort(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	startCaddy(t, fmt.Sprintf(`{
	admin off
	persist_config off
	log access {
		output file %s
		format json
		include tftp.access
	}
	tftp {
		listen 127.0.0.1:%d
		rewrite ^boot/(.*)$ images/$1
	}
}
`, logPath, port))
	c := &testClient{server: loopback4(port)}
	data := randomBytes(t, 700)
	if err := c.put("images/kernel", data); err != nil {
		t.Fatal(err)
	}
	if _, err := c.get(`\boot\kernel`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.get("missing"); errorCode(err) != int(ErrCodeFileNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	want := map[string]map[string]string{
		"transfer finished": {"requested": `\boot\kernel`, "file": "images/kernel"},
		"request refused":   {"requested": "missing"},
	}
	waitFor(t, "the access log lines", 5*time.Second, func() bool {
		f, err := os.Open(logPath)
		if err != nil {
			return false
		}
		defer f.Close()
		found := 0
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			fields, ok := want[fmt.Sprint(line["msg"])]
			if !ok {
				continue
			}
			match := true
			for k, v := range fields {
				if line[k] != v {
					match = false
				}
			}
			if match {
				found++
			}
		}
		return found == len(want)
	})
}
