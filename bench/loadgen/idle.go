package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
)

// cmdIdle opens -n logged-in TLS sessions (AUTH TLS, login, PBSZ 0, PROT P),
// lets them sit idle, and records the server's PSS per session: the PSS sum
// over the cgroup's processes with the sessions open, less the sum before.
func cmdIdle(args []string) error {
	fs, cm, t := flags("idle")
	n := fs.Int("n", 200, "idle sessions")
	par := fs.Int("c", 8, "sessions opened in parallel")
	wait := fs.Duration("settle", 3*time.Second, "idle time before memory is read")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cm.check(true); err != nil {
		return err
	}
	if err := t.check(); err != nil {
		return err
	}
	if *n < 1 || *n > 5000 {
		return fmt.Errorf("-n must be 1..5000")
	}
	base, baseProcs, err := pssKiB(cm.cgroup)
	if err != nil {
		return err
	}
	clients := make([]*ftpclient.Client, *n)
	errs := make([]error, *n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range *par {
		wg.Go(func() {
			for i := range next {
				clients[i], errs[i] = t.login(15 * time.Second)
			}
		})
	}
	for i := range *n {
		next <- i
	}
	close(next)
	wg.Wait()
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Quit()
			}
		}
	}()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("session %d of %d: %w", i+1, *n, err)
		}
	}
	time.Sleep(*wait)
	pss, procs, err := pssKiB(cm.cgroup)
	if err != nil {
		return err
	}
	// Every session must have been alive while memory was read.
	for i, c := range clients {
		if _, err := c.Expect(200, "NOOP"); err != nil {
			return fmt.Errorf("session %d went away while idle: %w", i+1, err)
		}
	}
	return emit(cm.out, Result{Test: "idle", Server: cm.server, Run: cm.run, Values: map[string]float64{
		"sessions":          float64(*n),
		"pss_base_kib":      float64(base),
		"pss_kib":           float64(pss),
		"procs_base":        float64(baseProcs),
		"procs":             float64(procs),
		"pss_kib_per_sess":  float64(pss-base) / float64(*n),
		"procs_per_session": float64(procs-baseProcs) / float64(*n),
	}})
}
