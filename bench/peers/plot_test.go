package main

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// Made-up curves written to a file decode as a 1200×800 PNG with the
// durabus line in all four panels and the baseline line in exactly the two
// panels that have a baseline (publish and backlog).
func TestWritePlot(t *testing.T) {
	r := &scaleResult{
		publishers:  []point{{1, 9_000, 10_000}, {4, 30_000, 34_000}, {16, 60_000, 70_000}, {64, 65_000, 80_000}},
		topics:      []point{{x: 1, ours: 200_000}, {x: 10, ours: 190_000}, {x: 100, ours: 150_000}, {x: 1000, ours: 90_000}},
		subscribers: []point{{x: 1, ours: 180_000}, {x: 4, ours: 400_000}, {x: 16, ours: 450_000}},
		backlog:     []point{{10_000, 250_000, 600_000}, {100_000, 240_000, 580_000}, {1_000_000, 230_000, 560_000}},
	}
	path := filepath.Join(t.TempDir(), "scaling.png")
	if err := writePlot(path, r.panels()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Bounds().Size(); got != image.Pt(plotW, plotH) {
		t.Fatalf("size %v, want %dx%d", got, plotW, plotH)
	}

	ours, base := plotColors[0], plotColors[1]
	for i, wantBase := range []bool{true, false, false, true} {
		x0, y0 := (i%2)*plotW/2, (i/2)*plotH/2
		quad := image.Rect(x0, y0, x0+plotW/2, y0+plotH/2)
		// A line across a panel is hundreds of pixels; the legend sample alone is under 150.
		if n := count(img, quad, ours); n < 500 {
			t.Errorf("panel %d: %d pixels of the durabus colour, want at least 500", i, n)
		}
		n := count(img, quad, base)
		if wantBase && n < 500 {
			t.Errorf("panel %d: %d pixels of the baseline colour, want at least 500", i, n)
		}
		if !wantBase && n != 0 {
			t.Errorf("panel %d has no baseline but %d pixels of its colour", i, n)
		}
	}
}

func count(img image.Image, r image.Rectangle, c color.RGBA) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if color.RGBAModel.Convert(img.At(x, y)) == c {
				n++
			}
		}
	}
	return n
}

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct{ top, want float64 }{
		{88, 20}, {11, 5}, {0.9, 0.2}, {660, 200}, {0, 1},
	} {
		if got := niceStep(tc.top, 5); got != tc.want {
			t.Errorf("niceStep(%v, 5) = %v, want %v", tc.top, got, tc.want)
		}
	}
}
