package tftp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/caddy-tftp/tftp/store"
	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the tftp endpoints of Caddy's admin API:
//
//	GET    /tftp/stores                         the stores and their usage
//	GET    /tftp/stores/<store>                 one store
//	GET    /tftp/stores/<store>/files           its files, with SHA-256
//	GET    /tftp/stores/<store>/files/<name>    download a file (also HEAD)
//	PUT    /tftp/stores/<store>/files/<name>    upload or replace a file
//	DELETE /tftp/stores/<store>/files/<name>    delete a file
//	GET    /tftp/transfers                      transfers in progress
//
// File names are store keys: they may contain "/", follow the same rules as
// names in TFTP requests, and are not changed by a server's root or
// rewrites. Uploads replace the previous version atomically and are not
// subject to a server's read_only or no_overwrite settings.
//
// Admin routers are provisioned on every config load, before the apps, so
// the running tftp app is looked up on each request instead of being kept.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.tftp",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// adminPrefix is the path the tftp endpoints live under.
const adminPrefix = "/tftp/"

// Routes returns the tftp admin routes.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: adminPrefix,
		Handler: caddy.AdminHandlerFunc(a.serve),
	}}
}

// storeEntry describes a store in GET /tftp/stores. Limits of zero mean
// unlimited (or unknown, for store modules that do not report them).
type storeEntry struct {
	Name        string `json:"name"`
	Module      string `json:"module"`
	Files       int    `json:"files"`
	Bytes       int64  `json:"bytes"`
	MaxBytes    int64  `json:"max_bytes"`
	MaxFileSize int64  `json:"max_file_size"`
}

// fileEntry describes a file in GET /tftp/stores/<store>/files and in the
// answer to a PUT.
type fileEntry struct {
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
	SHA256  string    `json:"sha256"`
}

// serve dispatches a request under /tftp/. Paths are split on their escaped
// form, so a store name may contain an escaped "/" while a file name may
// contain "/" either way.
func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), adminPrefix)
	if !ok {
		return apiNotFound(r)
	}
	head, tail, _ := strings.Cut(rest, "/")
	switch head {
	case "transfers":
		if tail != "" {
			return apiNotFound(r)
		}
		if err := allowMethods(w, r, http.MethodGet, http.MethodHead); err != nil {
			return err
		}
		return a.listTransfers(w)
	case "stores":
	default:
		return apiNotFound(r)
	}
	if tail == "" {
		if err := allowMethods(w, r, http.MethodGet, http.MethodHead); err != nil {
			return err
		}
		return a.listStores(w)
	}
	rawStore, tail, _ := strings.Cut(tail, "/")
	storeName, err := url.PathUnescape(rawStore)
	if err != nil || storeName == "" {
		return apiNotFound(r)
	}
	sub, rawFile, hasFile := strings.Cut(tail, "/")
	switch {
	case sub == "" && !hasFile:
		if err := allowMethods(w, r, http.MethodGet, http.MethodHead); err != nil {
			return err
		}
		st, err := lookupStore(storeName)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, describeStore(storeName, st))
	case sub != "files":
		return apiNotFound(r)
	case rawFile == "":
		// /files and /files/ both list the store.
		if err := allowMethods(w, r, http.MethodGet, http.MethodHead); err != nil {
			return err
		}
		st, err := lookupStore(storeName)
		if err != nil {
			return err
		}
		return a.listFiles(w, r, st)
	}
	if err := allowMethods(w, r, http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete); err != nil {
		return err
	}
	st, err := lookupStore(storeName)
	if err != nil {
		return err
	}
	raw, err := url.PathUnescape(rawFile)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("file name: %w", err)}
	}
	name, err := cleanName(raw)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("file name %q: %w", raw, err)}
	}
	switch r.Method {
	case http.MethodPut:
		return a.putFile(w, r, st, name)
	case http.MethodDelete:
		return a.deleteFile(w, st, name)
	default:
		return a.getFile(w, r, st, name)
	}
}

// listTransfers answers GET /tftp/transfers.
func (a *adminAPI) listTransfers(w http.ResponseWriter) error {
	list := ActiveTransfers()
	if list == nil {
		list = []TransferInfo{}
	}
	return writeJSON(w, http.StatusOK, list)
}

// listStores answers GET /tftp/stores.
func (a *adminAPI) listStores(w http.ResponseWriter) error {
	out := []storeEntry{}
	if app := currentApp(); app != nil {
		names := make([]string, 0, len(app.stores))
		for name := range app.stores {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			out = append(out, describeStore(name, app.stores[name]))
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// describeStore reports a store's module, usage and limits.
func describeStore(name string, st store.Store) storeEntry {
	e := storeEntry{Name: name}
	if m, ok := st.(caddy.Module); ok {
		e.Module = m.CaddyModule().ID.Name()
	}
	if u, ok := st.(store.UsageReporter); ok {
		e.Files, e.Bytes = u.Usage()
		e.MaxBytes, e.MaxFileSize = u.Limits()
	} else if list, err := st.List(); err == nil {
		e.Files = len(list)
		for _, f := range list {
			e.Bytes += f.Size
		}
	}
	return e
}

// listFiles answers GET /tftp/stores/<store>/files. Each file's hash is
// computed from one snapshot, so name, size, time and hash always agree.
func (a *adminAPI) listFiles(w http.ResponseWriter, r *http.Request, st store.Store) error {
	list, err := st.List()
	if errors.Is(err, store.ErrNotSupported) {
		return caddy.APIError{HTTPStatus: http.StatusNotImplemented, Err: fmt.Errorf("listing files: %w", err)}
	}
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("listing files: %w", err)}
	}
	out := make([]fileEntry, 0, len(list))
	for _, info := range list {
		if err := r.Context().Err(); err != nil {
			return nil // the client went away; hashing the rest is wasted
		}
		f, err := st.Open(info.Name)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since List
		}
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("opening %s: %w", info.Name, err)}
		}
		sum, err := hashFile(f)
		size, mod := f.Size(), f.ModTime()
		f.Close()
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("reading %s: %w", info.Name, err)}
		}
		out = append(out, fileEntry{Name: info.Name, Size: size, ModTime: mod, SHA256: sum})
	}
	return writeJSON(w, http.StatusOK, out)
}

// hashFile returns the hex SHA-256 of a snapshot.
func hashFile(f store.File) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, fileReader(f)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fileReader reads a file from its start to its end, also when its size is
// not known up front.
func fileReader(f store.File) *io.SectionReader {
	size := f.Size()
	if size < 0 {
		size = math.MaxInt64 - 1
	}
	return io.NewSectionReader(f, 0, size)
}

// getFile answers GET and HEAD of a file, with range and conditional
// request support.
// A file whose size the store cannot learn up front is sent whole,
// without range support.
func (a *adminAPI) getFile(w http.ResponseWriter, r *http.Request, st store.Store, name string) error {
	var f store.File
	var err error
	if ro, ok := st.(store.RequestOpener); ok {
		f, err = ro.OpenFor(name, store.RequestInfo{NeedSize: true})
	} else {
		f, err = st.Open(name)
	}
	if err != nil {
		return storeAPIError(err, name)
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	if f.Size() < 0 {
		if !f.ModTime().IsZero() {
			w.Header().Set("Last-Modified", f.ModTime().UTC().Format(http.TimeFormat))
		}
		if r.Method != http.MethodHead {
			_, _ = io.Copy(w, fileReader(f))
		}
		return nil
	}
	http.ServeContent(w, r, "", f.ModTime(), io.NewSectionReader(f, 0, f.Size()))
	return nil
}

// putFile answers PUT of a file: the body becomes the file's new contents
// when it has been received completely; until then, and if anything fails,
// readers see the previous version.
func (a *adminAPI) putFile(w http.ResponseWriter, r *http.Request, st store.Store, name string) error {
	var maxFile int64
	if u, ok := st.(store.UsageReporter); ok {
		_, maxFile = u.Limits()
	}
	size := r.ContentLength
	if size < 0 {
		size = -1
	}
	if maxFile > 0 && size > maxFile {
		return storeAPIError(store.ErrTooLarge, name)
	}
	body := io.Reader(r.Body)
	if maxFile > 0 {
		body = http.MaxBytesReader(w, r.Body, maxFile)
	}
	_, statErr := st.Stat(name)
	existed := statErr == nil
	up, err := st.Create(name, store.CreateOptions{Overwrite: true, Size: size})
	if err != nil {
		return storeAPIError(err, name)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(up, h), body)
	if err != nil {
		up.Abort()
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return storeAPIError(store.ErrTooLarge, name)
		case errors.Is(err, store.ErrTooLarge), errors.Is(err, store.ErrStoreFull):
			return storeAPIError(err, name)
		default:
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("receiving %s: %w", name, err)}
		}
	}
	if err := up.Commit(); err != nil {
		return storeAPIError(err, name)
	}
	entry := fileEntry{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	if info, err := st.Stat(name); err == nil && info.Size == n {
		entry.ModTime = info.ModTime
	}
	status := http.StatusCreated
	if existed {
		status = http.StatusOK
	}
	return writeJSON(w, status, entry)
}

// deleteFile answers DELETE of a file.
func (a *adminAPI) deleteFile(w http.ResponseWriter, st store.Store, name string) error {
	if err := st.Delete(name); err != nil {
		return storeAPIError(err, name)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// lookupStore finds a store of the running config.
func lookupStore(name string) (store.Store, error) {
	app := currentApp()
	if app == nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the tftp app is not running")}
	}
	st, ok := app.Store(name)
	if !ok {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("store %q not found", name)}
	}
	return st, nil
}

// storeAPIError maps a store error to an HTTP status.
func storeAPIError(err error, name string) error {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		status = http.StatusNotFound
	case errors.Is(err, fs.ErrExist):
		status = http.StatusConflict
	case errors.Is(err, store.ErrTooLarge), errors.Is(err, store.ErrStoreFull):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, fs.ErrPermission):
		status = http.StatusForbidden
	case errors.Is(err, store.ErrNotSupported):
		status = http.StatusNotImplemented
	case errors.Is(err, store.ErrUnavailable):
		status = http.StatusBadGateway
	}
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf("%s: %w", name, err)}
}

// allowMethods answers 405 for a method the route does not serve.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) error {
	for _, m := range methods {
		if r.Method == m {
			return nil
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed: %s", r.Method)}
}

func apiNotFound(r *http.Request) error {
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("resource not found: %s", r.URL.Path)}
}

// writeJSON writes v as the JSON response body.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n')) // a client that left needs no error body
	return nil
}

// Interface guards
var _ caddy.AdminRouter = (*adminAPI)(nil)

// TransferInfo describes a transfer in progress, for the admin API.
type TransferInfo struct {
	Server    string `json:"server"`
	Listen    string `json:"listen"`
	Remote    string `json:"remote"`
	File      string `json:"file"`
	Direction string `json:"direction"`
	Mode      string `json:"mode"`
	Bytes     int64  `json:"bytes"`
	// Size is the file's size where it is known: a read's file size (its
	// netascii size for a netascii read) or the size a write declared with
	// the tsize option. It is -1 when unknown.
	Size       int64     `json:"size"`
	BlockSize  int       `json:"block_size"`
	WindowSize int       `json:"window_size"`
	Start      time.Time `json:"start"`
}

// ActiveTransfers lists the transfers in progress on every listener of the
// process, oldest first. Transfers that started under an older config are
// included: they run on until they finish or their grace period ends.
func ActiveTransfers() []TransferInfo {
	var out []TransferInfo
	listeners.Range(func(_, v any) bool {
		l := v.(*listener)
		l.mu.Lock()
		for _, at := range l.active {
			info := TransferInfo{
				Server:     at.server,
				Listen:     l.addr.String(),
				Remote:     unmapAddrPort(at.remote).String(),
				File:       at.file,
				Direction:  at.direction,
				Mode:       at.mode,
				BlockSize:  defaultBlockSize,
				WindowSize: 1,
				Size:       -1,
				Start:      at.start,
			}
			if t := at.xfer.Load(); t != nil {
				info.Bytes = t.bytes.Load()
				info.Size = t.size
				info.BlockSize = t.params.blockSize
				info.WindowSize = t.params.windowSize
			}
			out = append(out, info)
		}
		l.mu.Unlock()
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}
