package command

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// adminClient sends requests to the admin API of a running Caddy.
type adminClient struct {
	origin string // scheme and host of request URLs
	tcp    bool   // whether to send an Origin header, as caddy reload does
	http   *http.Client
}

// addAdminFlags adds the flags that say where the admin API is, the same
// as caddy reload's.
func addAdminFlags(cmd *cobra.Command) {
	cmd.PersistentFlags().String("address", "", "The address of the admin API (default: the config's, else localhost:2019)")
	cmd.PersistentFlags().StringP("config", "c", "", "A config file to read the admin address from")
	cmd.PersistentFlags().StringP("adapter", "a", "", "The name of the config adapter to use")
}

// newAdminClient finds the admin API the way caddy reload does: --address,
// else the admin address of the config named by --config and --adapter,
// else the default.
func newAdminClient(cmd *cobra.Command) (*adminClient, error) {
	fl := caddycmd.Flags{FlagSet: cmd.Flags()}
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return nil, fmt.Errorf("finding the admin API address: %w", err)
	}
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil || na.PortRangeSize() > 1 {
		return nil, fmt.Errorf("invalid admin address %s: %v", addr, err)
	}
	c := &adminClient{origin: "http://127.0.0.1"}
	dialAddr := na.JoinHostPort(0)
	if na.IsUnixNetwork() {
		// A unix socket address may end in "|0222", its file mode.
		dialAddr, _, _ = strings.Cut(na.Host, "|")
	} else if !na.IsFdNetwork() {
		c.origin = "http://" + na.JoinHostPort(0)
		c.tcp = true
	}
	c.http = &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, na.Network, dialAddr)
		},
	}}
	return c, nil
}

// do sends a request and returns the response of a 2xx status; any other
// status becomes an error carrying the API's message.
func (c *adminClient) do(ctx context.Context, method, path string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.origin+path, body)
	if err != nil {
		return nil, fmt.Errorf("making request: %w", err)
	}
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	if c.tcp {
		req.Header.Set("Origin", c.origin)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var apiErr struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &apiErr) == nil && apiErr.Error != "" {
		msg = apiErr.Error
	}
	return nil, fmt.Errorf("%s %s: %s (HTTP %d)", method, path, msg, resp.StatusCode)
}

// getJSON decodes the answer to a GET into v.
func (c *adminClient) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, 0)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decoding the answer: %w", path, err)
	}
	return nil
}

// filePath is the admin API path of a file in a store; a file name's "/"
// separators stay, each part is escaped.
func filePath(store, name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return storePath(store) + "/files/" + strings.Join(parts, "/")
}

// storePath is the admin API path of a store.
func storePath(store string) string {
	return "/tftp/stores/" + url.PathEscape(store)
}

// storeInfo is an entry of GET /tftp/stores.
type storeInfo struct {
	Name        string `json:"name"`
	Module      string `json:"module"`
	Files       int    `json:"files"`
	Bytes       int64  `json:"bytes"`
	MaxBytes    int64  `json:"max_bytes"`
	MaxFileSize int64  `json:"max_file_size"`
}

// fileInfo is an entry of GET /tftp/stores/<store>/files, and the answer
// to a PUT.
type fileInfo struct {
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	ModTime string `json:"mod_time"`
	SHA256  string `json:"sha256"`
}
