package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
)

// rssKiB is the anonymous resident memory of process pid (RssAnon): what
// the heap and stacks hold, without the binary's pages, which the first
// sessions fault in once and which stay (shared and reclaimable).
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("RssAnon %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("no RssAnon in /proc/%d/status", pid)
	return 0
}

// After a burst of sessions ends, ftpsd hands the memory it grew back to
// the OS. Without help Go keeps it until its two-minute forced GC and the
// slow background scavenger; the wait here is bounded well below that, so
// a server that merely waits for the runtime fails.
func TestMemoryReturnedAfterBurst(t *testing.T) {
	const sessions = 400
	s := startFTPSD(t, newNS(t), serverOpts{perIP: sessions + 10})
	pid := s.cmd.Process.Pid
	// One session first, so that its one-time costs (the code it pages in,
	// the TLS session ticket keys) count as idle.
	s.client(cliA4, srvIP4, "alice").Quit()
	time.Sleep(500 * time.Millisecond)
	idle := rssKiB(t, pid)

	addr := net.JoinHostPort(srvIP4, fmt.Sprint(ctlPort))
	clients := make([]*ftpclient.Client, sessions)
	errs := make([]error, sessions)
	next := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				c, _, err := ftpclient.Dial(s.dial(cliA4, 5*time.Second), addr, clientTLS, false)
				if err == nil {
					err = c.AuthTLS()
					if err == nil {
						err = c.Login("alice", testUsers["alice"])
					}
					if err != nil {
						c.Close()
						c = nil
					}
				}
				clients[i], errs[i] = c, err
			}
		})
	}
	for i := range sessions {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, c := range clients {
				if c != nil {
					c.Close()
				}
			}
			t.Fatalf("session %d: %v", i, err)
		}
	}
	peak := rssKiB(t, pid)
	for _, c := range clients {
		c.Quit()
	}
	grown := peak - idle
	t.Logf("idle %d KiB, with %d sessions %d KiB (%.1f KiB each)", idle, sessions, peak, float64(grown)/sessions)
	if grown < sessions*10 {
		t.Fatalf("%d sessions grew the process by only %d KiB: nothing to measure", sessions, grown)
	}
	// Back to within a third of the growth.
	want := idle + grown/3
	deadline := time.Now().Add(40 * time.Second)
	for {
		rss := rssKiB(t, pid)
		if rss <= want {
			t.Logf("after the sessions closed: %d KiB", rss)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("RSS still %d KiB 40s after %d sessions closed (idle %d, peak %d, want <= %d)", rss, sessions, idle, peak, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
