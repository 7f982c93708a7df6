package loadtest

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// WriteHTMLFile writes the self-contained HTML report.
func (r *Report) WriteHTMLFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	if err := r.WriteHTML(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// chart is one figure of the HTML report.
type chart struct {
	Title string
	SVG   template.HTML
}

// WriteHTML writes one HTML page with the parameters, the machine, the summary table and the
// charts as inline SVG, so it opens anywhere without a network.
func (r *Report) WriteHTML(w io.Writer) error {
	charts, err := r.charts()
	if err != nil {
		return err
	}
	params := [][2]string{
		{"peers", strconv.Itoa(r.Parameters.Peers)}, {"duration", r.Parameters.Duration},
		{"bitrate", r.Parameters.Bitrate}, {"segment", r.Parameters.Segment},
		{"seed copies", strconv.Itoa(r.Parameters.SeedCopies)}, {"stripes", strconv.Itoa(r.Parameters.Stripes)},
		{"net", r.Parameters.Net}, {"latency", r.Parameters.Latency},
		{"loss", fmt.Sprintf("%g %%", r.Parameters.LossPct)}, {"uplink", r.Parameters.Uplink},
		{"join", r.Parameters.Join}, {"churn", fmt.Sprintf("%g %% per minute", r.Parameters.ChurnPct)},
		{"mode", r.Parameters.Mode}, {"source", r.Parameters.Source}, {"players", r.Parameters.Playlist},
		{"media check", strconv.FormatBool(r.Parameters.MediaCheck)},
	}
	machine := [][2]string{
		{"CPU", r.Machine.CPUModel}, {"cores", strconv.Itoa(r.Machine.Cores)}, {"Go", r.Machine.GoVersion},
		{"OS", r.Machine.OS + "/" + r.Machine.Arch}, {"started", r.StartedAt.Format("2006-01-02 15:04:05 UTC")},
	}
	data := map[string]any{
		"Title":   fmt.Sprintf("crowdsurf load test: %d peers, %s, %s", r.Peers, r.Mode, r.Parameters.Net),
		"Summary": r.summaryRows(), "Params": params, "Machine": machine, "Charts": charts, "Notes": r.Notes,
	}
	if err := htmlPage.Execute(w, data); err != nil {
		return fmt.Errorf("loadtest: writing HTML report: %w", err)
	}
	return nil
}

var htmlPage = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0 0 1.5em}td{padding:.2em .8em;border-bottom:1px solid #ddd;vertical-align:top}
td:first-child{color:#555;white-space:nowrap}.cols{display:flex;gap:3em;flex-wrap:wrap}
figure{margin:1.5em 0;display:block}figcaption{font-weight:600;margin-bottom:.3em}
figure svg{display:block;width:calc(100% - 2em);height:auto;overflow:visible}
.note{background:#fff3cd;padding:.5em 1em;border-radius:4px}
</style></head><body>
<h1>{{.Title}}</h1>
{{range .Notes}}<p class="note">{{.}}</p>{{end}}
<h2>Summary</h2>
<table>{{range .Summary}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table>
<div class="cols">
<div><h2>Parameters</h2><table>{{range .Params}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table></div>
<div><h2>Machine</h2><table>{{range .Machine}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table></div>
</div>
<h2>Charts</h2>
{{range .Charts}}<figure><figcaption>{{.Title}}</figcaption>{{.SVG}}</figure>
{{end}}
</body></html>
`))

var (
	colorEgress  = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colorOffload = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	colorLatency = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colorStalls  = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	colorDepth   = color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}
)

func (r *Report) charts() ([]chart, error) {
	n := len(r.Series)
	egress := make(plotter.XYs, n)
	offload := make(plotter.XYs, n)
	stalls := make(plotter.XYs, n)
	stalled := make(plotter.XYs, n)
	unattached := make(plotter.XYs, n)
	stripes := max(r.Parameters.Stripes, 1)
	for i, s := range r.Series {
		unattached[i] = plotter.XY{X: s.T, Y: 100 * ratio(float64(s.Unattached), float64(s.Peers*stripes))}
		// Log scale below: a second with no egress is drawn at the floor.
		egress[i] = plotter.XY{X: s.T, Y: max(s.OriginEgressBps/1e6, egressFloorMbps)}
		offload[i] = plotter.XY{X: s.T, Y: 100 * s.Offload}
		stalls[i] = plotter.XY{X: s.T, Y: float64(s.Stalls)}
		stalled[i] = plotter.XY{X: s.T, Y: float64(s.Stalled)}
	}
	if n == 0 {
		egress = plotter.XYs{{X: 0, Y: egressFloorMbps}}
	}
	streamMbps := max(float64(r.BitrateBps)/1e6, egressFloorMbps)
	cdfXY := make(plotter.XYs, len(r.DeliveryLatencyCDF))
	for i, p := range r.DeliveryLatencyCDF {
		// Log scale below: latencies span milliseconds on loopback to seconds in a deep tree.
		cdfXY[i] = plotter.XY{X: max(p.Ms, cdfFloorMs), Y: 100 * p.Fraction}
	}
	if len(cdfXY) == 0 {
		cdfXY = plotter.XYs{{X: cdfFloorMs, Y: 0}} // no chunk delivered (a CDN-only run): axes only
	}

	var out []chart
	add := func(title string, p *plot.Plot, err error) error {
		if err != nil {
			return fmt.Errorf("loadtest: chart %q: %w", title, err)
		}
		svg, err := renderSVG(p)
		if err != nil {
			return fmt.Errorf("loadtest: chart %q: %w", title, err)
		}
		out = append(out, chart{Title: title, SVG: template.HTML(svg)}) //nolint:gosec // our own SVG
		return nil
	}

	p, err := linePlot("time (s)", "Mbit/s", []series{
		{name: "origin egress", xy: egress, color: colorEgress},
		{name: "1 stream copy", xy: plotter.XYs{{X: 0, Y: streamMbps}, {X: lastX(egress), Y: streamMbps}}, color: color.Gray{Y: 0x99}, dashed: true},
	})
	if err == nil {
		// Joins make a burst many times the steady state; a log scale shows both.
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min = egressFloorMbps
		p.Y.Max *= 3 // room for the legend
		p.Y.Label.Text = "Mbit/s (log scale)"
	}
	if err := add("Origin egress over time (log scale)", p, err); err != nil {
		return nil, err
	}
	p, err = linePlot("time (s)", "% of bytes from peers", []series{{name: "offload", xy: offload, color: colorOffload}})
	if err == nil {
		p.Y.Min, p.Y.Max = 0, 100
		p.Legend.Top = false // offload lives near the top
	}
	if err := add("Offload over time (bytes received in each second)", p, err); err != nil {
		return nil, err
	}
	p, err = linePlot("origin emit to peer verified (ms)", "% of chunks", []series{{name: "chunks", xy: cdfXY, color: colorLatency}})
	if err == nil {
		p.Y.Min, p.Y.Max = 0, 100
		p.Legend.Top = false
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = msTicks{}
		p.X.Min = max(p.X.Min, cdfFloorMs)
		p.X.Max = max(p.X.Max, 10*p.X.Min) // a log axis needs a range: one point would pad to zero
		p.X.Label.Text += " (log scale)"
		err = markQuantiles(p, r.DeliveryLatencyMs)
	}
	if err := add("Delivery latency CDF", p, err); err != nil {
		return nil, err
	}
	p, err = linePlot("time (s)", "players", []series{
		{name: "stalls begun", xy: stalls, color: colorStalls},
		{name: "players stalled", xy: stalled, color: color.Gray{Y: 0x55}, dashed: true},
	})
	if err == nil {
		p.Y.Min = 0
		p.Y.Max = max(p.Y.Max, 1) * 1.3 // room for the legend
		p.Y.Tick.Marker = countTicks{}
	}
	if err := add("Stalls over time", p, err); err != nil {
		return nil, err
	}
	if r.Mode == ModeP2P {
		p, err = linePlot("time (s)", "% of (peer, stripe) pairs", []series{
			{name: "no parent", xy: unattached, color: colorEgress},
		})
		if err == nil {
			p.Y.Min, p.Y.Max = 0, 100
		}
		if err := add("Stripes without a parent over time (such stripes live on repair and fallback only)", p, err); err != nil {
			return nil, err
		}
	}
	p, err = depthPlot(r.DepthHistogram)
	if err := add("Stripe depth at the end (peer, stripe pairs; -1 = no parent)", p, err); err != nil {
		return nil, err
	}
	return out, nil
}

// egressFloorMbps is the bottom of the log-scale egress chart.
const egressFloorMbps = 0.01

type series struct {
	name   string
	xy     plotter.XYs
	color  color.Color
	dashed bool
}

func lastX(xy plotter.XYs) float64 {
	if len(xy) == 0 {
		return 1
	}
	return xy[len(xy)-1].X
}

// linePlot draws series against time or another x. It has no title of its own: the page's
// caption is the chart's one title.
func linePlot(xlabel, ylabel string, ss []series) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	p.Add(plotter.NewGrid())
	for _, s := range ss {
		xy := s.xy
		if len(xy) == 0 {
			xy = plotter.XYs{{X: 0, Y: 0}} // an empty run still draws axes
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		l.Color = s.color
		l.Width = vg.Points(1.5)
		if s.dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	p.Legend.Top = true
	if strings.HasPrefix(xlabel, "time") {
		p.X.Min = 0
	}
	return p, nil
}

func depthPlot(bins []DepthBin) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = "depth in the stripe tree (origin = 0)"
	p.Y.Label.Text = "(peer, stripe) pairs"
	if len(bins) == 0 {
		bins = []DepthBin{{Depth: 1, Count: 0}}
	}
	values := make(plotter.Values, len(bins))
	names := make([]string, len(bins))
	for i, b := range bins {
		values[i] = float64(b.Count)
		names[i] = strconv.Itoa(b.Depth)
	}
	bars, err := plotter.NewBarChart(values, vg.Points(28))
	if err != nil {
		return nil, err
	}
	bars.Color = colorDepth
	bars.LineStyle.Width = 0
	p.Add(plotter.NewGrid(), bars)
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(bins))-0.4 // whole bars at both ends
	p.Y.Min = 0
	p.Y.Tick.Marker = countTicks{}
	return p, nil
}

// cdfFloorMs is the left end of the log-scale latency CDF.
const cdfFloorMs = 1

// markQuantiles draws the p50, p95 and p99 of q as labelled vertical lines on a CDF.
func markQuantiles(p *plot.Plot, q LatencyQuantiles) error {
	marks := []struct {
		name string
		ms   float64
		y    float64
	}{{"p50", q.P50, 50}, {"p95", q.P95, 95}, {"p99", q.P99, 99}}
	var at plotter.XYs
	var labels []string
	for _, m := range marks {
		if m.ms <= 0 {
			continue
		}
		x := max(m.ms, cdfFloorMs)
		l, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: m.y}})
		if err != nil {
			return err
		}
		l.Color = color.Gray{Y: 0x88}
		l.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		p.Add(l)
		at = append(at, plotter.XY{X: x, Y: m.y})
		labels = append(labels, fmt.Sprintf(" %s %s", m.name, humanMs(m.ms)))
	}
	if len(at) == 0 {
		return nil
	}
	ls, err := plotter.NewLabels(plotter.XYLabels{XYs: at, Labels: labels})
	if err != nil {
		return err
	}
	for i := range ls.TextStyle {
		ls.TextStyle[i].XAlign = draw.XLeft
		ls.TextStyle[i].YAlign = draw.YTop
	}
	p.Add(ls)
	return nil
}

// humanMs writes a latency as "850 ms" or "1.2 s".
func humanMs(ms float64) string {
	if ms < 1000 {
		return fmt.Sprintf("%.0f ms", ms)
	}
	return fmt.Sprintf("%.3g s", ms/1000)
}

// msTicks labels a log-scale millisecond axis at 1-2-5 steps ("10 ms", "1 s").
type msTicks struct{}

func (msTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for decade := 1.0; decade <= hi*10; decade *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := decade * m
			if v < lo || v > hi {
				continue
			}
			ticks = append(ticks, plot.Tick{Value: v, Label: humanMs(v)})
		}
	}
	return ticks
}

// countTicks puts ticks on whole numbers only: the axis counts players or pairs.
type countTicks struct{}

func (countTicks) Ticks(lo, hi float64) []plot.Tick {
	step := 1.0
	for (hi-lo)/step > 8 {
		switch {
		case strconv.FormatFloat(step, 'f', -1, 64)[0] == '2':
			step = step / 2 * 5
		default:
			step *= 2
		}
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', 0, 64)})
	}
	return ticks
}

func renderSVG(p *plot.Plot) (string, error) {
	c := vgsvg.New(10*vg.Inch, 3.6*vg.Inch)
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return "", err
	}
	// Drop the XML prolog: the SVG is inlined in HTML.
	svg := b.Bytes()
	if i := bytes.Index(svg, []byte("<svg")); i > 0 {
		svg = svg[i:]
	}
	// The page's stylesheet sizes the chart to its width (the viewBox keeps the proportions) and
	// gives it the page's font.
	out := string(svg)
	if i := strings.Index(out, "viewBox="); i > 0 {
		out = "<svg " + out[i:]
	}
	return strings.ReplaceAll(out, "font-family:Liberation Serif", "font-family:inherit"), nil
}
