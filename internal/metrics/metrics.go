// Package metrics exposes ftpsd's counters to Prometheus ([metrics] listen).
package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ftpsd/ftpsd/nft"
)

// Metrics holds ftpsd's collectors in a registry of its own, so that
// nothing registered globally by a dependency ends up on the endpoint.
type Metrics struct {
	reg *prometheus.Registry

	logins         *prometheus.CounterVec
	transfers      *prometheus.CounterVec
	bytes          *prometheus.CounterVec
	tlsFailures    *prometheus.CounterVec
	pinholesOpen   prometheus.Gauge
	pinholeLatency prometheus.Histogram
}

// New makes the collectors. A nil *Metrics is valid and counts nothing.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ftpsd_logins_total", Help: "Login attempts, by result (ok, failed).",
		}, []string{"result"}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ftpsd_transfers_total", Help: "File transfers ended, by direction (upload, download) and result (ok, failed).",
		}, []string{"direction", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ftpsd_transfer_bytes_total", Help: "File bytes transferred, by direction (upload, download).",
		}, []string{"direction"}),
		tlsFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ftpsd_tls_handshake_failures_total", Help: "TLS handshakes that failed, by connection (control, implicit, data).",
		}, []string{"conn"}),
		pinholesOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ftpsd_pinholes_open", Help: "Pinholes currently open in the firewall.",
		}),
		pinholeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ftpsd_pinhole_open_seconds",
			Help:    "Time to open a pinhole (the kernel has it when the PASV/EPSV reply leaves).",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10), // 10µs .. 2.6s
		}),
	}
	for _, r := range []string{"ok", "failed"} {
		m.logins.WithLabelValues(r)
	}
	for _, d := range []string{"upload", "download"} {
		m.bytes.WithLabelValues(d)
		for _, r := range []string{"ok", "failed"} {
			m.transfers.WithLabelValues(d, r)
		}
	}
	for _, c := range []string{"control", "implicit", "data"} {
		m.tlsFailures.WithLabelValues(c)
	}
	m.reg.MustRegister(m.logins, m.transfers, m.bytes, m.tlsFailures, m.pinholesOpen, m.pinholeLatency,
		// The runtime's memory classes (go_memory_classes_*) beside the
		// default Go metrics: after a burst of sessions they tell what
		// the process keeps (free pages not yet returned, span and GC
		// metadata, goroutine descriptors in heap objects) from what it
		// still uses.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsMemory)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Sources are the live values read at each scrape.
type Sources struct {
	Sessions  func() int   // live control connections
	FreePorts func() int   // passive ports no lease holds
	Firewall  nft.Firewall // for the guard's drop counter; nil when off
	// Restores counts the restores of the nftables table; nil when off.
	Restores func() int
	Log      *slog.Logger
}

// Observe registers the values read at scrape time.
func (m *Metrics) Observe(src Sources) {
	if m == nil {
		return
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ftpsd_sessions", Help: "Live control connections.",
		}, func() float64 { return float64(src.Sessions()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ftpsd_passive_ports_free", Help: "Passive ports not leased to a transfer.",
		}, func() float64 { return float64(src.FreePorts()) }),
	)
	if src.Firewall != nil {
		m.reg.MustRegister(&guardCollector{fw: src.Firewall, log: src.Log})
	}
	if src.Restores != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ftpsd_table_restores_total",
			Help: "Times ftpsd re-created its nftables table after something else removed or altered it.",
		}, func() float64 { return float64(src.Restores()) }))
	}
}

var (
	dropPacketsDesc = prometheus.NewDesc("ftpsd_guard_dropped_packets_total",
		"New connections into the passive range dropped by the guard chain (no pinhole).", nil, nil)
	dropBytesDesc = prometheus.NewDesc("ftpsd_guard_dropped_bytes_total",
		"Bytes of the packets counted by ftpsd_guard_dropped_packets_total.", nil, nil)
)

// guardCollector reads the kernel's counter at scrape time; a failed read
// leaves the metric out rather than reporting a false zero.
type guardCollector struct {
	fw  nft.Firewall
	log *slog.Logger
}

func (g *guardCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dropPacketsDesc
	ch <- dropBytesDesc
}

func (g *guardCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := g.fw.Stats()
	if err != nil {
		if g.log != nil {
			g.log.Warn("metrics: read the guard's drop counter", "err", err)
		}
		return
	}
	ch <- prometheus.MustNewConstMetric(dropPacketsDesc, prometheus.CounterValue, float64(st.DroppedPackets))
	ch <- prometheus.MustNewConstMetric(dropBytesDesc, prometheus.CounterValue, float64(st.DroppedBytes))
}

// Login counts a login attempt.
func (m *Metrics) Login(ok bool) {
	if m == nil {
		return
	}
	r := "failed"
	if ok {
		r = "ok"
	}
	m.logins.WithLabelValues(r).Inc()
}

// Transfer counts an ended transfer; direction is "upload" or "download".
func (m *Metrics) Transfer(direction string, bytes int64, ok bool) {
	if m == nil {
		return
	}
	r := "failed"
	if ok {
		r = "ok"
	}
	m.transfers.WithLabelValues(direction, r).Inc()
	m.bytes.WithLabelValues(direction).Add(float64(bytes))
}

// TLSFailure counts a failed handshake on a control, implicit or data connection.
func (m *Metrics) TLSFailure(conn string) {
	if m == nil {
		return
	}
	m.tlsFailures.WithLabelValues(conn).Inc()
}

// Listen binds the endpoint; call it before dropping privileges, in case
// the port needs them.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Serve answers /metrics on ln until ln is closed.
func (m *Metrics) Serve(ln net.Listener, log *slog.Logger) {
	mux := http.NewServeMux()
	// ContinueOnError: after run_as the kernel makes /proc/self/fd root's
	// (the process is no longer dumpable), so the process collector loses
	// its open-files count; the other metrics must still be served.
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Error("metrics endpoint stopped", "err", err)
	}
}

// Firewall wraps fw so that pinholes are counted and their opening timed.
// It measures around the firewall rather than in the port pool, so the
// histogram is the firewall's own latency.
func (m *Metrics) Firewall(fw nft.Firewall) nft.Firewall {
	if m == nil {
		return fw
	}
	return &timedFirewall{Firewall: fw, m: m, open: map[hole]struct{}{}}
}

// Unwrap returns the decorated firewall, for its optional interfaces
// (bans, restores).
func (f *timedFirewall) Unwrap() nft.Firewall { return f.Firewall }

type hole struct {
	client netip.Addr
	port   uint16
}

type timedFirewall struct {
	nft.Firewall
	m    *Metrics
	mu   sync.Mutex
	open map[hole]struct{}
}

func (t *timedFirewall) Open(p nft.Pinhole) error {
	start := time.Now()
	err := t.Firewall.Open(p)
	t.m.pinholeLatency.Observe(time.Since(start).Seconds())
	if err == nil {
		t.mu.Lock()
		t.open[hole{p.Client.Unmap(), p.Port}] = struct{}{}
		t.m.pinholesOpen.Set(float64(len(t.open)))
		t.mu.Unlock()
	}
	return err
}

func (t *timedFirewall) Close(client netip.Addr, port uint16) error {
	err := t.Firewall.Close(client, port)
	t.mu.Lock()
	delete(t.open, hole{client.Unmap(), port})
	t.m.pinholesOpen.Set(float64(len(t.open)))
	t.mu.Unlock()
	return err
}
