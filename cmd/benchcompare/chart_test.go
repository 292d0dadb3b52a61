package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestChart(t *testing.T) {
	t.Parallel()
	r := fixture()
	path := filepath.Join(t.TempDir(), "docs", "chart.png")
	if err := writeChart(path, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Bounds(); got != image.Rect(0, 0, chartW, chartH) {
		t.Fatalf("chart is %v, want %dx%d", got, chartW, chartH)
	}
	_, areas := chart(r)

	// Every gateway is in the legend, above the panels.
	legend := image.Rect(0, 0, chartW, panelTop)
	for _, g := range r.Config.Gateways {
		if count(img, legend, colourOf(g)) == 0 {
			t.Errorf("%s is not in the legend", g)
		}
	}
	// Bars are as tall as their values: direct's req/s are twice
	// fetchd's at every concurrency.
	ratioOf := func(panel int, a, b string) float64 {
		na, nb := count(img, areas[panel], colourOf(a)), count(img, areas[panel], colourOf(b))
		if nb == 0 {
			t.Fatalf("panel %d: no %s bar", panel, b)
		}
		return float64(na) / float64(nb)
	}
	for _, tc := range []struct {
		panel int
		a, b  string
		want  float64
	}{
		{0, gwDirect, gwFetchd, 2},
		{0, gwHaproxy, gwFetchd, 1.5},
		{1, gwFetchd, gwHaproxy, 4}, // CPU at c=16: 120 and 30 µs
		{1, gwForwarder, gwHaproxy, 80.0 / 30},
		{2, gwFetchd, gwHaproxy, 4}, // RSS: 200 and 50 MiB
	} {
		if got := ratioOf(tc.panel, tc.a, tc.b); math.Abs(got-tc.want) > tc.want*0.03 {
			t.Errorf("panel %d: %s/%s bar area %.3f, want %.3f", tc.panel, tc.a, tc.b, got, tc.want)
		}
	}
	// direct has no process: no CPU or memory bar.
	for _, p := range []int{1, 2} {
		if n := count(img, areas[p], colourOf(gwDirect)); n != 0 {
			t.Errorf("panel %d has %d pixels of direct", p, n)
		}
	}
}

// count is the number of pixels of colour c in r.
func count(img image.Image, r image.Rectangle, c color.RGBA) int {
	at := func(x, y int) color.RGBA { return color.RGBAModel.Convert(img.At(x, y)).(color.RGBA) }
	if rgba, ok := img.(*image.RGBA); ok {
		at = rgba.RGBAAt
	}
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if at(x, y) == c {
				n++
			}
		}
	}
	return n
}

func TestAxis(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v     float64
		step  float64
		ticks int
	}{
		{219, 50, 5},
		{49, 10, 5},
		{8900, 2000, 5},
		{12000, 2500, 5},
		{100, 20, 5},
		{101, 25, 5},
		{0.3, 0.1, 3},
		{0, 1, 1},
		{math.NaN(), 1, 1},
	} {
		step, ticks := axis(tc.v)
		if math.Abs(step-tc.step) > 1e-9*tc.step || ticks != tc.ticks {
			t.Errorf("axis(%v) = %v, %d; want %v, %d", tc.v, step, ticks, tc.step, tc.ticks)
		}
		if !math.IsNaN(tc.v) && step*float64(ticks) < tc.v {
			t.Errorf("axis(%v) stops below it at %v", tc.v, step*float64(ticks))
		}
	}
}

func TestShort(t *testing.T) {
	t.Parallel()
	for v, want := range map[float64]string{0: "0", 7.25: "7.2", 62.5: "62.5", 250: "250", 2500: "2.5k", 12345: "12k"} {
		if got := short(v); got != want {
			t.Errorf("short(%v) = %q, want %q", v, got, want)
		}
	}
}
