package main

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// cpuUsec is the CPU time (user+system, µs) of every process that ever ran
// in the cgroup: cgroup v2's cpu.stat usage_usec, or cgroup v1's
// cpuacct.usage (ns). Processes that exited still count, which is what makes
// a forking server (vsftpd) measurable.
func cpuUsec(cg string) (int64, error) {
	if b, err := os.ReadFile(filepath.Join(cg, "cpu.stat")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "usage_usec "); ok {
				return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(cg, "cpuacct.usage"))
	if err != nil {
		return 0, fmt.Errorf("cgroup %s has neither cpu.stat usage_usec nor cpuacct.usage: %w", cg, err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return ns / 1000, err
}

// cpuMeter is the server's CPU time over one measurement.
type cpuMeter struct {
	cg    string
	procs int   // processes in the cgroup before
	usec0 int64 // CPU time before
}

// startCPU reads the server's processes and CPU time before a measurement.
func startCPU(cg string) (*cpuMeter, error) {
	pids, err := cgroupPIDs(cg)
	if err != nil {
		return nil, err
	}
	usec, err := cpuUsec(cg)
	if err != nil {
		return nil, err
	}
	return &cpuMeter{cg: cg, procs: len(pids), usec0: usec}, nil
}

// used waits (up to 5 s) for the session processes the measurement made to
// exit, so that their CPU time is counted, and returns the µs used since
// startCPU.
func (m *cpuMeter) used() (int64, error) {
	settle(m.cg, m.procs, 5*time.Second)
	usec, err := cpuUsec(m.cg)
	return usec - m.usec0, err
}

// cgroupPIDs lists the processes in the cgroup.
func cgroupPIDs(cg string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// pssKiB sums Pss over the cgroup's processes (from smaps_rollup).
// Processes that exit while being read are skipped.
func pssKiB(cg string) (total int64, procs int, err error) {
	pids, err := cgroupPIDs(cg)
	if err != nil {
		return 0, 0, err
	}
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
				n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err != nil {
					return 0, 0, fmt.Errorf("pid %d: Pss %q: %w", pid, v, err)
				}
				total += n
				procs++
				break
			}
		}
	}
	return total, procs, nil
}

// settle waits until the cgroup holds at most want processes (a forking
// server's session processes have exited) or the limit passes.
func settle(cg string, want int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		pids, err := cgroupPIDs(cg)
		if err != nil || len(pids) <= want {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Let the last exits and socket closes be accounted.
	time.Sleep(200 * time.Millisecond)
}

// percentile of sorted durations (nearest rank), in milliseconds.
func percentileMS(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// fmtNum prints a number with about three significant digits.
func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "n/a"
	case a == math.Trunc(a) && a < 1e9:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}
