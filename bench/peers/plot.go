package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// The plot: a 2×2 grid of line charts, log x, linear y from 0, drawn with
// the standard library and basicfont (no anti-aliasing).
const (
	plotW, plotH = 1200, 800
	lineWidth    = 3 // px, square pen
	markerRadius = 4
)

var (
	plotColors = []color.RGBA{
		{0x1f, 0x77, 0xb4, 0xff}, // durabus: blue
		{0xff, 0x7f, 0x0e, 0xff}, // raw baseline: orange
	}
	inkColor  = color.RGBA{0x20, 0x20, 0x20, 0xff}
	gridColor = color.RGBA{0xe0, 0xe0, 0xe0, 0xff}
)

type series struct {
	name string
	x, y []float64 // y in k events/s
}

type panel struct {
	title, xLabel string
	series        []series
}

// panels turns the measured points into the four charts; a baseline line
// is drawn only where the curve has one.
func (r *scaleResult) panels() []panel {
	line := func(name string, pts []point, base bool) series {
		s := series{name: name}
		for _, p := range pts {
			v := p.ours
			if base {
				v = p.base
			}
			s.x, s.y = append(s.x, float64(p.x)), append(s.y, v/1000)
		}
		return s
	}
	return []panel{
		{"Publish vs publisher goroutines", "publisher goroutines",
			[]series{line("durabus Publish", r.publishers, false), line("raw EVALSHA", r.publishers, true)}},
		{"Delivery vs topics (one pattern subscription)", "topics",
			[]series{line("durabus", r.topics, false)}},
		{"Delivery vs subscribers (sum over subscribers)", "subscribers",
			[]series{line("durabus", r.subscribers, false)}},
		{"Replay vs backlog", "events in backlog",
			[]series{line("durabus replay", r.backlog, false), line("raw XRANGE", r.backlog, true)}},
	}
}

// writePlot renders the panels (at most four, row by row) into a PNG file.
func writePlot(path string, panels []panel) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, renderPlot(panels)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func renderPlot(panels []panel) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	w, h := plotW/2, plotH/2
	for i, p := range panels {
		x0, y0 := (i%2)*w, (i/2)*h
		drawPanel(img, image.Rect(x0, y0, x0+w, y0+h), p)
	}
	return img
}

func drawPanel(img *image.RGBA, r image.Rectangle, p panel) {
	const left, right, top, bottom = 70, 30, 52, 48
	area := image.Rect(r.Min.X+left, r.Min.Y+top, r.Max.X-right, r.Max.Y-bottom)
	text(img, r.Min.X+left, r.Min.Y+20, p.title)
	text(img, r.Min.X+left-40, r.Min.Y+top-10, "k events/s")

	// Legend, right-aligned on the row above the chart.
	lx := area.Max.X
	for i := len(p.series) - 1; i >= 0; i-- {
		lx -= textWidth(p.series[i].name)
		text(img, lx, r.Min.Y+top-10, p.series[i].name)
		lx -= 28
		c := plotColors[i%len(plotColors)]
		ly := r.Min.Y + top - 14
		segment(img, lx, ly, lx+22, ly, c)
		dot(img, lx+11, ly, c)
		lx -= 16
	}

	// Scales: x in log10 with a margin of a tenth of the span each side,
	// y from 0 to a round number above the largest value.
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 0.0
	for _, s := range p.series {
		for i, x := range s.x {
			if x > 0 && finite(s.y[i]) {
				xmin, xmax, ymax = math.Min(xmin, x), math.Max(xmax, x), math.Max(ymax, s.y[i])
			}
		}
	}
	if math.IsInf(xmin, 1) {
		text(img, area.Min.X+10, area.Min.Y+20, "no data")
		return
	}
	lo, hi := math.Log10(xmin), math.Log10(xmax)
	pad := (hi - lo) / 10
	if pad == 0 {
		pad = 0.5
	}
	lo, hi = lo-pad, hi+pad
	step := niceStep(ymax*1.1, 5)
	ytop := math.Max(math.Ceil(ymax*1.1/step)*step, step) // all zero: one step
	px := func(x float64) int {
		return area.Min.X + int(math.Round((math.Log10(x)-lo)/(hi-lo)*float64(area.Dx())))
	}
	py := func(y float64) int {
		return area.Max.Y - int(math.Round(y/ytop*float64(area.Dy())))
	}

	// Grid and tick labels: y at each step, x at each measured point.
	decimals := 0
	if step < 1 {
		decimals = int(math.Ceil(-math.Log10(step)))
	}
	for i := 0; float64(i)*step <= ytop*1.0001; i++ {
		v := float64(i) * step
		y := py(v)
		hline(img, area.Min.X, area.Max.X, y, gridColor)
		label := strconv.FormatFloat(v, 'f', decimals, 64)
		text(img, area.Min.X-8-textWidth(label), y+5, label)
	}
	seen := map[float64]bool{}
	for _, s := range p.series {
		for _, x := range s.x {
			if x <= 0 || seen[x] {
				continue
			}
			seen[x] = true
			X := px(x)
			vline(img, X, area.Min.Y, area.Max.Y, gridColor)
			label := countLabel(x)
			text(img, X-textWidth(label)/2, area.Max.Y+18, label)
		}
	}
	xl := p.xLabel + " (log scale)"
	text(img, area.Min.X+(area.Dx()-textWidth(xl))/2, area.Max.Y+38, xl)
	hline(img, area.Min.X, area.Max.X, area.Max.Y, inkColor)
	vline(img, area.Min.X, area.Min.Y, area.Max.Y, inkColor)

	for i, s := range p.series {
		c := plotColors[i%len(plotColors)]
		prevX, prevY, have := 0, 0, false
		for j, x := range s.x {
			if x <= 0 || !finite(s.y[j]) {
				continue
			}
			X, Y := px(x), py(s.y[j])
			if have {
				segment(img, prevX, prevY, X, Y, c)
			}
			prevX, prevY, have = X, Y, true
		}
		for j, x := range s.x {
			if x > 0 && finite(s.y[j]) {
				dot(img, px(x), py(s.y[j]), c)
			}
		}
	}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// niceStep returns 1, 2 or 5 × 10^k so that about n steps cover top.
func niceStep(top float64, n int) float64 {
	if top <= 0 {
		return 1
	}
	raw := top / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// countLabel writes 1000 as 1k and 1000000 as 1M.
func countLabel(x float64) string {
	switch {
	case x >= 1e6 && math.Mod(x, 1e6) == 0:
		return fmt.Sprintf("%.0fM", x/1e6)
	case x >= 1e3 && math.Mod(x, 1e3) == 0:
		return fmt.Sprintf("%.0fk", x/1e3)
	}
	return strconv.FormatFloat(x, 'f', -1, 64)
}

var face = basicfont.Face7x13

func text(img *image.RGBA, x, y int, s string) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(inkColor), Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(s string) int { return font.MeasureString(face, s).Round() }

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		img.SetRGBA(x, y, c)
	}
}

// segment draws a line lineWidth px thick (Bresenham with a square pen).
func segment(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		pen := image.Rect(x0-lineWidth/2, y0-lineWidth/2, x0-lineWidth/2+lineWidth, y0-lineWidth/2+lineWidth)
		draw.Draw(img, pen, image.NewUniform(c), image.Point{}, draw.Src)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

// dot draws a filled circle marker.
func dot(img *image.RGBA, x, y int, c color.RGBA) {
	for i := -markerRadius; i <= markerRadius; i++ {
		for j := -markerRadius; j <= markerRadius; j++ {
			if i*i+j*j <= markerRadius*markerRadius+1 {
				img.SetRGBA(x+i, y+j, c)
			}
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}
