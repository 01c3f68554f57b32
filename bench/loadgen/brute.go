package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
)

// cmdBrute measures one brute-force phase (bench/brute.sh): -c attacker
// connections from -attacker each loop connect, AUTH TLS, USER, wrong PASS
// for -d, while the legitimate client (-src) logs in over and over; with
// -c 0 it measures the legitimate logins alone (idle). It reports the
// attacker's attempt rate (all of it, and before and after the first
// refused connection, i.e. the ban) and the legitimate login latency.
func cmdBrute(args []string) error {
	fs, cm, t := flags("brute")
	attacker := fs.String("attacker", "", "attacker source address")
	conns := fs.Int("c", 20, "parallel attacker connections (0: no attack, idle baseline)")
	dur := fs.Duration("d", 10*time.Second, "how long the phase runs")
	phase := fs.String("phase", "", "phase label in the results")
	if err := parse(fs, args, cm, t, false); err != nil {
		return err
	}
	if *conns > 0 && *attacker == "" {
		return errors.New("-attacker is required with -c > 0")
	}
	if *conns < 0 || *conns > 200 || *dur <= 0 || *dur > 10*time.Minute {
		return errors.New("-c must be 0..200 and -d at most 10m")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	start := time.Now()

	var (
		mu        sync.Mutex
		attempts  []time.Duration // when each wrong password was sent (answered by a 530 or a hang-up), since start
		refusedAt []time.Duration // when each connection was refused (closed unanswered, or not accepted)
		other     atomic.Int64
	)
	var wg sync.WaitGroup
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				code, sent, err := wrongLogin(*attacker, t.addr, t.user)
				now := time.Since(start)
				if !sent.IsZero() {
					now = sent.Sub(start)
				}
				mu.Lock()
				switch {
				case code == 530 || code == passNoReply:
					attempts = append(attempts, now)
				case refusedConn(err):
					refusedAt = append(refusedAt, now)
				default:
					other.Add(1)
				}
				mu.Unlock()
				if refusedConn(err) && ctx.Err() == nil {
					// A real attacker retries at once; a short pause keeps
					// this client from spinning on its own core.
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	var lat []time.Duration
	var failed int
	for ctx.Err() == nil {
		t0 := time.Now()
		c, err := t.login(10 * time.Second)
		if err != nil {
			failed++
		} else {
			lat = append(lat, time.Since(t0))
			c.Quit()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	v := map[string]float64{
		"legit_logins":       float64(len(lat)),
		"legit_failed":       float64(failed),
		"legit_login_p50_ms": percentileMS(lat, 50),
		"legit_login_p95_ms": percentileMS(lat, 95),
		"attempts":           float64(len(attempts)),
		"attempts_per_s":     float64(len(attempts)) / elapsed,
		"refused":            float64(len(refusedAt)),
		"other_errors":       float64(other.Load()),
		"duration_s":         elapsed,
		"attacker_conns":     float64(*conns),
	}
	if len(refusedAt) > 0 {
		sort.Slice(refusedAt, func(i, j int) bool { return refusedAt[i] < refusedAt[j] })
		banAt := refusedAt[0]
		var before, after int
		for _, a := range attempts {
			if a <= banAt {
				before++
			} else {
				after++
			}
		}
		v["ban_after_s"] = banAt.Seconds()
		v["attempts_before_ban"] = float64(before)
		v["attempts_after_ban"] = float64(after)
		if banAt > 0 {
			v["attempts_per_s_before_ban"] = float64(before) / banAt.Seconds()
		}
		if rest := elapsed - banAt.Seconds(); rest > 0 {
			v["attempts_per_s_after_ban"] = float64(after) / rest
			v["refused_per_s_after_ban"] = float64(len(refusedAt)) / rest
		}
	}
	return emit(cm.out, Result{Test: "brute", Server: cm.server, Run: cm.run, Values: v, Info: map[string]string{"phase": *phase}})
}

// errRefused is a connection closed before the greeting: what ftpsd does
// to a banned source at accept (with the firewall holding bans, the
// connection attempt itself times out or is reset).
var errRefused = errors.New("connection refused before the greeting")

func refusedConn(err error) bool {
	var ne net.Error
	return errors.Is(err, errRefused) || (errors.As(err, &ne) && ne.Timeout())
}

// wrongLogin makes one login attempt with a wrong password and returns the
// reply code to PASS and when PASS was sent.
func wrongLogin(src, addr, user string) (int, time.Time, error) {
	var sent time.Time
	c, rep, err := ftpclient.Dial(dialer(src, time.Second), addr, clientTLS(), false)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 0, sent, err
		}
		return 0, sent, fmt.Errorf("%w: %v", errRefused, err)
	}
	defer c.Close()
	c.Timeout = 20 * time.Second // the tarpit holds the reply back up to 8 s
	if rep.Code != 220 {
		return rep.Code, sent, fmt.Errorf("greeting %v", rep)
	}
	if err := c.AuthTLS(); err != nil {
		return 0, sent, err
	}
	if _, err := c.Cmd("USER %s", user); err != nil {
		return 0, sent, err
	}
	sent = time.Now()
	rep, err = c.Cmd("PASS not-the-password")
	if err != nil {
		// The password reached the server, which hung up instead of
		// answering (the ban closes the source's sessions): still an attempt.
		return passNoReply, sent, err
	}
	return rep.Code, sent, nil
}

// passNoReply is wrongLogin's code for a PASS the server closed the
// connection on.
const passNoReply = -1

// cmdBruteReport writes the brute-force results of a file as a markdown table.
func cmdBruteReport(args []string) error {
	fs := flag.NewFlagSet("brute-report", flag.ContinueOnError)
	in := fs.String("in", "", "results file (JSON lines)")
	md := fs.String("md", "", "write the markdown table here (default: standard output only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	results, err := readResults(*in)
	if err != nil {
		return err
	}
	var rows []Result
	for _, r := range results {
		if r.Test == "brute" {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return fmt.Errorf("%s: no brute results", *in)
	}
	idle := 0.0
	for _, r := range rows {
		if r.Values["attacker_conns"] == 0 {
			idle = r.Values["legit_login_p50_ms"]
		}
	}
	num := func(r Result, k string) string {
		v, ok := r.Values[k]
		if !ok {
			return "–"
		}
		return fmtNum(v)
	}
	var b strings.Builder
	b.WriteString("| Phase | Attacker connections | Wrong passwords tried (per s) | Before the ban (per s) | Ban after (s) | After the ban (per s) | Connections refused after the ban (per s) | Legitimate logins (failed) | Login p50 ms | p95 ms | p50 / idle p50 |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		ratio := "–"
		if idle > 0 {
			ratio = fmtNum(r.Values["legit_login_p50_ms"] / idle)
		}
		fmt.Fprintf(&b, "| %s | %s | %s (%s) | %s | %s | %s | %s | %s (%s) | %s | %s | %s |\n",
			r.Info["phase"], num(r, "attacker_conns"), num(r, "attempts"), num(r, "attempts_per_s"),
			num(r, "attempts_per_s_before_ban"), num(r, "ban_after_s"), num(r, "attempts_per_s_after_ban"),
			num(r, "refused_per_s_after_ban"), num(r, "legit_logins"), num(r, "legit_failed"),
			num(r, "legit_login_p50_ms"), num(r, "legit_login_p95_ms"), ratio)
	}
	fmt.Print(b.String())
	if *md != "" {
		return os.WriteFile(*md, []byte(b.String()), 0o644)
	}
	return nil
}
