package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// The chart: three panels side by side under a title and a legend.
const (
	chartW, chartH = 1200, 460
	panelTop       = 60 // below the title and the legend
	panelGap       = 24
)

var (
	white     = color.RGBA{255, 255, 255, 255}
	ink       = color.RGBA{30, 30, 30, 255}
	grid      = color.RGBA{225, 225, 225, 255}
	gwColours = map[string]color.RGBA{
		gwDirect:    {140, 140, 140, 255},
		gwFetchd:    {31, 119, 180, 255},
		gwForwarder: {255, 127, 14, 255},
		gwHaproxy:   {44, 160, 44, 255},
	}
	otherColour = color.RGBA{148, 103, 189, 255}
)

func colourOf(name string) color.RGBA {
	if c, ok := gwColours[name]; ok {
		return c
	}
	return otherColour
}

// bar is one bar of a panel.
type bar struct {
	group, name string // group labels the x axis; name picks the colour
	value       float64
	label       string // printed above the bar
}

// chart draws the run's three panels: req/s by concurrency per gateway, the
// gateway processes' CPU per request at the highest concurrency, and their
// RSS with the in-flight requests held. It returns the image and the
// panels' plot areas (where bars are drawn).
func chart(r *results) (*image.RGBA, [3]image.Rectangle) {
	img := image.NewRGBA(image.Rect(0, 0, chartW, chartH))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)
	title := fmt.Sprintf("fetchd against other gateways - %s, %d cores, %s per level", r.Machine.CPU, r.Machine.Cores, r.Config.Duration)
	text(img, 16, 20, title, ink, true)

	// The legend: every gateway that ran, in order.
	x := 16
	for _, g := range r.Config.Gateways {
		fill(img, image.Rect(x, 32, x+14, 44), colourOf(g))
		text(img, x+20, 43, g, ink, false)
		x += 20 + 7*len(g) + 24
	}

	var reqs, cpu, mem []bar
	for _, c := range r.Config.Concurrency {
		for _, g := range r.Throughput {
			if l, ok := levelOf(g, c); ok {
				reqs = append(reqs, bar{group: "c=" + strconv.Itoa(c), name: g.Name, value: l.RPS, label: short(l.RPS)})
			}
		}
	}
	top := 0
	if n := len(r.Config.Concurrency); n > 0 {
		top = r.Config.Concurrency[n-1]
	}
	for _, g := range r.Throughput {
		if l, ok := levelOf(g, top); ok && l.CPUPerReq > 0 {
			us := float64(l.CPUPerReq) / float64(time.Microsecond)
			cpu = append(cpu, bar{group: g.Name, name: g.Name, value: us, label: fmt.Sprintf("%.0f", us)})
		}
	}
	for _, m := range r.Memory {
		if m.HasProcess {
			v := MiB(m.Held.RSS)
			mem = append(mem, bar{group: m.Name, name: m.Name, value: v, label: fmt.Sprintf("%.0f", v)})
		}
	}

	// The req/s panel has a bar per gateway and concurrency: it gets half
	// the width, the other two a quarter each.
	w := (chartW - 2*16 - 2*panelGap) / 4
	widths := [3]int{2 * w, w, w}
	var areas [3]image.Rectangle
	titles := [3]string{
		"requests/s by concurrency",
		fmt.Sprintf("gateway CPU us per request, c=%d", top),
		fmt.Sprintf("gateway RSS MiB, %d in flight", r.Config.InFlight),
	}
	x0 := 16
	for i, bars := range [3][]bar{reqs, cpu, mem} {
		areas[i] = panel(img, image.Rect(x0, panelTop, x0+widths[i], chartH-8), titles[i], bars)
		x0 += widths[i] + panelGap
	}
	return img, areas
}

// panel draws a bar panel in frame and returns its plot area. Bars of the
// same group stand together; groups are labelled under the axis.
func panel(img *image.RGBA, frame image.Rectangle, title string, bars []bar) image.Rectangle {
	text(img, frame.Min.X, frame.Min.Y+12, title, ink, true)
	area := image.Rect(frame.Min.X+48, frame.Min.Y+40, frame.Max.X-4, frame.Max.Y-24)
	step, ticks := axis(maxValue(bars))
	top := step * float64(ticks)
	for i := 0; i <= ticks; i++ {
		y := area.Max.Y - int(math.Round(float64(area.Dy())*float64(i)/float64(ticks)))
		fill(img, image.Rect(area.Min.X, y, area.Max.X, y+1), grid)
		l := short(step * float64(i))
		text(img, area.Min.X-6-7*len(l), y+4, l, ink, false)
	}
	fill(img, image.Rect(area.Min.X-1, area.Min.Y, area.Min.X, area.Max.Y+1), ink)
	if len(bars) == 0 {
		text(img, area.Min.X+10, area.Min.Y+area.Dy()/2, "no data", ink, false)
		return area
	}

	var groups []string
	perGroup := map[string]int{}
	for _, b := range bars {
		if perGroup[b.group] == 0 {
			groups = append(groups, b.group)
		}
		perGroup[b.group]++
	}
	slot := area.Dx() / len(groups)
	seen := map[string]int{}
	for _, b := range bars {
		g := indexOf(groups, b.group)
		n := perGroup[b.group]
		bw := min((slot-12)/n, 60)
		x := area.Min.X + g*slot + (slot-bw*n)/2 + seen[b.group]*bw
		seen[b.group]++
		h := int(math.Round(b.value / top * float64(area.Dy())))
		fill(img, image.Rect(x+1, area.Max.Y-h, x+bw-1, area.Max.Y), colourOf(b.name))
		lx := x + (bw-7*len(b.label))/2
		text(img, lx, area.Max.Y-h-4, b.label, ink, false)
	}
	for g, name := range groups {
		x := area.Min.X + g*slot + (slot-7*len(name))/2
		text(img, x, area.Max.Y+16, name, ink, false)
	}
	return area
}

func maxValue(bars []bar) float64 {
	m := 0.0
	for _, b := range bars {
		m = max(m, b.value)
	}
	return m
}

// axis divides 0..v into at most 5 steps of a round size (1, 2, 2.5 or 5
// times a power of ten) and returns the step and how many reach v.
func axis(v float64) (float64, int) {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1, 1
	}
	s := v / 5
	p := math.Pow(10, math.Floor(math.Log10(s)))
	step := 10 * p
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*p >= s*(1-1e-9) {
			step = m * p
			break
		}
	}
	return step, max(int(math.Ceil(v/step*(1-1e-9))), 1)
}

// short prints v in a few characters: 950, 9.5k, 12k.
func short(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.0fk", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.1fk", v/1000)
	case v >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

// text draws s with its baseline at y; bold draws it twice, a pixel apart.
func text(img *image.RGBA, x, y int, s string, c color.RGBA, bold bool) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
	if bold {
		d.Dot = fixed.P(x+1, y)
		d.DrawString(s)
	}
}

// writeChart renders the chart to path as PNG, creating its directory.
func writeChart(path string, r *results) error {
	img, _ := chart(r)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
