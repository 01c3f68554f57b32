package server

import "testing"

func TestShouldRelease(t *testing.T) {
	for _, c := range []struct {
		peak, sessions int
		want           bool
	}{
		{0, 0, false},
		{50, 0, false}, // a fall smaller than releaseMinDrop is not worth a GC
		{1000, 900, false},
		{1000, 600, false}, // not yet half the peak
		{1000, 500, true},
		{500, 250, true},
		{250, 125, true},
		{150, 40, true},
		{120, 30, false}, // under releaseMinDrop
		{10000, 0, true},
	} {
		if got := shouldRelease(c.peak, c.sessions); got != c.want {
			t.Errorf("shouldRelease(peak %d, now %d) = %v, want %v", c.peak, c.sessions, got, c.want)
		}
	}
}
