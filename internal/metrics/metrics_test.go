package metrics

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/ftpsd/ftpsd/nft"
)

// failing refuses every pinhole.
type failing struct{ nft.Off }

func (failing) Open(nft.Pinhole) error { return errors.New("no") }

func TestFirewallDecorator(t *testing.T) {
	m := New()
	fw := m.Firewall(nft.Off{})
	a := netip.MustParseAddr("192.0.2.1")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	fw.Open(nft.Pinhole{Client: a, Port: 50000})
	fw.Open(nft.Pinhole{Client: a, Port: 50001})
	if got := gather(t, m, "ftpsd_pinholes_open"); got != 2 {
		t.Fatalf("pinholes open %v, want 2", got)
	}
	fw.Close(mapped, 50000) // the same client, seen through a dual-stack socket
	fw.Close(a, 50000)      // twice: still one fewer
	if got := gather(t, m, "ftpsd_pinholes_open"); got != 1 {
		t.Fatalf("pinholes open %v, want 1", got)
	}
	bad := m.Firewall(failing{})
	if err := bad.Open(nft.Pinhole{Client: a, Port: 50002}); err == nil {
		t.Fatal("error lost by the decorator")
	}
	if got := gather(t, m, "ftpsd_pinholes_open"); got != 1 {
		t.Fatalf("a failed open counted: %v", got)
	}
	if n := gather(t, m, "ftpsd_pinhole_open_seconds"); n != 3 {
		t.Fatalf("%v openings timed, want 3", n)
	}
}

// The restore counter is read at scrape time from the firewall's count and
// is absent when nothing counts restores (firewall off).
func TestTableRestores(t *testing.T) {
	m := New()
	m.Observe(Sources{Sessions: func() int { return 0 }, FreePorts: func() int { return 0 }})
	if mfs, err := m.reg.Gather(); err != nil {
		t.Fatal(err)
	} else {
		for _, mf := range mfs {
			if mf.GetName() == "ftpsd_table_restores_total" {
				t.Fatal("restore counter registered without a source")
			}
		}
	}
	restores := 0
	m = New()
	m.Observe(Sources{Sessions: func() int { return 0 }, FreePorts: func() int { return 0 }, Restores: func() int { return restores }})
	restores = 2
	if got := gather(t, m, "ftpsd_table_restores_total"); got != 2 {
		t.Fatalf("table restores %v, want 2", got)
	}
}

func TestNilMetricsCountsNothing(t *testing.T) {
	var m *Metrics
	m.Login(true)
	m.Transfer("upload", 1, true)
	m.TLSFailure("control")
	m.Observe(Sources{})
	if fw := m.Firewall(nft.Off{}); fw != (nft.Off{}) {
		t.Fatal("nil Metrics wrapped the firewall")
	}
}

// gather reads one metric: a gauge's or counter's value or a histogram's sample count.
// The runtime's memory classes are on the endpoint (bench/README.md,
// "Findings", reads them to tell what stays after a burst of sessions).
func TestMemoryClasses(t *testing.T) {
	m := New()
	for _, name := range []string{"go_memory_classes_heap_released_bytes", "go_memory_classes_heap_free_bytes",
		"go_memory_classes_metadata_mspan_free_bytes", "go_memory_classes_metadata_other_bytes", "go_memory_classes_other_bytes"} {
		gather(t, m, name) // fails if absent
	}
	if gather(t, m, "go_memory_classes_heap_objects_bytes") <= 0 {
		t.Error("go_memory_classes_heap_objects_bytes is 0")
	}
	if gather(t, m, "go_goroutines") < 1 {
		t.Error("the default Go metrics are gone")
	}
}

func gather(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		met := mf.GetMetric()[0]
		if h := met.GetHistogram(); h != nil {
			return float64(h.GetSampleCount())
		}
		if c := met.GetCounter(); c != nil {
			return c.GetValue()
		}
		return met.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}
