package sim

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
)

// base returns valid parameters of a typical outbreak.
func base() Params {
	return Params{
		Population:      1e6,
		InitialExposed:  10,
		InitialInfected: 5,
		Beta:            0.5,
		Sigma:           0.2,
		Gamma:           0.1,
		Days:            365,
	}
}

func TestValidate(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	ivs := func(d ...float64) []Intervention {
		var out []Intervention
		for i := 0; i+1 < len(d); i += 2 {
			out = append(out, Intervention{Day: int(d[i]), BetaMultiplier: d[i+1]})
		}
		return out
	}
	tests := []struct {
		name  string
		mod   func(*Params)
		field string // "" means valid
	}{
		{"ok", func(*Params) {}, ""},
		{"ok-fractional-population", func(p *Params) { p.Population = 1234.5 }, ""},
		{"ok-all-initial", func(p *Params) { p.InitialExposed, p.InitialInfected, p.InitialRecovered = 2e5, 3e5, 5e5 }, ""},
		{"ok-max-values", func(p *Params) { p.Population, p.Beta, p.Sigma, p.Gamma, p.Days = 1e10, 100, 100, 100, 1 }, ""},
		{"ok-interventions", func(p *Params) { p.Interventions = ivs(0, 0, 10, 10, 364, 0.5) }, ""},
		{"fail-nan-population", func(p *Params) { p.Population = nan }, "population"},
		{"fail-inf-population", func(p *Params) { p.Population = inf }, "population"},
		{"fail-neg-population", func(p *Params) { p.Population = -1 }, "population"},
		{"fail-zero-population", func(p *Params) { p.Population = 0 }, "population"},
		{"fail-large-population", func(p *Params) { p.Population = 1.0000001e10 }, "population"},
		{"fail-nan-exposed", func(p *Params) { p.InitialExposed = nan }, "initial_exposed"},
		{"fail-inf-exposed", func(p *Params) { p.InitialExposed = inf }, "initial_exposed"},
		{"fail-neg-exposed", func(p *Params) { p.InitialExposed = -0.5 }, "initial_exposed"},
		{"fail-nan-infected", func(p *Params) { p.InitialInfected = nan }, "initial_infected"},
		{"fail-inf-infected", func(p *Params) { p.InitialInfected = math.Inf(-1) }, "initial_infected"},
		{"fail-neg-infected", func(p *Params) { p.InitialInfected = -1 }, "initial_infected"},
		{"fail-nan-recovered", func(p *Params) { p.InitialRecovered = nan }, "initial_recovered"},
		{"fail-inf-recovered", func(p *Params) { p.InitialRecovered = inf }, "initial_recovered"},
		{"fail-neg-recovered", func(p *Params) { p.InitialRecovered = -1 }, "initial_recovered"},
		{"fail-sum-exceeds", func(p *Params) { p.InitialExposed, p.InitialInfected, p.InitialRecovered = 4e5, 4e5, 3e5 }, "initial_recovered"},
		{"fail-nan-beta", func(p *Params) { p.Beta = nan }, "beta"},
		{"fail-inf-beta", func(p *Params) { p.Beta = inf }, "beta"},
		{"fail-neg-beta", func(p *Params) { p.Beta = -0.1 }, "beta"},
		{"fail-zero-beta", func(p *Params) { p.Beta = 0 }, "beta"},
		{"fail-large-beta", func(p *Params) { p.Beta = 100.5 }, "beta"},
		{"fail-nan-sigma", func(p *Params) { p.Sigma = nan }, "sigma"},
		{"fail-inf-sigma", func(p *Params) { p.Sigma = inf }, "sigma"},
		{"fail-neg-sigma", func(p *Params) { p.Sigma = -1 }, "sigma"},
		{"fail-zero-sigma", func(p *Params) { p.Sigma = 0 }, "sigma"},
		{"fail-large-sigma", func(p *Params) { p.Sigma = 101 }, "sigma"},
		{"fail-nan-gamma", func(p *Params) { p.Gamma = nan }, "gamma"},
		{"fail-inf-gamma", func(p *Params) { p.Gamma = inf }, "gamma"},
		{"fail-neg-gamma", func(p *Params) { p.Gamma = -1 }, "gamma"},
		{"fail-zero-gamma", func(p *Params) { p.Gamma = 0 }, "gamma"},
		{"fail-large-gamma", func(p *Params) { p.Gamma = 1e3 }, "gamma"},
		{"fail-zero-days", func(p *Params) { p.Days = 0 }, "days"},
		{"fail-neg-days", func(p *Params) { p.Days = -5 }, "days"},
		{"fail-large-days", func(p *Params) { p.Days = 3651 }, "days"},
		{"fail-too-many-interventions", func(p *Params) {
			p.Days = 3650
			for d := range 101 {
				p.Interventions = append(p.Interventions, Intervention{Day: d, BetaMultiplier: 1})
			}
		}, "interventions"},
		{"fail-neg-intervention-day", func(p *Params) { p.Interventions = ivs(-1, 1) }, "interventions[0].day"},
		{"fail-intervention-day-at-days", func(p *Params) { p.Interventions = ivs(0, 1, 365, 1) }, "interventions[1].day"},
		{"fail-unsorted-intervention-days", func(p *Params) { p.Interventions = ivs(10, 1, 20, 1, 5, 1) }, "interventions[2].day"},
		{"fail-duplicate-intervention-days", func(p *Params) { p.Interventions = ivs(10, 1, 10, 0.5) }, "interventions[1].day"},
		{"fail-neg-multiplier", func(p *Params) { p.Interventions = ivs(1, -0.1) }, "interventions[0].beta_multiplier"},
		{"fail-large-multiplier", func(p *Params) { p.Interventions = ivs(1, 1, 2, 10.01) }, "interventions[1].beta_multiplier"},
		{"fail-nan-multiplier", func(p *Params) { p.Interventions = ivs(1, nan) }, "interventions[0].beta_multiplier"},
		{"fail-inf-multiplier", func(p *Params) { p.Interventions = ivs(1, inf) }, "interventions[0].beta_multiplier"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.mod(&p)
			err := p.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v (%T), want *FieldError", err, err)
			}
			if fe.Field != tc.field {
				t.Fatalf("Field = %q, want %q (err %v)", fe.Field, tc.field, err)
			}
			if want := "field " + tc.field + ": " + fe.Reason; err.Error() != want {
				t.Fatalf("Error() = %q, want %q", err.Error(), want)
			}
			if _, err := RunSEIR(p); err == nil {
				t.Fatal("RunSEIR accepted invalid params")
			}
		})
	}
}

// checkSeries verifies the length, conservation and range of a result.
func checkSeries(t testing.TB, p Params, res Result) {
	t.Helper()
	if len(res.Series) != p.Days+1 {
		t.Fatalf("len(Series) = %d, want %d", len(res.Series), p.Days+1)
	}
	n := p.Population
	for k, pt := range res.Series {
		if pt.Day != k {
			t.Fatalf("Series[%d].Day = %d", k, pt.Day)
		}
		for _, v := range []float64{pt.S, pt.E, pt.I, pt.R, pt.NewInfections} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > n {
				t.Fatalf("day %d: value %v outside [0, %v]: %+v", k, v, n, pt)
			}
		}
		// The absolute slack only matters for subnormal populations.
		if sum := pt.S + pt.E + pt.I + pt.R; math.Abs(sum-n) > 1e-9*n+1e-320 {
			t.Fatalf("day %d: S+E+I+R = %v, want %v", k, sum, n)
		}
	}
	if k := res.PeakDay; k < 0 || k > p.Days || res.Series[k].I != res.PeakInfected {
		t.Fatalf("peak day %d / peak %v inconsistent with series", k, res.PeakInfected)
	}
	if a := res.AttackRate; math.IsNaN(a) || a < 0 || a > 1 {
		t.Fatalf("AttackRate = %v", a)
	}
}

func TestRunSEIR(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Params)
	}{
		{"typical", func(*Params) {}},
		{"fast-rates", func(p *Params) { p.Beta, p.Sigma, p.Gamma = 100, 100, 50 }},
		{"slow-rates", func(p *Params) { p.Beta, p.Sigma, p.Gamma, p.Days = 1e-3, 1e-3, 1e-4, 3650 }},
		{"all-susceptible", func(p *Params) { p.InitialExposed, p.InitialInfected = 0, 0 }},
		{"nobody-susceptible", func(p *Params) { p.InitialExposed, p.InitialInfected, p.InitialRecovered = 0, 4e5, 6e5 }},
		{"tiny-population", func(p *Params) { p.Population, p.InitialInfected, p.InitialExposed = 0.5, 0.1, 0 }},
		{"huge-population", func(p *Params) { p.Population, p.InitialInfected = 1e10, 1 }},
		{"one-day", func(p *Params) { p.Days = 1 }},
		{"interventions", func(p *Params) {
			p.Interventions = []Intervention{{Day: 20, BetaMultiplier: 0.3}, {Day: 60, BetaMultiplier: 10}, {Day: 90, BetaMultiplier: 0}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.mod(&p)
			res, err := RunSEIR(p)
			if err != nil {
				t.Fatal(err)
			}
			checkSeries(t, p, res)
			if want := p.Beta / p.Gamma; res.R0 != want {
				t.Fatalf("R0 = %v, want %v", res.R0, want)
			}
			first := res.Series[0]
			if first.E != p.InitialExposed || first.I != p.InitialInfected || first.R != p.InitialRecovered || first.NewInfections != 0 {
				t.Fatalf("day 0 = %+v, want initial values", first)
			}
			// Cumulative new infections equal the growth of I+R.
			var cum float64
			for _, pt := range res.Series {
				cum += pt.NewInfections
			}
			last := res.Series[p.Days]
			grown := last.I + last.R - first.I - first.R
			if math.Abs(cum-grown) > 1e-8*p.Population {
				t.Fatalf("sum of new infections %v, growth of I+R %v", cum, grown)
			}
		})
	}
}

func TestFinalSizeSIRLimit(t *testing.T) {
	for _, r0 := range []float64{1.5, 2, 3} {
		p := Params{
			Population:      1e8,
			InitialInfected: 1,
			Beta:            0.2 * r0,
			Sigma:           50,
			Gamma:           0.2,
			Days:            3000,
		}
		res, err := RunSEIR(p)
		if err != nil {
			t.Fatal(err)
		}
		// Solve z = 1 - exp(-R0 z) for the positive root by fixed-point
		// iteration, which converges for R0 > 1 from z = 1.
		z := 1.0
		for range 10000 {
			z = 1 - math.Exp(-r0*z)
		}
		if math.Abs(res.AttackRate-z) > 1e-3 {
			t.Errorf("R0 %v: attack rate %v, final size equation gives %v", r0, res.AttackRate, z)
		}
	}
}

func TestNoEpidemicBelowThreshold(t *testing.T) {
	for _, r0 := range []float64{0.1, 0.5, 0.9, 0.99} {
		p := Params{Population: 1e6, InitialInfected: 1000, Beta: 0.2 * r0, Sigma: 0.25, Gamma: 0.2, Days: 365}
		res, err := RunSEIR(p)
		if err != nil {
			t.Fatal(err)
		}
		if res.PeakDay != 0 {
			t.Errorf("R0 %v: peak day %d, want 0", r0, res.PeakDay)
		}
		for k := 1; k < len(res.Series); k++ {
			if res.Series[k].I >= res.Series[k-1].I {
				t.Fatalf("R0 %v: I grew on day %d: %v -> %v", r0, k, res.Series[k-1].I, res.Series[k].I)
			}
		}
	}
}

func TestInterventionStopsTransmission(t *testing.T) {
	const d = 30
	p := base()
	free, err := RunSEIR(p)
	if err != nil {
		t.Fatal(err)
	}
	p.Interventions = []Intervention{{Day: d, BetaMultiplier: 0}}
	stopped, err := RunSEIR(p)
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k <= d; k++ {
		if free.Series[k] != stopped.Series[k] {
			t.Fatalf("day %d differs before the intervention: %+v vs %+v", k, free.Series[k], stopped.Series[k])
		}
	}
	for k := d + 1; k <= p.Days; k++ {
		if s := stopped.Series[k]; s.S != stopped.Series[d].S {
			t.Fatalf("day %d: S changed after beta became 0: %v -> %v", k, stopped.Series[d].S, s.S)
		}
		// E only drains, so daily new infections decline from then on.
		if k > d+1 && stopped.Series[k].NewInfections >= stopped.Series[k-1].NewInfections && stopped.Series[k].NewInfections > 0 {
			t.Fatalf("day %d: new infections grew after beta became 0", k)
		}
		if k < 150 && stopped.Series[k].NewInfections >= free.Series[k].NewInfections {
			t.Fatalf("day %d: new infections %v not below %v without intervention", k, stopped.Series[k].NewInfections, free.Series[k].NewInfections)
		}
	}
}

func TestDeterminism(t *testing.T) {
	p := base()
	p.Interventions = []Intervention{{Day: 40, BetaMultiplier: 0.4}}
	a, err := RunSEIR(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RunSEIR(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two runs with the same params differ")
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatal("JSON encodings differ")
	}
}

func TestStepConvergence(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Params)
	}{
		{"typical", func(*Params) {}},
		{"fast", func(p *Params) { p.Beta, p.Sigma, p.Gamma = 3, 1, 1.5 }},
		{"interventions", func(p *Params) {
			p.Interventions = []Intervention{{Day: 30, BetaMultiplier: 0.5}, {Day: 80, BetaMultiplier: 2}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.mod(&p)
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			n := stepsPerDay(p)
			a, b := run(p, n), run(p, 2*n)
			if rel := math.Abs(a.PeakInfected-b.PeakInfected) / b.PeakInfected; rel >= 1e-6 {
				t.Fatalf("%d steps/day: peak %v, %d steps/day: peak %v (rel %g)", n, a.PeakInfected, 2*n, b.PeakInfected, rel)
			}
			if a.PeakDay != b.PeakDay {
				t.Fatalf("peak day %d vs %d", a.PeakDay, b.PeakDay)
			}
		})
	}
}

func TestStepsPerDay(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Params)
		want int
	}{
		{"min", func(p *Params) { p.Beta, p.Sigma, p.Gamma = 0.1, 0.1, 0.1 }, 4},
		{"beta", func(p *Params) { p.Beta = 2 }, 20},
		{"sigma", func(p *Params) { p.Sigma = 3 }, 30},
		{"multiplier", func(p *Params) { p.Interventions = []Intervention{{Day: 1, BetaMultiplier: 10}} }, 50},
		{"low-multiplier", func(p *Params) { p.Interventions = []Intervention{{Day: 1, BetaMultiplier: 0.1}} }, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.mod(&p)
			if got := stepsPerDay(p); got != tc.want {
				t.Fatalf("stepsPerDay = %d, want %d", got, tc.want)
			}
		})
	}
}

func BenchmarkRunSEIR(b *testing.B) {
	p := base()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := RunSEIR(p); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParams(f *testing.F) {
	seeds := []string{
		`{"population":1000000,"initial_exposed":10,"initial_infected":5,"beta":0.5,"sigma":0.2,"gamma":0.1,"days":365}`,
		`{"population":1000,"initial_infected":1,"beta":2,"sigma":50,"gamma":0.5,"days":100,"interventions":[{"day":10,"beta_multiplier":0},{"day":50,"beta_multiplier":10}]}`,
		`{"population":0.5,"initial_exposed":0.25,"initial_infected":0.25,"beta":100,"sigma":100,"gamma":100,"days":3}`,
		`{"population":1e10,"initial_recovered":1e10,"beta":1,"sigma":1,"gamma":1,"days":1}`,
		`{"population":5e-324,"initial_infected":5e-324,"beta":1,"sigma":1,"gamma":1,"days":2}`,
		`{"population":-1}`,
		`{}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Params
		if err := json.Unmarshal(data, &p); err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("Validate error %v is not a *FieldError with a field", err)
			}
			return
		}
		// Keep each fuzz execution fast: very long, very stiff runs are
		// valid but cost seconds; they are covered by TestRunSEIR.
		if p.Days*stepsPerDay(p) > 200000 {
			return
		}
		res, err := RunSEIR(p)
		if err != nil {
			t.Fatalf("RunSEIR(valid params) = %v", err)
		}
		checkSeries(t, p, res)
	})
}
