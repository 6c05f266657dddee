package httpstore

import (
	"container/list"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// cacheMeta is what the upstream said about caching a response
// (RFC 9111), and the validators to revalidate it with.
type cacheMeta struct {
	etag, lastModified string
	noStore            bool // no-store, private, or Vary: never kept
	noCache            bool // every reuse is revalidated
	maxAge             time.Duration
	hasMaxAge          bool
	age                time.Duration // the upstream's Age header
}

// parseCacheMeta reads the headers of a response. clientHeader is the
// request header that differs per client.
func parseCacheMeta(h http.Header, clientHeader string) cacheMeta {
	m := cacheMeta{etag: h.Get("ETag"), lastModified: h.Get("Last-Modified")}
	m.readDirectives(h)
	for _, line := range h.Values("Vary") {
		for name := range strings.SplitSeq(line, ",") {
			name = strings.TrimSpace(name)
			// Every other request header the store sends is the same for
			// every request (Accept-Encoding, the configured headers), so
			// only a response that varies by the client's header, or by
			// anything ("*"), differs per client: never share it later.
			if name == "*" || strings.EqualFold(name, clientHeader) {
				m.noStore = true
			}
		}
	}
	return m
}

// readDirectives reads Cache-Control and Age; s-maxage wins over max-age,
// as for any shared cache.
func (m *cacheMeta) readDirectives(h http.Header) {
	var shared bool
	for _, line := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-store", "private":
				m.noStore = true
			case "no-cache":
				m.noCache = true
			case "s-maxage", "max-age":
				n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
				if err != nil || n < 0 || shared && strings.EqualFold(name, "max-age") {
					continue
				}
				shared = shared || strings.EqualFold(name, "s-maxage")
				m.maxAge, m.hasMaxAge = time.Duration(n)*time.Second, true
			}
		}
	}
	if n, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && n > 0 {
		m.age = time.Duration(n) * time.Second
	}
}

// refresh applies the headers of a 304 (RFC 9111 4.3.4).
func (m *cacheMeta) refresh(h http.Header, now time.Time) {
	if v := h.Get("ETag"); v != "" {
		m.etag = v
	}
	if v := h.Get("Last-Modified"); v != "" {
		m.lastModified = v
	}
	if len(h.Values("Cache-Control")) > 0 {
		m.noCache, m.hasMaxAge, m.maxAge = false, false, 0
	}
	m.age = 0
	m.readDirectives(h)
}

// storable reports whether the response may be kept.
func (m cacheMeta) storable() bool { return !m.noStore }

// validators reports whether the response can be revalidated.
func (m cacheMeta) validators() bool { return m.etag != "" || m.lastModified != "" }

// conditional returns the headers that revalidate the response.
func (m cacheMeta) conditional() http.Header {
	h := http.Header{}
	if m.etag != "" {
		h.Set("If-None-Match", m.etag)
	}
	if m.lastModified != "" {
		h.Set("If-Modified-Since", m.lastModified)
	}
	return h
}

// expires returns until when the response is fresh: the configured TTL,
// shortened by the upstream's max-age (less its Age); no-cache makes it
// stale at once.
func (m cacheMeta) expires(now time.Time, ttl time.Duration) time.Time {
	if m.noCache {
		return now
	}
	life := ttl
	if m.hasMaxAge {
		life = min(life, m.maxAge-m.age)
	}
	return now.Add(max(life, 0))
}

// entry is a cached download.
type entry struct {
	key     string
	body    *body
	meta    cacheMeta
	size    int64
	expires time.Time
	elem    *list.Element
}

// cache keeps complete downloads, least recently used dropped first, up
// to max bytes. Its methods run under the store's lock.
type cache struct {
	max     int64
	used    int64
	entries map[string]*entry
	lru     list.List // front: most recently used
}

func newCache(max int64) *cache {
	return &cache{max: max, entries: make(map[string]*entry)}
}

// get returns the entry for key and marks it used.
func (c *cache) get(key string) *entry {
	e := c.entries[key]
	if e != nil {
		c.lru.MoveToFront(e.elem)
	}
	return e
}

// put stores a complete body, taking over the reference the caller holds,
// and replaces any entry of the same key. A body larger than the cache is
// released instead.
func (c *cache) put(key string, b *body, expires time.Time) {
	if old := c.entries[key]; old != nil {
		c.remove(old)
	}
	size, _, _ := b.state()
	if size > c.max {
		b.release()
		return
	}
	for c.used+size > c.max {
		c.remove(c.lru.Back().Value.(*entry))
	}
	e := &entry{key: key, body: b, meta: b.meta, size: size, expires: expires}
	e.elem = c.lru.PushFront(e)
	c.entries[key] = e
	c.used += size
}

// remove drops an entry and its reference to the body; readers that have
// the file open keep reading it.
func (c *cache) remove(e *entry) {
	if c.entries[e.key] != e {
		return
	}
	delete(c.entries, e.key)
	c.lru.Remove(e.elem)
	c.used -= e.size
	e.body.release()
}

// clear drops every entry.
func (c *cache) clear() {
	for _, e := range c.entries {
		c.remove(e)
	}
}
