package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// cmdAttack: a legitimate client logs in and holds a PASV reply without
// connecting; meanwhile the attacker address sweeps the whole passive range
// with one SYN per port (short connect timeout, bounded concurrency). Every
// connection the attacker gets is kept, TLS-handshaken and read from, as a
// data thief would. Then the legitimate client connects to its port and
// downloads a file. Recorded: how many attacker SYNs reached the server's
// TCP stack (an nftables counter in a chain that runs after the host's and
// ftpsd's chains), which ports answered, whether the pending one did, how
// many bytes the attacker got, and whether the legitimate download was
// complete and correct.
func cmdAttack(args []string) error {
	fs, cm, t := flags("attack")
	attacker := fs.String("attacker", "", "attacker source address")
	portRange := fs.String("range", "", "passive port range lo-hi to sweep")
	srvNetns := fs.String("srv-netns", "", "server network namespace (path), where the counters live")
	counter := fs.String("counter", "", "named nftables counter in table inet benchcount counting attacker SYNs")
	guard := fs.String("guard", "", `ftpsd's guard chain as "table chain" (its drop counter is read too), or empty`)
	remote := fs.String("remote", "small.bin", "file the legitimate client downloads")
	local := fs.String("local", "", "local copy of that file, to check the download")
	conc := fs.Int("c", 100, "parallel SYNs in flight")
	probe := fs.Duration("probe-timeout", 400*time.Millisecond, "connect timeout per port (a dropped SYN times out)")
	hold := fs.Duration("hold", 4*time.Second, "how long the attacker keeps and reads its connections after the sweep")
	if err := parse(fs, args, cm, t, false); err != nil {
		return err
	}
	lo, hi, err := parseRange(*portRange)
	if err != nil {
		return err
	}
	if *attacker == "" || *srvNetns == "" || *counter == "" || *local == "" {
		return errors.New("-attacker, -srv-netns, -counter and -local are required")
	}
	want, err := os.ReadFile(*local)
	if err != nil {
		return err
	}
	nft := func(a ...string) (string, error) {
		out, err := exec.Command("nsenter", append([]string{"--net=" + *srvNetns, "nft"}, a...)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("nft %s: %v: %s", strings.Join(a, " "), err, out)
		}
		return string(out), nil
	}
	packets := regexp.MustCompile(`packets (\d+)`)
	readCounter := func(reset bool) (int, error) {
		verb := "list"
		if reset {
			verb = "reset"
		}
		out, err := nft(verb, "counter", "inet", "benchcount", *counter)
		if err != nil {
			return 0, err
		}
		m := packets.FindStringSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("no packet count in %q", out)
		}
		return strconv.Atoi(m[1])
	}
	guardDrops := func() (int, error) {
		f := strings.Fields(*guard)
		if len(f) != 2 {
			return 0, nil
		}
		out, err := nft("list", "chain", "inet", f[0], f[1])
		if err != nil {
			return 0, err
		}
		m := regexp.MustCompile(`counter packets (\d+) bytes \d+ drop`).FindStringSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("no drop counter in %q", out)
		}
		return strconv.Atoi(m[1])
	}

	// 1. The legitimate client's PASV reply, held unconnected.
	legit, err := t.login(10 * time.Second)
	if err != nil {
		return fmt.Errorf("legitimate client: %w", err)
	}
	defer legit.Close()
	_, pending, err := legit.PASV()
	if err != nil {
		return fmt.Errorf("legitimate client: %w", err)
	}
	if _, err := readCounter(true); err != nil {
		return err
	}
	drops0, err := guardDrops()
	if err != nil {
		return err
	}

	// 2. The sweep.
	var (
		mu                       sync.Mutex
		open                     []int
		refused, timedOut, other int
		conns                    []net.Conn
	)
	d := net.Dialer{Timeout: *probe, LocalAddr: &net.TCPAddr{IP: net.ParseIP(*attacker)}}
	ports := make(chan int)
	var wg sync.WaitGroup
	sweep0 := time.Now()
	for range max(1, min(*conc, 1000)) {
		wg.Go(func() {
			for p := range ports {
				c, err := d.Dial("tcp", net.JoinHostPort(t.host(), strconv.Itoa(p)))
				mu.Lock()
				switch {
				case err == nil:
					open = append(open, p)
					conns = append(conns, c)
				case isTimeout(err):
					timedOut++
				case errors.Is(err, syscall.ECONNREFUSED):
					refused++
				default:
					other++
				}
				mu.Unlock()
			}
		})
	}
	for p := int(lo); p <= int(hi); p++ {
		ports <- p
	}
	close(ports)
	wg.Wait()
	sweepTime := time.Since(sweep0)
	// The counter is read once the last probe has had its chance.
	syns, err := readCounter(false)
	if err != nil {
		return err
	}
	drops1, err := guardDrops()
	if err != nil {
		return err
	}

	// 3. The attacker handles what it got as a data thief would.
	var stolen atomic.Int64
	var tlsOK atomic.Int64
	var thieves sync.WaitGroup
	holdUntil := time.Now().Add(*hold)
	for _, c := range conns {
		thieves.Go(func() {
			defer c.Close()
			c.SetDeadline(holdUntil)
			tc := tls.Client(c, clientTLS())
			if tc.Handshake() != nil {
				return
			}
			tlsOK.Add(1)
			n, _ := io.Copy(io.Discard, tc)
			stolen.Add(n)
		})
	}

	// 4. The legitimate transfer, after the sweep.
	var got bytes.Buffer
	legitErr := ""
	if _, err := dataTransfer(legit, pending, "RETR "+*remote, &got); err != nil {
		legitErr = err.Error()
	} else if !bytes.Equal(got.Bytes(), want) {
		legitErr = fmt.Sprintf("downloaded %d bytes that differ from the %d expected", got.Len(), len(want))
	}
	thieves.Wait()

	sort.Ints(open)
	foundPending := 0
	for _, p := range open {
		if p == pending {
			foundPending = 1
		}
	}
	legitOK := 0
	if legitErr == "" {
		legitOK = 1
	}
	r := Result{Test: "attack", Server: cm.server, Run: cm.run, Values: map[string]float64{
		"ports_swept":        float64(hi - lo + 1),
		"syns_reaching_tcp":  float64(syns),
		"ports_answering":    float64(len(open)),
		"ports_refused":      float64(refused),
		"ports_silent":       float64(timedOut),
		"ports_other_error":  float64(other),
		"found_pending_port": float64(foundPending),
		"attacker_tls_ok":    float64(tlsOK.Load()),
		"attacker_bytes":     float64(stolen.Load()),
		"legit_ok":           float64(legitOK),
		"sweep_seconds":      sweepTime.Seconds(),
	}, Info: map[string]string{"pending_port": strconv.Itoa(pending)}}
	if *guard != "" {
		r.Values["guard_drops"] = float64(drops1 - drops0)
	}
	if len(open) > 0 {
		r.Info["answering_ports"] = joinInts(open, 10)
	}
	if legitErr != "" {
		r.Info["legit_error"] = legitErr
	}
	return emit(cm.out, r)
}

func parseRange(s string) (uint16, uint16, error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.ParseUint(a, 10, 16)
	hi, err2 := strconv.ParseUint(b, 10, 16)
	if !ok || err1 != nil || err2 != nil || lo == 0 || hi < lo {
		return 0, 0, fmt.Errorf("bad port range %q", s)
	}
	return uint16(lo), uint16(hi), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func joinInts(v []int, limit int) string {
	var parts []string
	for i, x := range v {
		if i == limit {
			parts = append(parts, fmt.Sprintf("... (%d in all)", len(v)))
			break
		}
		parts = append(parts, strconv.Itoa(x))
	}
	return strings.Join(parts, ",")
}
