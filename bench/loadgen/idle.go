package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
)

// cmdIdle opens -n logged-in TLS sessions (AUTH TLS, login, PBSZ 0, PROT P),
// lets them sit idle, and records the server's PSS per session: the PSS sum
// over the cgroup's processes with the sessions open, less the sum before;
// also how fast they opened and, with -after, the PSS that long after they
// all closed (does the server give the memory back?).
func cmdIdle(args []string) error {
	fs, cm, t := flags("idle")
	n := fs.Int("n", 200, "idle sessions")
	par := fs.Int("c", 8, "sessions opened in parallel")
	wait := fs.Duration("settle", 3*time.Second, "idle time before memory is read")
	after := fs.Duration("after", 0, "read the PSS again this long after the sessions closed (0: not)")
	test := fs.String("test", "idle", "test name in the results")
	if err := parse(fs, args, cm, t, true); err != nil {
		return err
	}
	if *n < 1 || *n > 20000 {
		return fmt.Errorf("-n must be 1..20000")
	}
	base, baseProcs, err := pssKiB(cm.cgroup)
	if err != nil {
		return err
	}
	// With -after, also the size of a server that has served one session
	// (its code for TLS, logins and transfers paged in) and is idle again.
	warm := int64(0)
	if *after > 0 {
		c, err := t.login(15 * time.Second)
		if err != nil {
			return fmt.Errorf("warm-up session: %w", err)
		}
		c.Quit()
		settle(cm.cgroup, baseProcs, 5*time.Second)
		time.Sleep(time.Second)
		if warm, _, err = pssKiB(cm.cgroup); err != nil {
			return err
		}
	}
	clients := make([]*ftpclient.Client, *n)
	errs := make([]error, *n)
	next := make(chan int)
	var wg sync.WaitGroup
	opening := time.Now()
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
	openSecs := time.Since(opening).Seconds()
	quitAll := func() {
		var qg sync.WaitGroup
		for i := range *par {
			qg.Go(func() {
				for j := i; j < len(clients); j += *par {
					if clients[j] != nil {
						clients[j].Quit()
						clients[j] = nil
					}
				}
			})
		}
		qg.Wait()
	}
	defer quitAll()
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
	values := map[string]float64{
		"sessions":          float64(*n),
		"open_per_s":        float64(*n) / openSecs,
		"pss_mib":           float64(pss) / 1024,
		"pss_base_kib":      float64(base),
		"pss_kib":           float64(pss),
		"procs_base":        float64(baseProcs),
		"procs":             float64(procs),
		"pss_kib_per_sess":  float64(pss-max(base, warm)) / float64(*n),
		"procs_per_session": float64(procs-baseProcs) / float64(*n),
	}
	if *after > 0 {
		quitAll()
		closed := time.Now()
		settle(cm.cgroup, baseProcs, *after)
		time.Sleep(time.Until(closed.Add(*after)))
		pssAfter, _, err := pssKiB(cm.cgroup)
		if err != nil {
			return err
		}
		values["pss_after_kib"] = float64(pssAfter)
		values["after_over_base"] = float64(pssAfter) / float64(base)
		values["pss_warm_kib"] = float64(warm)
		values["after_over_warm"] = float64(pssAfter) / float64(warm)
		values["after_seconds"] = after.Seconds()
	}
	return emit(cm.out, Result{Test: *test, Server: cm.server, Run: cm.run, Values: values})
}
