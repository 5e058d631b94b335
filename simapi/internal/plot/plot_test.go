package plot

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/epitwin/epitwin/simapi/internal/sim"
)

// simulate returns the series of a typical run over days.
func simulate(t testing.TB, days int) []sim.Point {
	t.Helper()
	res, err := sim.RunSEIR(sim.Params{
		Population: 1.5e6, InitialExposed: 20, InitialInfected: 10,
		Beta: 0.5, Sigma: 0.2, Gamma: 0.1, Days: days,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.Series
}

// walk decodes svg as XML and counts elements by local name.
func walk(t *testing.T, svg string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("invalid XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			counts[se.Name.Local]++
			if se.Name.Local == "script" {
				t.Fatal("output contains a script element")
			}
		}
	}
	return counts
}

// textContents returns the character data of all text elements.
func textContents(t *testing.T, svg string) []string {
	t.Helper()
	var out []string
	dec := xml.NewDecoder(strings.NewReader(svg))
	in := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			in = tok.Name.Local == "text"
		case xml.CharData:
			if in {
				out = append(out, string(tok))
			}
		case xml.EndElement:
			in = false
		}
	}
}

func TestSEIR(t *testing.T) {
	zeros := make([]sim.Point, 11)
	for k := range zeros {
		zeros[k].Day = k
	}
	nasty := simulate(t, 10)
	nasty[3].I = math.NaN()
	nasty[4].S = math.Inf(1)
	nasty[5].E = -7
	tests := []struct {
		name       string
		title      string
		series     []sim.Point
		population float64
		wantText   []string
	}{
		{"typical", "Typical outbreak", simulate(t, 365), 1.5e6, []string{"Typical outbreak", "1.5M", "peak day", "S – susceptible", "I – infectious"}},
		{"escape", `<script>alert("x")</script>&"'`, simulate(t, 50), 1.5e6, []string{`<script>alert("x")</script>&"'`}},
		{"one-day", "one day", simulate(t, 1), 1.5e6, []string{"0", "1"}},
		{"single-point", "one point", simulate(t, 1)[:1], 1.5e6, nil},
		{"all-zero", "zeros", zeros, 0, []string{"0"}},
		{"zero-population-nan", "nan population", zeros, math.NaN(), nil},
		{"inf-population", "inf population", zeros, math.Inf(1), nil},
		{"non-finite-values", "nasty", nasty, 1.5e6, nil},
		{"tiny", "tiny", zeros, 5e-324, nil},
		{"small", "small", zeros, 0.5, []string{"0.5"}},
		{"huge", "huge", zeros, 1e10, []string{"10B"}},
		{"long-title", strings.Repeat("é", 500), zeros, 10, []string{strings.Repeat("é", maxTitleLen) + "…"}},
		{"invalid-utf8", "bad \xff\x00 title", zeros, 10, []string{"bad \uFFFD\uFFFD title"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := SEIR(&b, tc.title, tc.series, tc.population); err != nil {
				t.Fatal(err)
			}
			svg := b.String()
			for _, bad := range []string{"NaN", "Inf", "<script"} {
				if strings.Contains(svg, bad) {
					t.Fatalf("output contains %q:\n%s", bad, svg)
				}
			}
			counts := walk(t, svg)
			if counts["svg"] != 1 || counts["polyline"] != 4 {
				t.Fatalf("got %d svg and %d polyline elements, want 1 and 4", counts["svg"], counts["polyline"])
			}
			if !strings.Contains(svg, `width="800" height="450"`) {
				t.Fatal("missing 800x450 size")
			}
			texts := textContents(t, svg)
			for _, want := range tc.wantText {
				found := false
				for _, got := range texts {
					if got == want || (len(want) > 3 && strings.Contains(got, want)) {
						found = true
					}
				}
				if !found {
					t.Fatalf("no text element %q in %q", want, texts)
				}
			}
			var again bytes.Buffer
			if err := SEIR(&again, tc.title, tc.series, tc.population); err != nil {
				t.Fatal(err)
			}
			if again.String() != svg {
				t.Fatal("output is not deterministic")
			}
			if os.Getenv("PLOT_OUT") != "" && tc.name == "typical" {
				if err := os.WriteFile(os.Getenv("PLOT_OUT"), b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestSEIREmpty(t *testing.T) {
	if err := SEIR(io.Discard, "x", nil, 10); err == nil {
		t.Fatal("want an error for an empty series")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestSEIRWriteError(t *testing.T) {
	if err := SEIR(failingWriter{}, "x", simulate(t, 5), 1.5e6); err == nil {
		t.Fatal("want the write error")
	}
}

func TestPeople(t *testing.T) {
	tests := []struct {
		name string
		v    float64
		step float64
		want string
	}{
		{"zero", 0, 1, "0"},
		{"small", 250, 50, "250"},
		{"fraction", 0.30000000000000004, 0.1, "0.3"},
		{"thousands", 10000, 5000, "10k"},
		{"half-thousands", 1500, 500, "1.5k"},
		{"millions", 1.5e6, 5e5, "1.5M"},
		{"quarter-millions", 1.25e6, 2.5e5, "1.25M"},
		{"billions", 2e9, 1e9, "2B"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := people(tc.v, tc.step); got != tc.want {
				t.Fatalf("people(%v) = %q, want %q", tc.v, got, tc.want)
			}
		})
	}
}

func TestTicks(t *testing.T) {
	tests := []struct {
		name    string
		lo, hi  float64
		n       int
		integer bool
		want    []float64
	}{
		{"people", 0, 1.5e6, 6, false, []float64{0, 2.5e5, 5e5, 7.5e5, 1e6, 1.25e6, 1.5e6}},
		{"people-odd", 0, 1234567, 6, false, []float64{0, 2.5e5, 5e5, 7.5e5, 1e6, 1.25e6}},
		{"days", 0, 365, 10, true, []float64{0, 50, 100, 150, 200, 250, 300, 350, 400}},
		{"days-long", 0, 3650, 10, true, []float64{0, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000}},
		{"one-day", 0, 1, 10, true, []float64{0, 1}},
		{"fractions", 0, 0.5, 6, false, []float64{0, 0.1, 0.2, 0.3, 0.4, 0.5}},
		{"empty-range", 3, 3, 6, false, []float64{3, 3.2, 3.4, 3.6, 3.8, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := ticks(tc.lo, tc.hi, tc.n, tc.integer)
			if len(got) != len(tc.want) {
				t.Fatalf("ticks = %v, want %v", got, tc.want)
			}
			for i := range got {
				if math.Abs(got[i]-tc.want[i]) > 1e-12*math.Max(1, tc.want[i]) {
					t.Fatalf("ticks = %v, want %v", got, tc.want)
				}
			}
		})
	}
}
