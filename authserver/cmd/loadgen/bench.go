package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

// op performs one measured request; it returns nil on success.
type op func(ctx context.Context) error

// workerFunc prepares worker i (outside the measured window) and returns
// its request loop body.
type workerFunc func(ctx context.Context, i int) (op, error)

// bench holds what the scenarios share.
type bench struct {
	cfg  *config
	http *httpClient
	pg   *pgCPU // nil: PostgreSQL CPU time is not reported
}

func newBench(cfg *config) *bench {
	b := &bench{cfg: cfg, http: newHTTPClient(cfg.target, cfg.workers, cfg.requestTimeout)}
	if cfg.postgresCPU && cfg.database != "" {
		b.pg = newPGCPU(cfg.database)
	}
	return b
}

func (b *bench) close() {
	b.http.close()
	b.pg.close()
}

// prepare sets up a scenario and returns its worker constructor and a
// cleanup to run once the scenario is over.
func (b *bench) prepare(ctx context.Context, name string) (workerFunc, func(), error) {
	switch name {
	case "cc":
		return b.prepareCC(ctx)
	case "refresh":
		return b.prepareRefresh(ctx)
	case "introspect":
		return b.prepareIntrospect(ctx)
	case "password":
		return b.preparePassword(ctx)
	case "insert-floor":
		return b.prepareInsertFloor(ctx)
	case "bcrypt-floor":
		return b.prepareBcryptFloor(ctx)
	}
	return nil, nil, fmt.Errorf("unknown scenario %q", name)
}

// errorLog counts errors and keeps the most frequent messages.
type errorLog struct {
	mu    sync.Mutex
	total int
	byMsg map[string]int
}

func (e *errorLog) add(err error) {
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.total++
	if e.byMsg == nil {
		e.byMsg = map[string]int{}
	}
	if _, ok := e.byMsg[msg]; ok || len(e.byMsg) < 20 {
		e.byMsg[msg]++
	}
}

// runScenario prepares the workers, runs them for warm-up plus the
// measured window, and summarises the window.
func (b *bench) runScenario(ctx context.Context, name string) result {
	res := result{Name: name, Floor: name == "insert-floor" || name == "bcrypt-floor"}
	var errs errorLog
	fail := func(err error) result {
		errs.add(err)
		res.Errors = errs.total
		res.ErrorSamples = errs.byMsg
		res.SetupError = err.Error()
		return res
	}

	// Setup may take a while (password grants at bcrypt cost), but never
	// longer than a few request timeouts.
	setupCtx, cancel := context.WithTimeout(ctx, 4*b.cfg.requestTimeout)
	defer cancel()
	if _, isHTTP := httpScenarios[name]; isHTTP {
		if err := b.http.waitReady(setupCtx, b.cfg.readyTimeout); err != nil {
			return fail(err)
		}
	}
	newWorker, cleanup, err := b.prepare(setupCtx, name)
	if err != nil {
		return fail(fmt.Errorf("setup: %w", err))
	}
	defer cleanup()

	ops := make([]op, b.cfg.workers)
	setupErrs := make([]error, b.cfg.workers)
	var wg sync.WaitGroup
	for i := range b.cfg.workers {
		wg.Go(func() { ops[i], setupErrs[i] = newWorker(setupCtx, i) })
	}
	wg.Wait()
	if err := errors.Join(setupErrs...); err != nil {
		return fail(fmt.Errorf("worker setup: %w", err))
	}

	start := time.Now()
	windowStart := start.Add(b.cfg.warmup)
	windowEnd := windowStart.Add(b.cfg.duration)
	// In-flight requests may finish after the window (not counted), but
	// nothing outlives windowEnd by more than one request timeout.
	runCtx, cancelRun := context.WithDeadline(ctx, windowEnd.Add(b.cfg.requestTimeout))
	defer cancelRun()

	// CPU time is sampled at the edges of the window: unlike throughput
	// it does not depend on what else the machine is running.
	meter := &cpuMeter{serverPID: b.cfg.serverPID, pg: b.pg}
	if _, isHTTP := httpScenarios[name]; !isHTTP {
		meter.serverPID = 0
	}
	meterDone := make(chan struct{})
	go func() {
		defer close(meterDone)
		for _, at := range []time.Time{windowStart, windowEnd} {
			select {
			case <-time.After(time.Until(at)):
			case <-runCtx.Done():
				return
			}
			if at.Equal(windowStart) {
				meter.start(ctx)
			} else {
				meter.stop(ctx)
			}
		}
	}()

	samples := make([][]time.Duration, b.cfg.workers)
	// work[i] is worker i's successful requests in the window, counting a
	// request that straddles an edge of the window by the fraction of it
	// inside: with slow requests (bcrypt) a plain count of completions
	// would jump in steps of --workers.
	work := make([]float64, b.cfg.workers)
	for i := range b.cfg.workers {
		wg.Go(func() {
			do := ops[i]
			var mine []time.Duration
			for {
				t0 := time.Now()
				if !t0.Before(windowEnd) || runCtx.Err() != nil {
					break
				}
				reqCtx, cancelReq := context.WithTimeout(runCtx, b.cfg.requestTimeout)
				err := do(reqCtx)
				cancelReq()
				t1 := time.Now()
				if err != nil {
					if ctx.Err() != nil {
						break // interrupted: not the server's fault
					}
					errs.add(err)
					continue
				}
				if !t1.Before(windowStart) && t1.Before(windowEnd) {
					mine = append(mine, t1.Sub(t0))
				}
				work[i] += overlap(t0, t1, windowStart, windowEnd)
			}
			samples[i] = mine
		})
	}
	wg.Wait()
	<-meterDone

	var all []time.Duration
	for _, s := range samples {
		all = append(all, s...)
	}
	slices.Sort(all)
	res.Requests = len(all)
	var done float64
	for _, w := range work {
		done += w
	}
	res.RPS = done / b.cfg.duration.Seconds()
	if len(all) > 0 {
		res.P50ms = ms(percentile(all, 0.50))
		res.P99ms = ms(percentile(all, 0.99))
		res.MaxMs = ms(all[len(all)-1])
		var sum time.Duration
		for _, d := range all {
			sum += d
		}
		res.MeanMs = ms(sum / time.Duration(len(all)))
		if meter.selfDone {
			res.LoadgenCPUms = ms(meter.selfCPU / time.Duration(len(all)))
		}
		if meter.pgDone {
			res.PostgresCPUms = ms(meter.pgCPU / time.Duration(len(all)))
		}
		if meter.srvDone {
			res.ServerCPUms = ms(meter.srvCPU / time.Duration(len(all)))
		}
	}
	res.Errors = errs.total
	res.ErrorSamples = errs.byMsg
	if res.Requests == 0 && res.Errors == 0 {
		// Nothing completed in the window: treat as a failure too.
		errs.add(errors.New("no request completed inside the measured window"))
		res.Errors = errs.total
		res.ErrorSamples = errs.byMsg
	}
	return res
}

// overlap returns the fraction of the request [t0, t1) that lies inside
// the window [ws, we).
func overlap(t0, t1, ws, we time.Time) float64 {
	if !t1.After(t0) {
		if !t0.Before(ws) && t0.Before(we) {
			return 1
		}
		return 0
	}
	lo, hi := t0, t1
	if ws.After(lo) {
		lo = ws
	}
	if we.Before(hi) {
		hi = we
	}
	if !hi.After(lo) {
		return 0
	}
	return float64(hi.Sub(lo)) / float64(t1.Sub(t0))
}

// percentile returns the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p*float64(len(sorted)))) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// httpScenarios are the scenarios that talk to the server.
var httpScenarios = map[string]struct{}{"cc": {}, "refresh": {}, "introspect": {}, "password": {}}

// newTransport is a keep-alive transport with exactly one connection per
// worker, no proxy and no compression.
func newTransport(workers int) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		MaxIdleConns:          workers,
		MaxIdleConnsPerHost:   workers,
		MaxConnsPerHost:       workers,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: 0,
		ForceAttemptHTTP2:     false,
	}
}
