package tftp

import (
	"bytes"
	"testing"
	"time"
)

// Tests of the listener: its concurrency limits.

func TestListenerConcurrencyLimits(t *testing.T) {
	t.Run("max_transfers", func(t *testing.T) {
		port := advStart(t, "timeout 1s", "max_transfers 2")
		server := loopback4(port)
		data := randomBytes(t, 1500)
		advPut(t, server, "f", data)
		a, b, c := advDial(t, false), advDial(t, false), advDial(t, true)
		a.send(server, appendRequest(nil, opRRQ, "f", "octet"))
		_, tidA := a.expectBlock("A", opDATA, 1)
		b.send(server, appendRequest(nil, opRRQ, "f", "octet"))
		firstB, tidB := b.expectBlock("B", opDATA, 1)
		// Over the limit: left unanswered, whatever the client's address.
		c.send(loopback6(port), appendRequest(nil, opRRQ, "f", "octet"))
		c.expectSilence("third transfer over max_transfers 2", advSilence)
		// A ends (client error); C's retransmitted request is then served.
		a.send(tidA, appendError(nil, ErrCodeUndefined, "client gave up"))
		a.expectSilence("ERROR from the client", 50*time.Millisecond)
		got := advRetryUntilServed(t, c, loopback6(port), "f")
		if !bytes.Equal(got, data) {
			t.Errorf("C got %d bytes, want %d", len(got), len(data))
		}
		if got := advReadRest(t, b, tidB, firstB); !bytes.Equal(got, data) {
			t.Errorf("B got %d bytes, want %d", len(got), len(data))
		}
		advGetOK(t, server, "f", data)
	})
	t.Run("max_transfers_per_host", func(t *testing.T) {
		port := advStart(t, "timeout 1s", "max_transfers_per_host 1")
		server := loopback4(port)
		data := randomBytes(t, 1500)
		advPut(t, server, "f", data)
		a, b, other := advDial(t, false), advDial(t, false), advDial(t, true)
		a.send(server, appendRequest(nil, opRRQ, "f", "octet"))
		firstA, tidA := a.expectBlock("A", opDATA, 1)
		b.send(server, appendRequest(nil, opRRQ, "f", "octet"))
		b.expectSilence("second transfer from 127.0.0.1 over max_transfers_per_host 1", advSilence)
		b.send(server, appendRequest(nil, opWRQ, "g", "octet"))
		b.expectSilence("a write from 127.0.0.1 over max_transfers_per_host 1", advSilence)
		// Another host (::1) is not limited by 127.0.0.1's transfers.
		other.send(loopback6(port), appendRequest(nil, opRRQ, "f", "octet"))
		firstO, tidO := other.expectBlock("::1 while 127.0.0.1 is at its limit", opDATA, 1)
		if got := advReadRest(t, other, tidO, firstO); !bytes.Equal(got, data) {
			t.Errorf("::1 got %d bytes", len(got))
		}
		// A finishes normally; B's retransmitted request is served.
		if got := advReadRest(t, a, tidA, firstA); !bytes.Equal(got, data) {
			t.Errorf("A got %d bytes", len(got))
		}
		if got := advRetryUntilServed(t, b, server, "f"); !bytes.Equal(got, data) {
			t.Errorf("B got %d bytes", len(got))
		}
		advGetOK(t, server, "f", data)
	})
	t.Run("a transfer that moved its last block frees its slot", func(t *testing.T) {
		// A client that starts its next transfer as soon as it has the
		// last block of the previous one, before the server has seen the
		// final ACK, is served at max_transfers_per_host 1.
		port := advStart(t, "timeout 1s", "max_transfers_per_host 1")
		server := loopback4(port)
		data := randomBytes(t, 100)
		advPut(t, server, "f", data)
		a, b := advDial(t, false), advDial(t, false)
		a.send(server, appendRequest(nil, opRRQ, "f", "octet"))
		_, tidA := a.expectBlock("A's only block", opDATA, 1)
		b.send(server, appendRequest(nil, opRRQ, "f", "octet"))
		firstB, _ := b.expectBlock("B while A's last block is unacknowledged", opDATA, 1)
		if _, got, _ := parseBlockPacket(firstB); !bytes.Equal(got, data) {
			t.Errorf("B got %q, want %q", got, data)
		}
		a.send(tidA, appendAck(nil, 1))
	})
}
