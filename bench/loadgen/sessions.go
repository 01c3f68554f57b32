package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// cmdSessions measures the session rate: -c clients loop for -d, each
// session = connect, AUTH TLS, USER/PASS, PBSZ/PROT, PASV, LIST, QUIT.
func cmdSessions(args []string) error {
	fs, cm, t := flags("sessions")
	driver := fs.String("driver", "go", `"go" (this program's FTPS client) or "curl"`)
	clients := fs.Int("c", 16, "parallel clients")
	dur := fs.Duration("d", 20*time.Second, "how long clients start new sessions")
	maxSessions := fs.Int("max", 1_000_000, "upper bound on sessions in total")
	curlBin := fs.String("curl", "curl", "curl binary (driver curl)")
	if err := parse(fs, args, cm, t, true); err != nil {
		return err
	}
	var one func(ctx context.Context) error
	switch *driver {
	case "go":
		one = func(context.Context) error { return goSession(t) }
	case "curl":
		one = func(ctx context.Context) error { return curlSession(ctx, *curlBin, t) }
	default:
		return fmt.Errorf("unknown driver %q", *driver)
	}
	meter, err := startCPU(cm.cgroup)
	if err != nil {
		return err
	}
	// A session still running at the deadline may finish; none may start
	// after it, and none may run past it by more than its own timeout.
	ctx, cancel := context.WithTimeout(context.Background(), *dur+30*time.Second)
	defer cancel()
	start := time.Now()
	stop := start.Add(*dur)
	var (
		mu       sync.Mutex
		ok, fail int
		lat      []time.Duration
		firstErr string
		started  int
	)
	var wg sync.WaitGroup
	for range *clients {
		wg.Go(func() {
			for time.Now().Before(stop) && ctx.Err() == nil {
				mu.Lock()
				if started >= *maxSessions {
					mu.Unlock()
					return
				}
				started++
				mu.Unlock()
				s0 := time.Now()
				err := one(ctx)
				d := time.Since(s0)
				mu.Lock()
				if err != nil {
					fail++
					if firstErr == "" {
						firstErr = err.Error()
					}
				} else {
					ok++
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu, err := meter.used()
	if err != nil {
		return err
	}
	slices.Sort(lat)
	r := Result{Test: "sessions-" + *driver, Server: cm.server, Run: cm.run, Values: map[string]float64{
		"sessions":        float64(ok),
		"failed":          float64(fail),
		"seconds":         elapsed.Seconds(),
		"sessions_per_s":  float64(ok) / elapsed.Seconds(),
		"cpu_ms_per_sess": float64(cpu) / 1000 / float64(max(ok, 1)),
		"session_p50_ms":  percentileMS(lat, 50),
		"session_p95_ms":  percentileMS(lat, 95),
	}}
	if firstErr != "" {
		r.Info = map[string]string{"first_error": firstErr}
	}
	if ok == 0 {
		emit(cm.out, r)
		return fmt.Errorf("no session succeeded: %s", firstErr)
	}
	return emit(cm.out, r)
}

// goSession is one session with the Go client.
func goSession(t *target) error {
	c, err := t.login(10 * time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := transfer(c, "LIST "+t.listDir, io.Discard); err != nil {
		return err
	}
	return c.Quit()
}

// curlSession is one session with curl: it lists the directory over
// explicit FTPS with PASV (not EPSV), as the Go client does, and quits.
func curlSession(ctx context.Context, bin string, t *target) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, curlArgs(t, "-o", "/dev/null",
		fmt.Sprintf("ftp://%s/%s/", t.addr, t.listDir))...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("curl: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return err
	}
	return nil
}

// curlArgs are the options every curl run shares: explicit FTPS required,
// certificate not checked (self-signed), PASV, the client address, and the
// same TLS parameters with both servers: one cipher suite (OpenSSL would
// otherwise pick AES-256-GCM with vsftpd and Go AES-128-GCM with ftpsd) and
// P-256 key exchange (the only group Debian's vsftpd accepts; offering
// X25519 first would cost vsftpd a HelloRetryRequest round trip).
func curlArgs(t *target, extra ...string) []string {
	args := []string{"-sS", "--ssl-reqd", "-k", "--disable-epsv",
		"--interface", t.src,
		"--tls13-ciphers", "TLS_AES_128_GCM_SHA256",
		"--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256",
		"--curves", "prime256v1",
		"--connect-timeout", "10",
		"-u", t.user + ":" + t.pass}
	return append(args, extra...)
}
