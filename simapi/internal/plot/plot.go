package plot

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/epitwin/epitwin/simapi/internal/sim"
)

// Image geometry in SVG user units.
const (
	width       = 800
	height      = 450
	plotLeft    = 72.0
	plotRight   = 780.0
	plotTop     = 44.0
	plotBottom  = 396.0
	maxTitleLen = 120 // runes of the title that are shown
	maxY        = 1e300
	minY        = 1e-300
)

// curve describes one compartment line.
type curve struct {
	name  string
	color string
	value func(sim.Point) float64
}

// curves returns the four compartments in drawing order. Labels are kept
// lower case after the letter so the output never contains "Inf".
func curves() []curve {
	return []curve{
		{"S – susceptible", "#1f77b4", func(p sim.Point) float64 { return p.S }},
		{"E – exposed", "#ff7f0e", func(p sim.Point) float64 { return p.E }},
		{"I – infectious", "#d62728", func(p sim.Point) float64 { return p.I }},
		{"R – recovered", "#2ca02c", func(p sim.Point) float64 { return p.R }},
	}
}

// SEIR writes an 800×450 self-contained SVG image of series to w: one
// polyline per compartment (S, E, I, R), axes with tick labels (days and
// people), a legend, the XML-escaped title (truncated to 120 characters) and
// a faint marker at the day of peak I. The y axis spans 0 to the larger of
// population and the largest value in series. Non-finite or negative values
// are drawn as 0. The output depends only on the arguments. It returns an
// error if series is empty or writing fails.
func SEIR(w io.Writer, title string, series []sim.Point, population float64) error {
	if len(series) == 0 {
		return errors.New("plot: empty series")
	}
	cs := curves()

	// Data ranges.
	x0, x1 := float64(series[0].Day), float64(series[0].Day)
	yMax := finite(population)
	peak := 0
	for k, p := range series {
		x0 = math.Min(x0, float64(p.Day))
		x1 = math.Max(x1, float64(p.Day))
		for _, c := range cs {
			yMax = math.Max(yMax, finite(c.value(p)))
		}
		if finite(p.I) > finite(series[peak].I) {
			peak = k
		}
	}
	if x1 <= x0 {
		x1 = x0 + 1
	}
	// Keep the scale within a range where tick arithmetic is exact enough
	// and cannot overflow.
	yMax = math.Min(math.Max(yMax, 0), maxY)
	if yMax < minY {
		yMax = 1
	}
	// The x axis spans exactly the days of the series; only ticks inside
	// it are drawn.
	var xTicks []float64
	all, _ := ticks(x0, x1, 10, true)
	for _, t := range all {
		if t >= x0 && t <= x1 {
			xTicks = append(xTicks, t)
		}
	}
	yTicks, yStep := ticks(0, yMax, 6, false)
	y1 := yTicks[len(yTicks)-1]
	px := func(x float64) float64 { return plotLeft + (x-x0)/(x1-x0)*(plotRight-plotLeft) }
	py := func(y float64) float64 { return plotBottom - math.Min(finite(y), y1)/y1*(plotBottom-plotTop) }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">
`, width, height, width, height)
	b.WriteString(`<rect width="100%" height="100%" fill="#ffffff"/>` + "\n")

	// Title.
	b.WriteString(`<text x="400" y="26" text-anchor="middle" font-size="16" font-weight="bold">`)
	escape(&b, truncate(title, maxTitleLen))
	b.WriteString("</text>\n")

	// Grid and tick labels.
	b.WriteString(`<g stroke="#e5e5e5" stroke-width="1">` + "\n")
	for _, t := range yTicks {
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", num(plotLeft), num(py(t)), num(plotRight), num(py(t)))
	}
	b.WriteString("</g>\n")
	b.WriteString(`<g fill="#333333" font-size="11">` + "\n")
	for _, t := range yTicks {
		fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="end">%s</text>`+"\n", num(plotLeft-6), num(py(t)+4), people(t, yStep))
	}
	for _, t := range xTicks {
		fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", num(px(t)), num(plotBottom+16), strconv.FormatFloat(t, 'f', -1, 64))
	}
	b.WriteString("</g>\n")
	b.WriteString(`<g stroke="#333333" stroke-width="1">` + "\n")
	for _, t := range xTicks {
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", num(px(t)), num(plotBottom), num(px(t)), num(plotBottom+4))
	}
	fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", num(plotLeft), num(plotBottom), num(plotRight), num(plotBottom))
	fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", num(plotLeft), num(plotTop), num(plotLeft), num(plotBottom))
	b.WriteString("</g>\n")
	fmt.Fprintf(&b, `<text x="%s" y="%d" text-anchor="middle" fill="#333333">day</text>`+"\n", num((plotLeft+plotRight)/2), height-16)
	fmt.Fprintf(&b, `<text x="16" y="%s" text-anchor="middle" fill="#333333" transform="rotate(-90 16 %s)">people</text>`+"\n", num((plotTop+plotBottom)/2), num((plotTop+plotBottom)/2))

	// Peak marker.
	if finite(series[peak].I) > 0 {
		x := num(px(float64(series[peak].Day)))
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#d62728" stroke-opacity="0.35" stroke-dasharray="4 4"/>`+"\n", x, num(plotTop), x, num(plotBottom))
		fmt.Fprintf(&b, `<text x="%s" y="%s" fill="#d62728" fill-opacity="0.6" font-size="10" text-anchor="middle">peak day %d</text>`+"\n", x, num(plotTop-4), series[peak].Day)
	}

	// Curves.
	for _, c := range cs {
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round" points="`, c.color)
		for k, p := range series {
			if k > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(num(px(float64(p.Day))))
			b.WriteByte(',')
			b.WriteString(num(py(c.value(p))))
		}
		b.WriteString(`"/>` + "\n")
	}

	// Legend, at the right edge halfway up: an epidemic's curves sit near
	// the top (S early, R late) and the bottom (E, I) there, rarely mid-way.
	legendH := float64(8 + 18*len(cs))
	lx, ly := float64(plotRight-136), (plotTop+plotBottom)/2-legendH/2
	fmt.Fprintf(&b, `<rect x="%s" y="%s" width="128" height="%d" fill="#ffffff" fill-opacity="0.85" stroke="#cccccc"/>`+"\n", num(lx), num(ly), 8+18*len(cs))
	for i, c := range cs {
		y := ly + 16 + 18*float64(i)
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="3"/>`+"\n", num(lx+8), num(y-4), num(lx+30), num(y-4), c.color)
		fmt.Fprintf(&b, `<text x="%s" y="%s">%s</text>`+"\n", num(lx+36), num(y), c.name)
	}
	b.WriteString("</svg>\n")

	_, err := w.Write(b.Bytes())
	return err
}

// finite returns v, or 0 if v is negative, NaN or infinite.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0
	}
	return v
}

// num formats a coordinate with at most two decimals. The callers only pass
// finite values; anything else is drawn at 0 to keep the output valid.
func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	s := strconv.FormatFloat(v, 'f', 2, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "-0" {
		s = "0"
	}
	return s
}

// ticks returns evenly spaced "nice" tick values (steps of 1, 2, 2.5 or 5
// times a power of ten) covering [lo, hi] with about n intervals, and the step. With
// integer set, the step is at least 1.
func ticks(lo, hi float64, n int, integer bool) ([]float64, float64) {
	if !(hi > lo) {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / float64(n))
	if integer && step < 1 {
		step = 1
	}
	first := math.Floor(lo/step) * step
	last := math.Ceil(hi/step) * step
	count := math.Round((last-first)/step) + 1
	if !(count >= 2 && count <= 4*float64(n)) || math.IsInf(last, 0) {
		// Degenerate ranges (huge magnitudes, round-off): label the ends.
		return []float64{lo, hi}, hi - lo
	}
	out := make([]float64, 0, int(count))
	for i := range int(count) {
		// Round to the step's precision to avoid values like 0.30000000000000004.
		out = append(out, roundTo(first+float64(i)*step, step))
	}
	return out, step
}

// niceStep rounds raw up to 1, 2, 2.5 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if !(raw > 0) || math.IsInf(raw, 0) {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	if mag == 0 || math.IsInf(mag, 0) {
		return raw
	}
	switch f := raw / mag; {
	case f <= 1:
		return mag
	case f <= 2:
		return 2 * mag
	case f <= 2.5:
		return 2.5 * mag
	case f <= 5:
		return 5 * mag
	default:
		return 10 * mag
	}
}

// roundTo rounds v to a tenth of the decimal magnitude of step.
func roundTo(v, step float64) float64 {
	q := math.Pow(10, math.Floor(math.Log10(step))-1)
	if q == 0 || math.IsInf(q, 0) {
		return v
	}
	return math.Round(v/q) * q
}

// people formats a tick value compactly: 0, 250, 10k, 1.5M, 2B.
func people(v, step float64) string {
	if v == 0 {
		return "0"
	}
	units := []struct {
		scale  float64
		suffix string
	}{{1e9, "B"}, {1e6, "M"}, {1e3, "k"}}
	for _, u := range units {
		if math.Abs(v) >= u.scale {
			return strconv.FormatFloat(roundTo(v/u.scale, step/u.scale), 'f', -1, 64) + u.suffix
		}
	}
	return strconv.FormatFloat(roundTo(v, step), 'f', -1, 64)
}

// escape writes s with XML special characters escaped; invalid characters
// are replaced by U+FFFD.
func escape(b *bytes.Buffer, s string) {
	_ = xml.EscapeText(b, []byte(s)) // writing to a bytes.Buffer cannot fail
}

// truncate shortens s to at most n runes, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos] + "…"
		}
		i++
	}
	return s
}
