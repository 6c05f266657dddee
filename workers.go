package tftp

import (
	"sync/atomic"
	"time"
)

// Transfer goroutines: a transfer runs on a goroutine of its own, and one
// that has finished waits a moment for the next request instead of
// exiting, so a new transfer usually starts on a goroutine whose stack has
// already grown to what a transfer needs, without a new goroutine.

// maxIdleWorkers bounds the finished transfer goroutines kept waiting.
const maxIdleWorkers = 16

// workerIdle is how long a finished transfer goroutine waits for another.
const workerIdle = time.Second

// transferJob is an accepted request, as runTransfer takes it.
type transferJob struct {
	s        *Server
	in       inbound
	at       *activeTransfer
	req      request
	netascii bool
}

var (
	// jobs hands a request to a waiting transfer goroutine; a send
	// succeeds only when one is waiting.
	jobs = make(chan transferJob)
	// idleWorkers counts the transfer goroutines waiting on jobs.
	idleWorkers atomic.Int32
)

// startTransfer runs j on a waiting transfer goroutine, or a new one.
func startTransfer(j transferJob) {
	select {
	case jobs <- j:
	default:
		go work(j)
	}
}

// work runs transfers until none comes for workerIdle, or enough other
// goroutines are already waiting.
func work(j transferJob) {
	var idle *time.Timer
	for {
		j.s.runTransfer(j.in, j.at, j.req, j.netascii)
		j = transferJob{}
		if idleWorkers.Add(1) > maxIdleWorkers {
			idleWorkers.Add(-1)
			return
		}
		if idle == nil {
			idle = time.NewTimer(workerIdle)
		} else {
			idle.Reset(workerIdle)
		}
		select {
		case j = <-jobs:
			idleWorkers.Add(-1)
		case <-idle.C:
			idleWorkers.Add(-1)
			return
		}
	}
}
