package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
	"github.com/ftpsd/ftpsd/internal/xferlog"
)

// xferLine is one parsed line of vsftpd's xferlog standard format.
type xferLine struct {
	when                        time.Time
	secs, bytes                 int64
	host, file, kind, flag, dir string
	access, user, service, auth string
	authID, status              string
}

func parseXferlog(t *testing.T, path string) []xferLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []xferLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		// current-time is ctime(3) without the newline: fixed width.
		if len(line) < 26 {
			t.Fatalf("short xferlog line %q", line)
		}
		when, err := time.Parse(xferlog.TimeLayout, line[:24])
		if err != nil {
			t.Fatalf("xferlog time in %q: %v", line, err)
		}
		f := strings.Split(line[25:], " ")
		if len(f) != 13 {
			t.Fatalf("xferlog line %q has %d fields after the time, want 13", line, len(f))
		}
		secs, err1 := strconv.ParseInt(f[0], 10, 64)
		size, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("xferlog numbers in %q", line)
		}
		out = append(out, xferLine{when: when, secs: secs, host: f[1], bytes: size, file: f[3], kind: f[4], flag: f[5],
			dir: f[6], access: f[7], user: f[8], service: f[9], auth: f[10], authID: f[11], status: f[12]})
	}
	return out
}

// scrape reads the metrics endpoint from inside the namespace.
func (s *ftpsd) scrape(addr string) map[string]float64 {
	s.t.Helper()
	out := s.mustRun(10*time.Second, "curl", "--silent", "--show-error", "--fail", "http://"+addr+"/metrics")
	m := map[string]float64{}
	for _, line := range strings.Split(out, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			s.t.Fatalf("metrics line %q", line)
		}
		m[line[:i]] = v
	}
	return m
}

// weakTLS offers only a suite the server (ECDSA certificate, modern
// suites) cannot use: the handshake fails on the server's side.
var weakTLS = &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
	CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}}

// TestLogsXferlogAndMetrics: JSON log without ftpserverlib's clientId, TLS
// failures as WARN without cipher lists, an xferlog that parses in vsftpd's
// format, and the Prometheus endpoint counting all of it.
func TestLogsXferlogAndMetrics(t *testing.T) {
	const metricsAddr = "127.0.0.1:9120"
	dir := t.TempDir()
	xfer := filepath.Join(dir, "xferlog")
	s := &ftpsd{t: t, ns: newNS(t), dir: dir}
	s.cfgPath = writeConfig(t, dir, serverOpts{extra: fmt.Sprintf("\n[log]\nformat = \"json\"\nxferlog = %q\n\n[metrics]\nlisten = %q\n", xfer, metricsAddr)})
	// As in production: started as root, serving as an unprivileged account.
	startAsNobody(t, s, "", s.root("alice"), s.root("reader"))
	s.waitLog("metrics endpoint", 5*time.Second)
	alice := "alice:" + testUsers["alice"]
	url := fmt.Sprintf("ftp://%s:%d/", srvIP4, ctlPort)
	curl := func(args ...string) (string, error) {
		return s.run(30*time.Second, "curl", append([]string{"--silent", "--show-error", "--ssl-reqd", "--insecure"}, args...)...)
	}

	src := filepath.Join(dir, "up name.bin")
	randomFile(t, src, 300000)
	if out, err := curl("--user", alice, "-T", src, url+"up%20name.bin"); err != nil {
		t.Fatalf("upload: %v %s", err, out)
	}
	if out, err := curl("--user", alice, url+"up%20name.bin", "-o", filepath.Join(dir, "down.bin")); err != nil {
		t.Fatalf("download: %v %s", err, out)
	}
	if _, err := curl("--user", "alice:wrong", url); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	// Hostile TLS on the explicit and the implicit port.
	c, _, err := ftpclient.Dial(s.dial(cliB4, 2*time.Second), fmt.Sprintf("%s:%d", srvIP4, ctlPort), weakTLS, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AuthTLS(); err == nil {
		t.Fatal("TLS with no common cipher suite succeeded")
	}
	c.Close()
	if _, _, err := ftpclient.Dial(s.dial(cliB4, 2*time.Second), fmt.Sprintf("%s:%d", srvIP4, impPort), weakTLS, true); err == nil {
		t.Fatal("implicit TLS with no common cipher suite succeeded")
	}
	// A SYN into the passive range without a pinhole: the guard drops it.
	if conn, err := s.dial(cliB4, 500*time.Millisecond)("tcp", fmt.Sprintf("%s:50050", srvIP4)); err == nil {
		conn.Close()
		t.Fatal("connection into the passive range without a pinhole")
	}

	// The transfer log, in vsftpd's format.
	lines := parseXferlog(t, xfer)
	if b, err := os.ReadFile(xfer); err == nil {
		t.Logf("xferlog:\n%s", b)
	}
	if len(lines) != 2 {
		t.Fatalf("xferlog has %d lines, want 2", len(lines))
	}
	for i, want := range []string{"i", "o"} {
		l := lines[i]
		if l.dir != want || l.bytes != 300000 || l.file != "/up_name.bin" || l.host != srvIP4 ||
			l.kind != "b" || l.flag != "_" || l.access != "r" || l.user != "alice" || l.service != "ftp" ||
			l.auth != "0" || l.authID != "*" || l.status != "c" || l.secs < 1 || time.Since(l.when) > time.Hour {
			t.Errorf("xferlog line %d: %+v", i+1, l)
		}
	}

	// The log: JSON, no clientId, TLS failures as WARN without cipher lists.
	s.waitLog(`"conn":"implicit"`, 5*time.Second)
	s.waitLog(`"conn":"control"`, 5*time.Second)
	log := s.log.String()
	if strings.Contains(log, "clientId") {
		t.Error("log has ftpserverlib's clientId")
	}
	tlsLines := 0
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["msg"] == "TLS handshake failed" {
			t.Logf("%s", line)
			tlsLines++
			if rec["level"] != "WARN" || strings.Contains(line, "client offered") || strings.Contains(line, "[") {
				t.Errorf("TLS failure logged as %q", line)
			}
		}
		if rec["level"] == "ERROR" {
			t.Errorf("client mistakes logged as errors: %q", line)
		}
	}
	if tlsLines != 2 {
		t.Errorf("%d TLS failure lines, want 2", tlsLines)
	}

	// The metrics.
	m := s.scrape(metricsAddr)
	for name, want := range map[string]float64{
		`ftpsd_logins_total{result="ok"}`:                         2,
		`ftpsd_logins_total{result="failed"}`:                     1,
		`ftpsd_transfers_total{direction="upload",result="ok"}`:   1,
		`ftpsd_transfers_total{direction="download",result="ok"}`: 1,
		`ftpsd_transfer_bytes_total{direction="upload"}`:          300000,
		`ftpsd_transfer_bytes_total{direction="download"}`:        300000,
		`ftpsd_tls_handshake_failures_total{conn="control"}`:      1,
		`ftpsd_tls_handshake_failures_total{conn="implicit"}`:     1,
		`ftpsd_pinholes_open`:                                     0,
		`ftpsd_passive_ports_free`:                                100,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	// A pending EPSV holds a pinhole and a port.
	pending := s.client(cliA4, srvIP4, "alice")
	if _, err := pending.EPSV(); err != nil {
		t.Fatal(err)
	}
	m2 := s.scrape(metricsAddr)
	if m2["ftpsd_pinholes_open"] != 1 || m2["ftpsd_passive_ports_free"] != 99 || m2["ftpsd_sessions"] < 1 {
		t.Errorf("with a pending EPSV: pinholes_open %v, passive_ports_free %v, sessions %v",
			m2["ftpsd_pinholes_open"], m2["ftpsd_passive_ports_free"], m2["ftpsd_sessions"])
	}
	// LIST isn't sent by these curl commands; each transfer has one PASV.
	if n := m["ftpsd_pinhole_open_seconds_count"]; n < 2 {
		t.Errorf("pinhole latency histogram counted %v openings, want at least 2", n)
	}
	if n := m["ftpsd_guard_dropped_packets_total"]; n < 1 {
		t.Errorf("guard drops %v, want at least 1", n)
	}
	if _, ok := m["ftpsd_sessions"]; !ok {
		t.Error("no ftpsd_sessions")
	}
	// A restore of the table is counted.
	if n, ok := m["ftpsd_table_restores_total"]; !ok || n != 0 {
		t.Errorf("table restores before any damage = %v (present %v), want 0", n, ok)
	}
	s.ns.Run(t, "nft", "delete", "table", "inet", "ftpsd")
	waitFor(t, 10*time.Second, "the restore to be counted", func() bool {
		return s.scrape(metricsAddr)["ftpsd_table_restores_total"] == 1
	})
}
