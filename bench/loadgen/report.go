package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
)

// metric is one row of the results table.
type metric struct {
	test, key, label string
	// target judges the medians (v = vsftpd, f = ftpsd); nil = no target.
	target     func(v, f float64) bool
	targetText string
}

// pairSuffix marks a paired test: its row judges the median of ftpsd /
// vsftpd over results of the same run and "pair" value (target gets 1 and
// that median), see pairedRow.
const pairSuffix = "-pair"

var metrics = []metric{
	{"download", "mb_per_s", "Download, one curl stream, MB/s", func(v, f float64) bool { return f/v >= 1.0 }, "≥ 1.0×"},
	{"download", "pct_of_tls", "Download, % of the bare TLS stream (same run)", func(v, f float64) bool { return f >= 80 }, "ftpsd ≥ 80%"},
	{"download", "cpu_s_per_gib", "Download, server CPU s per GiB", nil, ""},
	{"upload", "mb_per_s", "Upload, one curl stream, MB/s", func(v, f float64) bool { return f/v >= 1.5 }, "≥ 1.5×"},
	{"upload", "cpu_s_per_gib", "Upload, server CPU s per GiB", nil, ""},
	{"sessions-go", "sessions_per_s", "Sessions/s, 16 Go clients", nil, ""},
	{"sessions-go", "cpu_ms_per_sess", "Server CPU ms per session, Go clients", func(v, f float64) bool { return f/v <= 0.5 }, "≤ 0.5×"},
	{"sessions-go", "session_p50_ms", "Session time p50 (ms), Go clients", nil, ""},
	{"sessions-curl", "sessions_per_s", "Sessions/s, 16 curl clients", nil, ""},
	{"sessions-curl", "cpu_ms_per_sess", "Server CPU ms per session, curl clients", func(v, f float64) bool { return f/v <= 0.5 }, "≤ 0.5×"},
	{"idle", "pss_kib_per_sess", "PSS per idle TLS session, KiB", func(v, f float64) bool { return f/v <= 0.1 }, "≤ 0.1×"},
	{"idle", "procs_per_session", "Server processes per idle session", nil, ""},
	{"pasv", "pasv_p50_ms", "PASV round trip p50, ms", func(v, f float64) bool { return f <= v+0.2 }, "≤ vsftpd + 0.2 ms"},
	{"pasv", "pasv_p95_ms", "PASV round trip p95, ms", nil, ""},
	{"pasv", "connect_p50_ms", "227 to data connection p50, ms", nil, ""},
	{"pasv", "connect_p95_ms", "227 to data connection p95, ms", nil, ""},
	{"mirror-down-1", "files_per_s", "Mirror down, lftp, 1 connection, files/s", func(v, f float64) bool { return f/v >= 3 }, "≥ 3×"},
	{"mirror-down-1", "cpu_s_per_1000", "Mirror down, server CPU s per 1,000 files", func(v, f float64) bool { return f <= 2.33 }, "ftpsd ≤ 2.33 s"},
	{"mirror-down-4", "files_per_s", "Mirror down, lftp --parallel=4, files/s", func(v, f float64) bool { return f/v >= 2 }, "≥ 2×"},
	{"mirror-up-1", "files_per_s", "Mirror up, lftp mirror -R, files/s", func(v, f float64) bool { return f/v >= 1.5 }, "≥ 1.5×"},
	{"mirror-up-1", "cpu_s_per_1000", "Mirror up, server CPU s per 1,000 files", nil, ""},
	{"mirror-up-nofsync", "files_per_s", "Mirror up, ftpsd with fsync = \"never\", files/s", nil, ""},
	{"mirror-up-pair", "files_per_s", "Mirror up folder by folder (100 files), servers alternating, files/s; ratio: median of the folders' ratios", func(_, r float64) bool { return r >= 1.5 }, "≥ 1.5×"},
	{"idle-many", "sessions", "Many idle TLS sessions: sessions held", nil, ""},
	{"idle-many", "open_per_s", "Many idle TLS sessions: opened per second", nil, ""},
	{"idle-many", "pss_mib", "Many idle TLS sessions: server PSS, MiB", func(v, f float64) bool { return f < 600 }, "ftpsd < 600 MiB"},
	{"idle-many", "pss_kib_per_sess", "Many idle TLS sessions: PSS per session, KiB", func(v, f float64) bool { return f <= 48 }, "ftpsd ≤ 48 KiB"},
	{"idle-many", "pss_base_kib", "Many idle TLS sessions: server PSS before, KiB", nil, ""},
	{"idle-many", "pss_after_kib", "Many idle TLS sessions: PSS after they closed (--many-after), KiB", nil, ""},
	{"idle-many", "after_over_base", "Many idle TLS sessions: PSS after / before", func(v, f float64) bool { return f <= 2 }, "ftpsd ≤ 2×"},
	{"idle-many", "pss_warm_kib", "Many idle TLS sessions: server PSS after one session, before the burst, KiB", nil, ""},
	{"idle-many", "after_over_warm", "Many idle TLS sessions: PSS after / after one session", nil, ""},
}

// derive adds figures computed across tests: each download as a share of
// the bare TLS stream measured in the same run.
func derive(rs []Result) {
	bare := map[int]float64{}
	for _, r := range rs {
		if r.Test == "tlsstream" {
			bare[r.Run] = r.Values["mb_per_s"]
		}
	}
	for _, r := range rs {
		if b, ok := bare[r.Run]; ok && r.Test == "download" && b > 0 {
			r.Values["pct_of_tls"] = 100 * r.Values["mb_per_s"] / b
		}
	}
}

const vs, fd = "vsftpd", "ftpsd"

func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	in := fs.String("in", "", "results file (JSON lines)")
	md := fs.String("md", "", "also write the markdown here")
	info := fs.String("info", "", "file of lines describing the machine and versions (default: the meta record in -in)")
	note := fs.String("note", "", "a line printed under the title")
	noJudge := fs.Bool("no-judge", false, "do not judge the speed and memory targets (smoke runs: sizes too small)")
	strict := fs.Bool("strict", false, "exit non-zero unless ftpsd's attack runs met their target (a security property, not a speed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	results, err := readResults(*in)
	if err != nil {
		return err
	}
	derive(results)
	var b strings.Builder
	b.WriteString("## ftpsd vs vsftpd\n\n")
	if *note != "" {
		fmt.Fprintf(&b, "%s\n\n", *note)
	}
	var lines []string
	if *info != "" {
		text, err := os.ReadFile(*info)
		if err != nil {
			return err
		}
		lines = strings.Split(strings.TrimSpace(string(text)), "\n")
	} else {
		for _, r := range results {
			if r.Test == "meta" {
				for _, k := range sortedKeys(r.Info) {
					lines = append(lines, r.Info[k])
				}
			}
		}
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	if len(lines) > 0 {
		b.WriteString("\n")
	}
	for _, r := range results {
		if r.Test == "hash" {
			fmt.Fprintf(&b, "- Password hashes of equal cost: vsftpd's user sha512crypt rounds=%s, %s ms per verification; ftpsd's user bcrypt cost %s, %s ms\n\n",
				fmtNum(r.Values["sha512crypt_rounds"]), fmtNum(r.Values["sha512crypt_ms"]),
				fmtNum(r.Values["bcrypt_cost"]), fmtNum(r.Values["bcrypt_ms"]))
		}
	}

	b.WriteString("Medians of the runs; every run in brackets, in run order. Ratio = ftpsd / vsftpd of the medians (per run in brackets).\n\n")
	b.WriteString("| Measure | vsftpd | ftpsd | ftpsd / vsftpd | Target | Met |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	var failures []string
	for _, m := range metrics {
		vRuns, fRuns := values(results, m.test, vs, m.key), values(results, m.test, fd, m.key)
		if len(vRuns) == 0 && len(fRuns) == 0 {
			continue
		}
		if strings.HasSuffix(m.test, pairSuffix) {
			fmt.Fprint(&b, pairedRow(m, results, *noJudge))
			continue
		}
		vm, fm := median(vRuns), median(fRuns)
		var ratios []float64
		for i := range min(len(vRuns), len(fRuns)) {
			ratios = append(ratios, fRuns[i]/vRuns[i])
		}
		met := ""
		if m.target != nil {
			met = verdict(*noJudge, len(vRuns) > 0 && len(fRuns) > 0, func() bool { return m.target(vm, fm) })
		}
		ratio := fmtNum(fm/vm) + " " + runList(ratios)
		if vm == 0 || fm == 0 {
			ratio = "–"
		}
		fmt.Fprintf(&b, "| %s | %s %s | %s %s | %s | %s | %s |\n", m.label,
			fmtNum(vm), runList(vRuns), fmtNum(fm), runList(fRuns),
			ratio, m.targetText, met)
	}
	if bare := values(results, "tlsstream", "bare", "mb_per_s"); len(bare) > 0 {
		fmt.Fprintf(&b, "\nBare TLS stream on the same path (the download ceiling), MB/s: %s %s\n", fmtNum(median(bare)), runList(bare))
	}
	for _, r := range results {
		if strings.HasPrefix(r.Test, "sessions") && r.Values["failed"] > 0 {
			failures = append(failures, fmt.Sprintf("%s %s run %d: %s failed sessions (first error: %s)",
				r.Test, r.Server, r.Run, fmtNum(r.Values["failed"]), r.Info["first_error"]))
		}
	}
	if len(failures) > 0 {
		b.WriteString("\nFailed sessions (not counted in the rates):\n\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}

	// The attack, run by run.
	attackOK := false
	var attacks []Result
	for _, r := range results {
		if r.Test == "attack" {
			attacks = append(attacks, r)
		}
	}
	if len(attacks) > 0 {
		b.WriteString("\n### Firewall under attack\n\n")
		b.WriteString("A legitimate client holds a PASV reply unconnected while the attacker address sends one SYN to every port of the passive range; then the legitimate client connects and downloads a file.\n\n")
		b.WriteString("| Server | Run | Ports swept | Attacker SYNs reaching TCP | Ports answering the attacker | Pending port found | Attacker TLS handshakes / bytes got | Legitimate transfer |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|\n")
		ftpsdOK, ftpsdRuns := true, 0
		for _, r := range attacks {
			v := r.Values
			legit := "complete, content checked"
			if v["legit_ok"] != 1 {
				legit = "**failed**: " + r.Info["legit_error"]
			}
			found := "no"
			if v["found_pending_port"] == 1 {
				found = "**yes** (port " + r.Info["pending_port"] + ")"
			}
			answering := fmtNum(v["ports_answering"])
			if r.Info["answering_ports"] != "" {
				answering += " (" + r.Info["answering_ports"] + ")"
			}
			syns := fmtNum(v["syns_reaching_tcp"])
			if g, ok := v["guard_drops"]; ok {
				syns += fmt.Sprintf(" (ftpsd's guard dropped %s)", fmtNum(g))
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s / %s | %s |\n", r.Server, r.Run,
				fmtNum(v["ports_swept"]), syns, answering, found,
				fmtNum(v["attacker_tls_ok"]), fmtNum(v["attacker_bytes"]), legit)
			if r.Server == fd {
				ftpsdRuns++
				if v["syns_reaching_tcp"] != 0 || v["legit_ok"] != 1 || v["found_pending_port"] != 0 {
					ftpsdOK = false
				}
			}
		}
		verdict := "**met**"
		attackOK = ftpsdOK && ftpsdRuns > 0
		if ftpsdRuns == 0 {
			verdict = "not measured"
		} else if !ftpsdOK {
			verdict = "**not met**"
		}
		fmt.Fprintf(&b, "\nTarget (ftpsd: zero attacker SYNs reach the TCP stack, 100%% of legitimate transfers complete): %s (%d of %d runs clean).\n",
			verdict, countIf(attacks, func(r Result) bool {
				return r.Server == fd && r.Values["syns_reaching_tcp"] == 0 && r.Values["legit_ok"] == 1
			}), ftpsdRuns)
	}
	text := b.String()
	fmt.Print(text)
	if *md != "" {
		if err := os.WriteFile(*md, []byte(text), 0o644); err != nil {
			return err
		}
	}
	if *strict && !attackOK {
		return fmt.Errorf("ftpsd did not keep the attacker out in every attack run (or none ran)")
	}
	return nil
}

// pairedRow is the table row of a paired metric: each server's median,
// and the median over every pair of ftpsd's value divided by vsftpd's in
// the same run and pair (each run's median in brackets). Measured a second
// apart, the two of a pair see the same machine: on a VM whose speed
// drifts, their ratio is steadier than that of two runs minutes apart.
func pairedRow(m metric, rs []Result, noJudge bool) string {
	type key struct{ run, pair int }
	v, f := map[key]float64{}, map[key]float64{}
	for _, r := range rs {
		if r.Test != m.test {
			continue
		}
		k := key{r.Run, int(r.Values["pair"])}
		switch r.Server {
		case vs:
			v[k] = r.Values[m.key]
		case fd:
			f[k] = r.Values[m.key]
		}
	}
	var all []float64
	byRun := map[int][]float64{}
	for k, fv := range f {
		if vv, ok := v[k]; ok && vv > 0 {
			all = append(all, fv/vv)
			byRun[k.run] = append(byRun[k.run], fv/vv)
		}
	}
	var runMedians []float64
	for _, run := range sortedKeys(byRun) {
		runMedians = append(runMedians, median(byRun[run]))
	}
	ratio := median(all)
	met := verdict(noJudge, len(all) > 0, func() bool { return m.target(1, ratio) })
	cell := fmtNum(ratio)
	if l := runList(runMedians); l != "" {
		cell += " " + l
	}
	return fmt.Sprintf("| %s | %s | %s | %s, %d pairs | %s | %s |\n", m.label,
		fmtNum(median(values(rs, m.test, vs, m.key))), fmtNum(median(values(rs, m.test, fd, m.key))),
		cell, len(all), m.targetText, met)
}

// verdict is a target's cell in the table.
func verdict(noJudge, measured bool, met func() bool) string {
	switch {
	case noJudge:
		return "not judged"
	case !measured:
		return "not measured"
	case met():
		return "**met**"
	}
	return "**not met**"
}

func readResults(path string) ([]Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// values lists one metric of one server, in run order.
func values(rs []Result, test, server, key string) []float64 {
	var out []float64
	for _, r := range rs {
		if r.Test == test && r.Server == server {
			if v, ok := r.Values[key]; ok && !math.IsNaN(v) {
				out = append(out, v)
			}
		}
	}
	return out
}

func runList(v []float64) string {
	if len(v) < 2 {
		return ""
	}
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmtNum(x)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func countIf(rs []Result, f func(Result) bool) int {
	n := 0
	for _, r := range rs {
		if f(r) {
			n++
		}
	}
	return n
}

// cmdMeta stores the lines of -info as a "meta" record, so that a results
// file alone is enough to print its report again later.
func cmdMeta(args []string) error {
	fs := flag.NewFlagSet("meta", flag.ContinueOnError)
	info := fs.String("info", "", "file of lines describing the machine and versions")
	out := fs.String("out", "", "results file to append to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	text, err := os.ReadFile(*info)
	if err != nil {
		return err
	}
	r := Result{Test: "meta", Server: "both", Run: 1, Values: map[string]float64{}, Info: map[string]string{}}
	for i, l := range strings.Split(strings.TrimSpace(string(text)), "\n") {
		r.Info[fmt.Sprintf("%02d", i+1)] = l
	}
	return appendResult(*out, r)
}
