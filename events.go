package tftp

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
)

// Events emitted for finished transfers. Subscribe with Caddy's events app,
// for example to run a script when a device uploads its configuration.
const (
	eventUploadComplete   = "tftp_upload_complete"
	eventDownloadComplete = "tftp_download_complete"
	eventTransferFailed   = "tftp_transfer_failed"
)

// emitTransferEvent tells subscribers about a finished transfer. The events
// app is looked up in the config running now, because a transfer may
// outlive the config that started it; nothing is built when no one listens.
func emitTransferEvent(server string, t *transfer, req *request, name, outcome string, err error) {
	if outcome == "options_declined" {
		return // a size probe, not a transfer
	}
	ctx := caddy.ActiveContext()
	v, cerr := ctx.AppIfConfigured("events")
	if cerr != nil {
		return
	}
	events, ok := v.(*caddyevents.App)
	if !ok {
		return
	}
	event := eventDownloadComplete
	if req.op == opWRQ {
		event = eventUploadComplete
	}
	if err != nil {
		event = eventTransferFailed
	}
	if !events.ShouldEmit(event) {
		return
	}
	data := map[string]any{
		"server":    server,
		"remote":    t.peer.String(),
		"file":      name,
		"direction": direction(req.op),
		"bytes":     t.bytes.Load(),
		"duration":  time.Since(t.start).Seconds(),
		"outcome":   outcome,
	}
	if err != nil {
		data["error"] = err.Error()
	}
	events.Emit(ctx, event, data)
}
