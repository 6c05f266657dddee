package httpstore

import (
	"errors"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddy-tftp/tftp/store"
)

// The placeholders of a URL template.
const (
	phFile = iota
	phRemoteHost
	phRemotePort
	phServer
)

var placeholders = map[string]int{
	"{file}":        phFile,
	"{remote_host}": phRemoteHost,
	"{remote_port}": phRemotePort,
	"{tftp.server}": phServer,
}

// urlPart is a literal piece of a URL template, or a placeholder.
type urlPart struct {
	lit     string
	ph      int  // when lit is empty
	inQuery bool // the placeholder is after the "?", so query-escaped
}

// urlTemplate builds the upstream URL of a request.
type urlTemplate struct {
	parts []urlPart
}

// parseURLTemplate reads a base URL ending in "/" or a template holding
// {file}.
func parseURLTemplate(raw string) (urlTemplate, error) {
	if !strings.Contains(raw, "{file}") {
		if !strings.HasSuffix(raw, "/") {
			return urlTemplate{}, errors.New("a URL must end in / (the file name is appended) or contain {file}")
		}
		raw += "{file}"
	}
	var t urlTemplate
	query := false
	for rest := raw; rest != ""; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			t.parts = append(t.parts, urlPart{lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, urlPart{lit: rest[:i]})
			query = query || strings.Contains(rest[:i], "?")
			rest = rest[i:]
		}
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return urlTemplate{}, errors.New("unclosed {")
		}
		ph, ok := placeholders[rest[:end+1]]
		if !ok {
			return urlTemplate{}, errors.New("unknown placeholder " + rest[:end+1] + " (known: {file}, {remote_host}, {remote_port}, {tftp.server})")
		}
		t.parts = append(t.parts, urlPart{ph: ph, inQuery: query})
		rest = rest[end+1:]
	}
	// The URL must be absolute http(s) whatever the placeholders hold.
	u, err := url.Parse(t.expand("f", store.RequestInfo{}))
	if err != nil {
		return urlTemplate{}, err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return urlTemplate{}, errors.New("not an absolute http or https URL")
	}
	other, err := url.Parse(t.expand("g", store.RequestInfo{Client: netip.MustParseAddrPort("192.0.2.1:9"), Server: "s"}))
	if err != nil || other.Host != u.Host {
		return urlTemplate{}, errors.New("placeholders may not be in the scheme or host")
	}
	return t, nil
}

// expand returns the URL for a request; every value is escaped for where
// it is put.
func (t urlTemplate) expand(name string, req store.RequestInfo) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.lit != "" {
			b.WriteString(p.lit)
			continue
		}
		var v string
		switch p.ph {
		case phFile:
			if p.inQuery {
				b.WriteString(url.QueryEscape(name))
				continue
			}
			for i, seg := range strings.Split(name, "/") {
				if i > 0 {
					b.WriteByte('/')
				}
				b.WriteString(url.PathEscape(seg))
			}
			continue
		case phRemoteHost:
			if req.Client.IsValid() {
				v = req.Client.Addr().String()
			}
		case phRemotePort:
			if req.Client.IsValid() {
				v = strconv.Itoa(int(req.Client.Port()))
			}
		case phServer:
			v = req.Server
		}
		if p.inQuery {
			b.WriteString(url.QueryEscape(v))
		} else {
			b.WriteString(url.PathEscape(v))
		}
	}
	return b.String()
}

// redact hides a password in a URL for logs and errors.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Redacted()
}
