package main

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// cmdPasv measures, on one logged-in session with no other load, the PASV
// round trip (PASV sent to 227 read: ftpsd inserts its pinhole in between)
// and the reply-to-data-connection latency (227 read to the data
// connection's TCP handshake completed: a pinhole that were not in place yet
// would show here as a dropped SYN and a retransmission a second later).
// Each sample then lists a small directory so the port is used and freed.
func cmdPasv(args []string) error {
	fs, cm, t := flags("pasv")
	n := fs.Int("n", 500, "samples")
	warm := fs.Int("warmup", 20, "samples discarded first")
	if err := parse(fs, args, cm, t, false); err != nil {
		return err
	}
	if *n < 1 || *n > 100_000 {
		return fmt.Errorf("-n must be 1..100000")
	}
	c, err := t.login(10 * time.Second)
	if err != nil {
		return err
	}
	defer c.Quit()
	var pasv, conn []time.Duration
	deadline := time.Now().Add(5 * time.Minute)
	for i := range *warm + *n {
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %d samples (5 min)", i)
		}
		tm, err := transfer(c, "LIST "+t.listDir, io.Discard)
		if err != nil {
			return fmt.Errorf("sample %d: %w", i+1, err)
		}
		if i >= *warm {
			pasv = append(pasv, tm.pasv)
			conn = append(conn, tm.connect)
		}
	}
	slices.Sort(pasv)
	slices.Sort(conn)
	return emit(cm.out, Result{Test: "pasv", Server: cm.server, Run: cm.run, Values: map[string]float64{
		"samples":        float64(len(pasv)),
		"pasv_p50_ms":    percentileMS(pasv, 50),
		"pasv_p95_ms":    percentileMS(pasv, 95),
		"connect_p50_ms": percentileMS(conn, 50),
		"connect_p95_ms": percentileMS(conn, 95),
		"connect_max_ms": percentileMS(conn, 100),
	}})
}
