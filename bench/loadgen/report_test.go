package main

import (
	"strings"
	"testing"
)

// The paired row divides the two servers' results of the same run and
// pair, and judges the median of those ratios, not the ratio of medians.
func TestPairedRow(t *testing.T) {
	var rs []Result
	add := func(server string, run, pair int, v float64) {
		rs = append(rs, Result{Test: "mirror-up-pair", Server: server, Run: run,
			Values: map[string]float64{"files_per_s": v, "pair": float64(pair)}})
	}
	// Run 1: ratios 2, 1.2, 1.1; run 2: 1.0, 1.3, and a pair vsftpd never
	// measured, which must not count.
	add(vs, 1, 1, 50)
	add(fd, 1, 1, 100)
	add(vs, 1, 2, 100)
	add(fd, 1, 2, 120)
	add(vs, 1, 3, 200)
	add(fd, 1, 3, 220)
	add(vs, 2, 1, 100)
	add(fd, 2, 1, 100)
	add(vs, 2, 2, 100)
	add(fd, 2, 2, 130)
	add(fd, 2, 3, 999)
	m := metric{test: "mirror-up-pair", key: "files_per_s", label: "paired",
		target: func(_, r float64) bool { return r >= 1.5 }, targetText: "≥ 1.5×"}
	row := pairedRow(m, rs, false)
	// Ratios 1.0, 1.1, 1.2, 1.3, 2: median 1.2 (the medians' ratio would be
	// 120/100); per run 1.2 and 1.15.
	for _, want := range []string{"| 1.20 (1.20, 1.15), 5 pairs |", "**not met**"} {
		if !strings.Contains(row, want) {
			t.Errorf("row %q lacks %q", row, want)
		}
	}
	if row := pairedRow(m, rs[:2], false); !strings.Contains(row, "| 2, 1 pairs |") || !strings.Contains(row, "**met**") {
		t.Errorf("one pair of ratio 2: %q", row)
	}
	if row := pairedRow(m, nil, false); !strings.Contains(row, "not measured") {
		t.Errorf("no pairs: %q", row)
	}
}
