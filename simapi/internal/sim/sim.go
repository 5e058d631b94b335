package sim

import (
	"fmt"
	"math"
)

// Validation bounds for [Params].
const (
	// MaxPopulation is the largest accepted Params.Population.
	MaxPopulation = 1e10
	// MaxRate is the largest accepted Beta, Sigma and Gamma (per day).
	MaxRate = 100.0
	// MaxDays is the largest accepted Params.Days.
	MaxDays = 3650
	// MaxInterventions is the largest accepted number of interventions.
	MaxInterventions = 100
	// MaxBetaMultiplier is the largest accepted Intervention.BetaMultiplier.
	MaxBetaMultiplier = 10.0
)

// Step-size control for the integrator: the internal step h (in days) is
// chosen so that h times the largest rate in effect at any time (σ, γ, or β
// multiplied by the largest multiplier) is at most maxRateStep, with at least
// minStepsPerDay steps per day.
const (
	maxRateStep    = 0.1
	minStepsPerDay = 4
)

// Intervention scales the transmission rate from a given day on.
type Intervention struct {
	// Day is the first day (0-based, less than Params.Days) whose interval
	// [Day, Day+1) uses the scaled transmission rate.
	Day int `json:"day"`
	// BetaMultiplier, in [0, 10], multiplies Params.Beta from Day on. A
	// later intervention replaces an earlier one; multipliers do not compound.
	BetaMultiplier float64 `json:"beta_multiplier"`
}

// Params describes one SEIR simulation. Compartment sizes are real numbers;
// Population need not be a whole number.
type Params struct {
	// Population is the constant total N, in (0, 1e10].
	Population float64 `json:"population"`
	// InitialExposed is E at day 0, at least 0.
	InitialExposed float64 `json:"initial_exposed"`
	// InitialInfected is I at day 0, at least 0.
	InitialInfected float64 `json:"initial_infected"`
	// InitialRecovered is R at day 0, at least 0. The sum of the three
	// initial compartments must not exceed Population; S at day 0 is the
	// remainder.
	InitialRecovered float64 `json:"initial_recovered"`
	// Beta is the transmission rate per day, in (0, 100].
	Beta float64 `json:"beta"`
	// Sigma is the rate per day of leaving E (1/incubation period), in (0, 100].
	Sigma float64 `json:"sigma"`
	// Gamma is the recovery rate per day, in (0, 100].
	Gamma float64 `json:"gamma"`
	// Days is the simulated horizon, in [1, 3650].
	Days int `json:"days"`
	// Interventions are at most 100 changes of the transmission rate, with
	// strictly increasing days.
	Interventions []Intervention `json:"interventions,omitempty"`
}

// FieldError reports the first invalid field of [Params].
type FieldError struct {
	// Field is the JSON name of the field, for example "beta" or
	// "interventions[2].day".
	Field string
	// Reason describes the violated rule.
	Reason string
}

// Error returns "field <name>: <reason>".
func (e *FieldError) Error() string {
	return "field " + e.Field + ": " + e.Reason
}

// Validate checks every rule documented on [Params] and returns a
// *[FieldError] for the first violation, or nil. Fields are checked in
// declaration order; NaN and infinities are rejected everywhere. When the
// initial compartments together exceed the population the error names
// "initial_recovered". Intervention errors name the element, for example
// "interventions[2].day".
func (p Params) Validate() error {
	if fe := p.validate(); fe != nil {
		return fe
	}
	return nil
}

func (p Params) validate() *FieldError {
	if fe := checkFloat("population", p.Population, false, MaxPopulation); fe != nil {
		return fe
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"initial_exposed", p.InitialExposed},
		{"initial_infected", p.InitialInfected},
		{"initial_recovered", p.InitialRecovered},
	} {
		if fe := checkFloat(f.name, f.v, true, MaxPopulation); fe != nil {
			return fe
		}
	}
	if p.InitialExposed+p.InitialInfected+p.InitialRecovered > p.Population {
		return &FieldError{Field: "initial_recovered", Reason: "initial_exposed + initial_infected + initial_recovered exceeds population"}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"beta", p.Beta},
		{"sigma", p.Sigma},
		{"gamma", p.Gamma},
	} {
		if fe := checkFloat(f.name, f.v, false, MaxRate); fe != nil {
			return fe
		}
	}
	if p.Days < 1 || p.Days > MaxDays {
		return &FieldError{Field: "days", Reason: fmt.Sprintf("must be between 1 and %d", MaxDays)}
	}
	if len(p.Interventions) > MaxInterventions {
		return &FieldError{Field: "interventions", Reason: fmt.Sprintf("at most %d allowed", MaxInterventions)}
	}
	for i, iv := range p.Interventions {
		prefix := fmt.Sprintf("interventions[%d].", i)
		if iv.Day < 0 || iv.Day >= p.Days {
			return &FieldError{Field: prefix + "day", Reason: fmt.Sprintf("must be between 0 and days-1 (%d)", p.Days-1)}
		}
		if i > 0 && iv.Day <= p.Interventions[i-1].Day {
			return &FieldError{Field: prefix + "day", Reason: "must be greater than the previous intervention's day"}
		}
		if fe := checkFloat(prefix+"beta_multiplier", iv.BetaMultiplier, true, MaxBetaMultiplier); fe != nil {
			return fe
		}
	}
	return nil
}

// checkFloat checks that v is finite, non-negative (zero allowed only when
// zeroOK) and at most maxV.
func checkFloat(name string, v float64, zeroOK bool, maxV float64) *FieldError {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return &FieldError{Field: name, Reason: "must be a finite number"}
	case v < 0:
		return &FieldError{Field: name, Reason: "must not be negative"}
	case v == 0 && !zeroOK:
		return &FieldError{Field: name, Reason: "must be greater than 0"}
	case v > maxV:
		return &FieldError{Field: name, Reason: fmt.Sprintf("must be at most %g", maxV)}
	}
	return nil
}

// Point is the state of the model at the end of one day.
type Point struct {
	// Day is the day index, 0 for the initial state.
	Day int `json:"day"`
	// S is the number of susceptible people.
	S float64 `json:"s"`
	// E is the number of exposed (infected, not yet infectious) people.
	E float64 `json:"e"`
	// I is the number of infectious people.
	I float64 `json:"i"`
	// R is the number of recovered (removed) people.
	R float64 `json:"r"`
	// NewInfections is the number of people entering I during the day
	// ending at Day (σ·E integrated over that day); 0 for day 0.
	NewInfections float64 `json:"new_infections"`
}

// Result is the outcome of [RunSEIR].
type Result struct {
	// R0 is the basic reproduction number Beta/Gamma, ignoring interventions.
	R0 float64 `json:"r0"`
	// PeakDay is the first day of the series on which I is largest.
	PeakDay int `json:"peak_day"`
	// PeakInfected is I on PeakDay.
	PeakInfected float64 `json:"peak_infected"`
	// AttackRate is the fraction of the population that was infected at some
	// point by the end of the run: (Population - S_final - InitialRecovered)
	// / Population, that is everyone not susceptible at the end except those
	// recovered from the start. It therefore includes the initially exposed
	// and infected. It is clamped to [0, 1].
	AttackRate float64 `json:"attack_rate"`
	// Series holds Days+1 points, for day 0 through Days.
	Series []Point `json:"series"`
}

// RunSEIR validates p and integrates the model with classical RK4. The
// number of internal steps per day is the smallest integer, at least 4, for
// which the step h satisfies h·max(σ, γ, β·m) <= 0.1, where m is the largest
// beta multiplier in effect during the run (1 if there are no interventions
// or all multipliers are smaller). Tiny negative values caused by round-off
// are clamped to 0 and values are clamped to at most Population. The result
// depends only on p. The cost is proportional to Days times the number of
// steps per day: about 70µs for a typical year, a few seconds in the worst
// case (3650 days at 10000 steps per day).
func RunSEIR(p Params) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{}, err
	}
	return run(p, stepsPerDay(p)), nil
}

// stepsPerDay returns the number of internal RK4 steps per day for p.
func stepsPerDay(p Params) int {
	maxMult := 1.0
	for _, iv := range p.Interventions {
		maxMult = math.Max(maxMult, iv.BetaMultiplier)
	}
	maxRate := math.Max(p.Beta*maxMult, math.Max(p.Sigma, p.Gamma))
	n := int(math.Ceil(maxRate / maxRateStep))
	return max(n, minStepsPerDay)
}

// run integrates a validated p with n >= 1 internal steps per day.
func run(p Params, n int) Result {
	N := p.Population
	sigma, gamma := p.Sigma, p.Gamma
	// Compartments; c is the flow from E into I accumulated since the start
	// of the current day (integrated from zero each day to avoid
	// cancellation when differencing a large running total).
	s := math.Max(0, N-(p.InitialExposed+p.InitialInfected+p.InitialRecovered))
	e, i, r := p.InitialExposed, p.InitialInfected, p.InitialRecovered
	h := 1 / float64(n)
	h2, h6 := h/2, h/6
	res := Result{
		R0:     p.Beta / p.Gamma,
		Series: make([]Point, p.Days+1),
	}
	res.Series[0] = Point{Day: 0, S: s, E: e, I: i, R: r}
	next := 0 // index of the next intervention to apply
	mult := 1.0
	for day := 0; day < p.Days; day++ {
		for next < len(p.Interventions) && p.Interventions[next].Day <= day {
			mult = p.Interventions[next].BetaMultiplier
			next++
		}
		beta := p.Beta * mult
		c := 0.0
		for range n {
			// Stage k: force of infection f, E->I flow g, I->R flow q.
			// dS = -f, dE = f-g, dI = g-q, dR = q, dC = g.
			f1, g1, q1 := beta*s*(i/N), sigma*e, gamma*i
			s2, e2, i2 := s-h2*f1, e+h2*(f1-g1), i+h2*(g1-q1)
			f2, g2, q2 := beta*s2*(i2/N), sigma*e2, gamma*i2
			s3, e3, i3 := s-h2*f2, e+h2*(f2-g2), i+h2*(g2-q2)
			f3, g3, q3 := beta*s3*(i3/N), sigma*e3, gamma*i3
			s4, e4, i4 := s-h*f3, e+h*(f3-g3), i+h*(g3-q3)
			f4, g4, q4 := beta*s4*(i4/N), sigma*e4, gamma*i4
			f := f1 + 2*f2 + 2*f3 + f4
			g := g1 + 2*g2 + 2*g3 + g4
			q := q1 + 2*q2 + 2*q3 + q4
			s = clamp(s-h6*f, N)
			e = clamp(e+h6*(f-g), N)
			i = clamp(i+h6*(g-q), N)
			r = clamp(r+h6*q, N)
			c += h6 * g
		}
		res.Series[day+1] = Point{Day: day + 1, S: s, E: e, I: i, R: r, NewInfections: clamp(c, N)}
	}
	for _, pt := range res.Series {
		if pt.I > res.PeakInfected {
			res.PeakDay, res.PeakInfected = pt.Day, pt.I
		}
	}
	res.AttackRate = math.Min(1, math.Max(0, (N-s-p.InitialRecovered)/N))
	return res
}

// clamp limits v to [0, hi].
func clamp(v, hi float64) float64 {
	if v < 0 {
		return 0
	}
	if v > hi {
		return hi
	}
	return v
}
