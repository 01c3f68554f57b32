package nft

import (
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/internal/testns"
	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// benchFW sets up a table in a fresh namespace with a timeout long enough
// that nothing expires during the run.
func benchFW(b *testing.B) *NFTables { return benchFWEvents(b, true) }

// benchFWEvents is benchFW with the table watcher's event subscription on
// or off (the periodic check always runs), to show what watching costs.
func benchFWEvents(b *testing.B, events bool) *NFTables {
	b.Helper()
	ns := testns.New(b)
	fw, err := Setup(Config{PortMin: 50000, PortMax: 50999, Timeout: 10 * time.Minute, NetNSFd: ns.FD(), noEvents: !events})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = fw.Release() })
	return fw
}

// prefill adds n IPv4 elements (10.x.y.z . 50999) in large batches, so the
// benchmark measures Open with a big set present.
func prefill(b *testing.B, fw *NFTables, n int) {
	b.Helper()
	const chunk = 1000
	for start := 0; start < n; start += chunk {
		var elems []nftables.SetElement
		for i := start; i < min(start+chunk, n); i++ {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			_, key, err := fw.element(a, 50999)
			if err != nil {
				b.Fatal(err)
			}
			elems = append(elems, nftables.SetElement{Key: key, Timeout: fw.cfg.Timeout})
		}
		if err := fw.flush(func() error { return fw.conn.SetAddElements(fw.set4, elems) }); err != nil {
			b.Fatalf("prefill: %v", err)
		}
	}
	got, err := fw.List()
	if err != nil || len(got) != n {
		b.Fatalf("prefill: List = %d elements, %v; want %d", len(got), err, n)
	}
}

// cost is where a run started: the kernel's ruleset generation and the
// process's CPU time.
type cost struct {
	gen uint32
	cpu time.Duration
}

func startCost(b *testing.B, fw *NFTables) cost {
	return cost{gen: generation(b, fw), cpu: cpuTime(b)}
}

// report reports committed transactions per iteration (one Open and one
// Close each: 2 without group commit, less the more changes share one) and
// the process's CPU time per iteration. CPU time, unlike ns/op, includes
// what goroutine hand-offs burn on other threads (futex wakes, spinning Ms).
func (c cost) report(b *testing.B, fw *NFTables) {
	cpu := cpuTime(b) - c.cpu
	b.ReportMetric(float64(generation(b, fw)-c.gen)/float64(b.N), "txns/op")
	b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportLatency(b *testing.B, name string, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Microsecond)
	}
	b.ReportMetric(q(0.50), name+"-p50-µs")
	b.ReportMetric(q(0.99), name+"-p99-µs")
}

func benchSerial(b *testing.B, present int) { benchSerialFW(b, benchFW(b), present) }

func benchSerialFW(b *testing.B, fw *NFTables, present int) {
	if present > 0 {
		prefill(b, fw, present)
	}
	client := netip.MustParseAddr("192.0.2.1")
	open := make([]time.Duration, 0, b.N)
	closeLat := make([]time.Duration, 0, b.N)
	start := startCost(b, fw)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		port := uint16(50000 + i%999)
		t0 := time.Now()
		if err := fw.Open(Pinhole{Client: client, Port: port, Label: "user=bench session=1"}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := fw.Close(client, port); err != nil {
			b.Fatal(err)
		}
		open = append(open, t1.Sub(t0))
		closeLat = append(closeLat, time.Since(t1))
	}
	b.StopTimer()
	start.report(b, fw)
	reportLatency(b, "open", open)
	reportLatency(b, "close", closeLat)
}

// BenchmarkOpenClose is one pinhole's life with an empty set.
func BenchmarkOpenClose(b *testing.B) { benchSerial(b, 0) }

// BenchmarkOpenCloseUnwatched is BenchmarkOpenClose without the event
// subscription: the difference is what watching the table costs the
// pinhole path (events for elements are filtered out in the kernel).
func BenchmarkOpenCloseUnwatched(b *testing.B) { benchSerialFW(b, benchFWEvents(b, false), 0) }

// BenchmarkOpenClose10k is the same with 10,000 other elements present: the
// hash set should make it no slower.
func BenchmarkOpenClose10k(b *testing.B) { benchSerial(b, 10000) }

// BenchmarkOpenCloseParallel16 has 16 goroutines opening and closing their
// own pinholes on the shared connection.
func BenchmarkOpenCloseParallel16(b *testing.B) {
	const goroutines = 16
	fw := benchFW(b)
	b.SetParallelism((goroutines + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var (
		next int32
		mu   sync.Mutex
		all  []time.Duration
	)
	start := startCost(b, fw)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := atomic.AddInt32(&next, 1)
		client := netip.AddrFrom4([4]byte{192, 0, 2, byte(id)})
		var lat []time.Duration
		for i := 0; pb.Next(); i++ {
			port := uint16(50000 + i%999)
			t0 := time.Now()
			if err := fw.Open(Pinhole{Client: client, Port: port, Label: fmt.Sprintf("g=%d", id)}); err != nil {
				b.Error(err)
				return
			}
			lat = append(lat, time.Since(t0))
			if err := fw.Close(client, port); err != nil {
				b.Error(err)
				return
			}
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	})
	b.StopTimer()
	start.report(b, fw)
	reportLatency(b, "open", all)
	b.ReportMetric(float64(next), "goroutines")
}

// BenchmarkCloseMissing is the late path: deleting an element that has
// already expired (ENOENT, an aborted transaction in the kernel).
func BenchmarkCloseMissing(b *testing.B) {
	fw := benchFW(b)
	client := netip.MustParseAddr("192.0.2.1")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := fw.Close(client, 50000); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportLatency(b, "close", lat)
}

// BenchmarkRestore measures how long the passive range is without its
// table (and live pinholes) after something else removes or empties it:
// from just before the disrupting transaction to the commit of the
// restore. It cycles through deleting the table, `flush ruleset` and
// emptying the guard chain, with 100 live pinholes to put back each time.
// Run with -benchtime 200x or more for a meaningful p99.
func BenchmarkRestore(b *testing.B) {
	ns := testns.New(b)
	restored := make(chan Restore, 1)
	fw, err := Setup(Config{PortMin: 50000, PortMax: 50999, Timeout: 10 * time.Minute, NetNSFd: ns.FD(),
		OnRestore: func(r Restore) { restored <- r }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = fw.Release() })
	for i := range 100 {
		if err := fw.Open(Pinhole{Client: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), Port: uint16(50000 + i)}); err != nil {
			b.Fatal(err)
		}
	}
	other, err := dial(fw.cfg, true)
	if err != nil {
		b.Fatal(err)
	}
	defer other.CloseLasting()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		switch i % 3 {
		case 0:
			other.DelTable(fw.table)
		case 1:
			other.FlushRuleset()
		case 2:
			other.FlushChain(fw.chain)
		}
		t0 := time.Now()
		if err := other.Flush(); err != nil {
			b.Fatalf("disrupt %d: %v", i, err)
		}
		select {
		case r := <-restored:
			lat = append(lat, r.At.Sub(t0))
		case <-time.After(10 * time.Second):
			b.Fatalf("disruption %d not restored within 10s", i)
		}
	}
	b.StopTimer()
	if got := len(mustListB(b, fw)); got != 100 {
		b.Fatalf("%d pinholes after the restores, want 100", got)
	}
	reportLatency(b, "restore", lat)
}

func mustListB(b *testing.B, fw *NFTables) []Pinhole {
	l, err := fw.List()
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkFlushOverhead is the commit path without the kernel: changes
// that queue nothing, so Flush has nothing to send. What is left is the
// cost of handing a change to the group commit and getting its result,
// which the kernel's share hides in the benchmarks above.
func BenchmarkFlushOverhead(b *testing.B) {
	fw := benchFW(b)
	c0 := cpuTime(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := fw.flush(func() error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-c0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
}

// BenchmarkFlushOverheadParallel16 is BenchmarkFlushOverhead with 16
// goroutines.
func BenchmarkFlushOverheadParallel16(b *testing.B) {
	fw := benchFW(b)
	b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	c0 := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := fw.flush(func() error { return nil }); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-c0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
}
