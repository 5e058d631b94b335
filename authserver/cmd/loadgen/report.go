package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// result is one scenario's measured window.
type result struct {
	Name  string `json:"name"`
	Floor bool   `json:"floor"`
	// Requests counts the successful requests completed in the window;
	// RPS also credits the in-window part of requests straddling its edges.
	Requests int     `json:"requests"`
	RPS      float64 `json:"rps"`
	MeanMs   float64 `json:"mean_ms"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	// ServerCPUms and LoadgenCPUms are the CPU milliseconds per request
	// the server (with --server-pid) and loadgen used during the window.
	ServerCPUms  float64 `json:"server_cpu_ms_per_req,omitempty"`
	LoadgenCPUms float64 `json:"loadgen_cpu_ms_per_req,omitempty"`
	// PostgresCPUms is the CPU per request of the PostgreSQL processes
	// serving the database (backends and WAL writer), when readable.
	PostgresCPUms float64 `json:"postgres_cpu_ms_per_req,omitempty"`
	// Errors counts failed requests over warm-up and window.
	Errors       int            `json:"errors"`
	ErrorSamples map[string]int `json:"error_samples,omitempty"`
	SetupError   string         `json:"setup_error,omitempty"`
}

// ratio is a product target: num's throughput over den's.
type ratio struct {
	Name   string   `json:"name"`
	Num    string   `json:"numerator"`
	Den    string   `json:"denominator"`
	Target float64  `json:"target"`
	Value  *float64 `json:"value"` // nil when a side was not run or failed
	// CPUValue is the same ratio from CPU time per request (den/num),
	// which other load on the machine disturbs far less than throughput.
	CPUValue *float64 `json:"cpu_value,omitempty"`
	Pass     bool     `json:"pass"`
}

// ratioTargets are the throughput ratios the product aims for.
var ratioTargets = []ratio{
	{Num: "cc", Den: "insert-floor", Target: 0.50},
	{Num: "introspect", Den: "insert-floor", Target: 1.00},
	{Num: "refresh", Den: "insert-floor", Target: 0.25},
	{Num: "password", Den: "bcrypt-floor", Target: 0.90},
}

// report is everything loadgen prints.
type report struct {
	Target     string   `json:"target"`
	Workers    int      `json:"workers"`
	Duration   string   `json:"duration"`
	Warmup     string   `json:"warmup"`
	BcryptCost int      `json:"bcrypt_cost"`
	Scenarios  []result `json:"scenarios"`
	Ratios     []ratio  `json:"ratios"`
	// OK is false when any scenario had errors.
	OK bool `json:"ok"`
}

func (r *report) find(name string) *result {
	for i := range r.Scenarios {
		if r.Scenarios[i].Name == name {
			return &r.Scenarios[i]
		}
	}
	return nil
}

func (r *report) computeRatios() {
	r.Ratios = nil
	for _, t := range ratioTargets {
		t.Name = t.Num + "/" + t.Den
		n, d := r.find(t.Num), r.find(t.Den)
		if n == nil && d == nil {
			continue
		}
		if n != nil && d != nil && n.Errors == 0 && d.Errors == 0 && d.RPS > 0 {
			v := n.RPS / d.RPS
			t.Value = &v
			t.Pass = v >= t.Target
			if nc, dc := n.totalCPU(), d.totalCPU(); nc > 0 && dc > 0 {
				c := dc / nc
				t.CPUValue = &c
			}
		}
		r.Ratios = append(r.Ratios, t)
	}
	r.OK = r.failedScenarios() == 0
}

// totalCPU is the CPU per request of server, PostgreSQL and loadgen.
func (s *result) totalCPU() float64 { return s.ServerCPUms + s.PostgresCPUms + s.LoadgenCPUms }

func (r *report) failedScenarios() int {
	n := 0
	for _, s := range r.Scenarios {
		if s.Errors > 0 {
			n++
		}
	}
	return n
}

func (r *report) writeText(w io.Writer) {
	fmt.Fprintf(w, "\nauthserver load test: %s, %d workers, %s window after %s warm-up, bcrypt cost %d\n\n",
		r.Target, r.Workers, r.Duration, r.Warmup, r.BcryptCost)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trequests\treq/s\tp50 ms\tp99 ms\tmax ms\terrors\tcpu ms/req: server\tpostgres\tloadgen\ttotal\t")
	for _, s := range r.Scenarios {
		errs := fmt.Sprint(s.Errors)
		if s.Errors > 0 {
			errs += " !!"
		}
		srv := "-"
		if s.ServerCPUms > 0 {
			srv = fmt.Sprintf("%.3f", s.ServerCPUms)
		}
		pg := "-"
		if s.PostgresCPUms > 0 {
			pg = fmt.Sprintf("%.3f", s.PostgresCPUms)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t%.3f\t%.3f\t\n", s.Name, s.Requests, s.RPS, s.P50ms, s.P99ms, s.MaxMs, errs,
			srv, pg, s.LoadgenCPUms, s.totalCPU())
	}
	_ = tw.Flush()
	if len(r.Ratios) > 0 {
		fmt.Fprintln(w, "\nthroughput ratios (targets, reported only; 'by cpu' = the ratio of total CPU ms per request, less sensitive to other load):")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, t := range r.Ratios {
			val, verdict := "n/a", "n/a (not run or had errors)"
			if t.Value != nil {
				val = fmt.Sprintf("%.3f", *t.Value)
				verdict = "FAIL"
				if t.Pass {
					verdict = "PASS"
				}
			}
			cpu := ""
			if t.CPUValue != nil {
				cpu = fmt.Sprintf("(by cpu %.3f)", *t.CPUValue)
			}
			fmt.Fprintf(tw, "  %s\t%s\t>= %.2f\t%s\t%s\n", t.Name, val, t.Target, verdict, cpu)
		}
		_ = tw.Flush()
	}
	if !r.OK {
		fmt.Fprintf(w, "\n!!! %d SCENARIO(S) HAD ERRORS: THE NUMBERS ABOVE ARE NOT VALID (details on stderr) !!!\n", r.failedScenarios())
	}
}

func (r *report) writeErrors(w io.Writer) {
	fmt.Fprintln(w, "\n!!!!!!!! ERRORS !!!!!!!!")
	for _, s := range r.Scenarios {
		if s.Errors == 0 {
			continue
		}
		fmt.Fprintf(w, "%s: %d error(s)\n", s.Name, s.Errors)
		msgs := slices.SortedFunc(maps.Keys(s.ErrorSamples), func(a, b string) int {
			return s.ErrorSamples[b] - s.ErrorSamples[a]
		})
		for _, m := range msgs {
			fmt.Fprintf(w, "  %6d x %s\n", s.ErrorSamples[m], strings.ReplaceAll(m, "\n", " "))
		}
	}
}
