package tftp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// dashboardQueries returns every PromQL query of the Grafana dashboard:
// panel targets and template variable queries.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("examples/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Inputs []struct {
			Name     string `json:"name"`
			PluginID string `json:"pluginId"`
		} `json:"__inputs"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("examples/grafana-dashboard.json: %v", err)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("the dashboard's __inputs should be one Prometheus datasource named DS_PROMETHEUS: %+v", d.Inputs)
	}
	var queries []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries = append(queries, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		queries = append(queries, v.Definition)
	}
	return queries
}

// TestDashboardMetricsExported checks that every metric the Grafana
// dashboard queries is exported by a running server once it has done some
// transfers, so no panel stays empty for want of a metric.
func TestDashboardMetricsExported(t *testing.T) {
	names := map[string]bool{}
	metric := regexp.MustCompile(`\bcaddy_tftp_[a-z_]+`)
	for _, q := range dashboardQueries(t) {
		for _, m := range metric.FindAllString(q, -1) {
			names[m] = true
		}
	}
	if len(names) == 0 {
		t.Fatal("the dashboard queries no caddy_tftp_ metric")
	}

	r := startReadmeCaddy(t, "examples/Caddyfile", quickStartCaddyfile(t))
	server := r.server()
	data := randomBytes(t, 1500)
	if err := (&testClient{server: server}).put("d.bin", data); err != nil {
		t.Fatalf("upload: %v", err)
	}
	if _, err := (&testClient{server: server, options: []option{{"blksize", "1024"}}}).get("d.bin"); err != nil {
		t.Fatalf("download: %v", err)
	}
	if _, err := (&testClient{server: server}).get("missing"); errorCode(err) != int(ErrCodeFileNotFound) {
		t.Fatalf("refused request: got %v, want error 1", err)
	}
	// A repeated request while its transfer runs is dropped.
	rc := dialRaw(t)
	rrq := appendRequest(nil, opRRQ, "d.bin", "octet")
	rc.send(server, rrq)
	rc.send(server, rrq)
	pkt, tid := rc.mustRecv(2 * time.Second)
	if opcode(pkt) != opDATA {
		t.Fatalf("want DATA 1, got opcode %d", opcode(pkt))
	}
	rc.send(tid, appendError(nil, ErrCodeUndefined, "client gives up"))

	status, body := r.do(http.MethodGet, "/metrics", nil)
	if status != http.StatusOK {
		t.Fatalf("/metrics: status %d", status)
	}
	samples := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		samples[name] = true
	}
	for name := range names {
		if !samples[name] {
			t.Errorf("the dashboard queries %s, which /metrics does not export", name)
		}
	}
	if !bytes.Contains(body, []byte(`caddy_tftp_requests_dropped_total{reason="duplicate"`)) {
		t.Error("no dropped request counted; the drops panel would be empty")
	}
}
