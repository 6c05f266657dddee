// Package tftp is a TFTP server (RFC 1350 with the RFC 2347, 2348, 2349 and
// 7440 extensions) that runs as the Caddy app "tftp" and keeps its files in
// memory by default.
package tftp

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/caddy-tftp/tftp/store"
	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(new(App))
}

// defaultGracePeriod is how long transfers in progress may run on after a
// reload or shutdown.
const defaultGracePeriod = 30 * time.Second

// App is the TFTP app: a set of servers, each listening on its own
// addresses with its own policy, and the stores they serve files from.
type App struct {
	// Servers are the TFTP servers to run, keyed by a name of your choice
	// that appears in logs.
	Servers map[string]*Server `json:"servers,omitempty"`

	// Stores are the file stores servers read and write, keyed by name.
	// Each is a module in the tftp.stores namespace ("module": "memory"
	// for the in-memory store). A store named "default" is created as an
	// empty memory store when a server needs it and it is not configured.
	// The files of a memory store survive config reloads as long as the
	// new config keeps a store with the same name.
	StoresRaw map[string]json.RawMessage `json:"stores,omitempty" caddy:"namespace=tftp.stores inline_key=module"`

	// GracePeriod is how long transfers in progress may continue after a
	// config reload or shutdown before they are ended with an ERROR packet.
	// New requests always go to the new config at once. Default: 30s.
	GracePeriod caddy.Duration `json:"grace_period,omitempty"`

	ctx     caddy.Context
	logger  *zap.Logger
	stores  map[string]store.Store
	started []*Server
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tftp",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets up the app: stores first, then the servers that use them.
// It binds no socket; that happens in Start.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	if a.GracePeriod == 0 {
		a.GracePeriod = caddy.Duration(defaultGracePeriod)
	}
	if err := registerMetrics(ctx, storeCollector); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	if err := a.provisionStores(ctx); err != nil {
		return err
	}
	for _, name := range a.serverNames() {
		s := a.Servers[name]
		if s == nil {
			return fmt.Errorf("server %s: empty configuration", name)
		}
		if err := s.provision(ctx, name, a.logger); err != nil {
			return fmt.Errorf("server %s: %w", name, err)
		}
		st, err := a.storeFor(ctx, s.Store)
		if err != nil {
			return fmt.Errorf("server %s: %w", name, err)
		}
		s.store = st
	}
	return nil
}

// provisionStores loads the configured store modules and binds each to the
// contents kept under its name.
func (a *App) provisionStores(ctx caddy.Context) error {
	a.stores = make(map[string]store.Store)
	if a.StoresRaw == nil {
		return nil
	}
	mods, err := ctx.LoadModule(a, "StoresRaw")
	if err != nil {
		return fmt.Errorf("loading stores: %w", err)
	}
	for name, mod := range mods.(map[string]any) {
		if err := a.addStore(name, mod); err != nil {
			return err
		}
	}
	return nil
}

// addStore registers a provisioned store module under name.
func (a *App) addStore(name string, mod any) error {
	st, ok := mod.(store.Store)
	if !ok {
		return fmt.Errorf("store %s: module %T is not a TFTP store", name, mod)
	}
	if named, ok := st.(store.NamedStore); ok {
		if err := named.AttachName(name); err != nil {
			return fmt.Errorf("store %s: %w", name, err)
		}
	}
	a.stores[name] = st
	return nil
}

// storeFor returns the named store, creating the default memory store on
// first use.
func (a *App) storeFor(ctx caddy.Context, name string) (store.Store, error) {
	if s, ok := a.stores[name]; ok {
		return s, nil
	}
	if name != defaultStoreName {
		return nil, fmt.Errorf("store %q is not configured", name)
	}
	mod, err := ctx.LoadModuleByID("tftp.stores.memory", json.RawMessage(`{}`))
	if err != nil {
		return nil, fmt.Errorf("creating default store: %w", err)
	}
	if err := a.addStore(name, mod); err != nil {
		return nil, err
	}
	return a.stores[name], nil
}

// Validate rejects configs that cannot run, such as two servers on one
// address.
func (a *App) Validate() error {
	if a.GracePeriod < 0 {
		return fmt.Errorf("grace_period must not be negative")
	}
	seen := make(map[string]string)
	for _, name := range a.serverNames() {
		s := a.Servers[name]
		if err := s.validate(); err != nil {
			return fmt.Errorf("server %s: %w", name, err)
		}
		for _, na := range s.addresses {
			key := na.String()
			if other, dup := seen[key]; dup {
				return fmt.Errorf("servers %s and %s both listen on %s", other, name, key)
			}
			seen[key] = name
		}
	}
	return nil
}

// Start starts the servers. If one fails, those already started are stopped
// again, since Caddy does not call Stop on an app whose Start failed.
func (a *App) Start() error {
	for _, name := range a.serverNames() {
		s := a.Servers[name]
		if err := s.start(); err != nil {
			// The servers already started took over their sockets and may
			// have begun transfers; those get the grace period, as when
			// Caddy rolls back after another app fails to start.
			a.stopServers(time.Duration(a.GracePeriod))
			return err
		}
		a.started = append(a.started, s)
	}
	return nil
}

// Stop stops the servers: new requests go to the next config (or nowhere),
// transfers in progress get the grace period.
func (a *App) Stop() error {
	a.stopServers(time.Duration(a.GracePeriod))
	return nil
}

func (a *App) stopServers(grace time.Duration) {
	// Stop every server at once: when exiting, each stop waits up to the
	// grace period, and one after another the last server's transfers
	// would run on for len(servers) grace periods.
	done := make(chan struct{}, len(a.started))
	for _, s := range a.started {
		go func() {
			defer func() { done <- struct{}{} }()
			s.stop(grace)
		}()
	}
	for range a.started {
		<-done
	}
	a.started = nil
}

// Cleanup releases what a failed Start may have left; the stores are
// released by Caddy, which loaded them.
func (a *App) Cleanup() error {
	a.stopServers(0)
	return nil
}

// Store returns the named store of this config, for the admin API.
func (a *App) Store(name string) (store.Store, bool) {
	s, ok := a.stores[name]
	return s, ok
}

// serverNames returns the server names in a stable order.
func (a *App) serverNames() []string {
	names := make([]string, 0, len(a.Servers))
	for name := range a.Servers {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)

// storeCollector reports the size of the stores of the running config; it
// is created once per process, like the other collectors.
var storeCollector = newStoreMetrics()

// storeMetrics reports the size of the stores of the running config.
type storeMetrics struct {
	bytes *prometheus.Desc
	files *prometheus.Desc
}

func newStoreMetrics() *storeMetrics {
	return &storeMetrics{
		bytes: prometheus.NewDesc("caddy_tftp_store_bytes", "Bytes held by a TFTP store.", []string{"store"}, nil),
		files: prometheus.NewDesc("caddy_tftp_store_files", "Files held by a TFTP store.", []string{"store"}, nil),
	}
}

func (m *storeMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.bytes
	ch <- m.files
}

func (m *storeMetrics) Collect(ch chan<- prometheus.Metric) {
	app := currentApp()
	if app == nil {
		return
	}
	for name, st := range app.stores {
		u, ok := st.(store.UsageReporter)
		if !ok {
			continue
		}
		files, bytes := u.Usage()
		ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.GaugeValue, float64(bytes), name)
		ch <- prometheus.MustNewConstMetric(m.files, prometheus.GaugeValue, float64(files), name)
	}
}

// currentApp returns the tftp app of the running config, or nil.
func currentApp() *App {
	v, err := caddy.ActiveContext().AppIfConfigured("tftp")
	if err != nil {
		return nil
	}
	app, _ := v.(*App)
	return app
}
