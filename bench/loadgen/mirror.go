package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// lftpTLS makes lftp (GnuTLS) use what curl is told to use in xfer: TLS 1.3
// with AES-128-GCM and a P-256 key exchange, the one group Debian's vsftpd
// accepts (offering X25519 first would cost vsftpd a HelloRetryRequest on
// every data connection).
const lftpTLS = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-GROUP-ALL:+GROUP-SECP256R1:-CIPHER-ALL:+AES-128-GCM"

// cmdMirror runs one lftp mirror of a tree of small files, down (the
// server's -remote into a fresh local directory) or up (mirror -R of
// -local to -remote), and records files/s and the server's CPU per 1,000
// files. Every file is checked: down by count and size, up by count and
// size in the server's directory (-check), which is then removed unless
// -keep.
func cmdMirror(args []string) error {
	fs, cm, t := flags("mirror")
	dir := fs.String("dir", "down", `"down" or "up"`)
	remote := fs.String("remote", "site", "remote directory")
	local := fs.String("local", "", "up: the local tree to upload; down: the tree the download must equal")
	check := fs.String("check", "", "up: where the server stores -remote (checked, then removed)")
	parallel := fs.Int("parallel", 1, "lftp mirror --parallel")
	tmp := fs.String("tmp", os.TempDir(), "down: where the local copy goes (removed after)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	test := fs.String("test", "", "test name in the results (default mirror-DIR-PARALLEL)")
	caFile := fs.String("cafile", "", "lftp ssl:ca-file (default: the system bundle, which lftp parses for every data connection)")
	keep := fs.Bool("keep", false, "leave the copy (down) or the uploaded tree (up) in place; the caller removes it later")
	pair := fs.Int("pair", 0, "pair number in the results: the report divides ftpsd's files/s by vsftpd's of the same run and pair")
	if err := parse(fs, args, cm, t, true); err != nil {
		return err
	}
	if *local == "" || (*dir == "up" && *check == "") {
		return fmt.Errorf("-local is required (and -check for up)")
	}
	want, wantBytes, err := tree(*local)
	if err != nil {
		return err
	}
	if len(want) == 0 {
		return fmt.Errorf("%s holds no files", *local)
	}
	opt := ""
	if *parallel > 1 {
		opt = fmt.Sprintf("--parallel=%d ", *parallel)
	}
	var cmd, into string
	switch *dir {
	case "down":
		d, err := os.MkdirTemp(*tmp, "mirror-down-")
		if err != nil {
			return err
		}
		if !*keep {
			defer os.RemoveAll(d)
		}
		into = filepath.Join(d, "copy")
		cmd = fmt.Sprintf("mirror %s%s %s", opt, *remote, into)
	case "up":
		into = *check
		os.RemoveAll(into)
		cmd = fmt.Sprintf("mirror -R %s%s %s", opt, *local, *remote)
	default:
		return fmt.Errorf("-dir must be down or up")
	}
	defer func() {
		if *dir == "up" && !*keep {
			os.RemoveAll(into)
		}
	}()
	lines := []string{
		"set ftp:ssl-force true", "set ftp:ssl-protect-data true", "set ssl:verify-certificate false",
		"set ftp:passive-mode true", "set ftp:prefer-epsv false", "set net:max-retries 1", "set net:timeout 20",
		`set ssl:priority "` + lftpTLS + `"`,
	}
	if *caFile != "" {
		lines = append(lines, fmt.Sprintf("set ssl:ca-file %q", *caFile))
	}
	lines = append(lines, fmt.Sprintf("open -u %s,%s ftp://%s", t.user, t.pass, t.addr), cmd)
	script := strings.Join(lines, "; ")
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	meter, err := startCPU(cm.cgroup)
	if err != nil {
		return err
	}
	start := time.Now()
	out, err := exec.CommandContext(ctx, "lftp", "-c", script).CombinedOutput()
	secs := time.Since(start).Seconds()
	if err != nil {
		return fmt.Errorf("lftp %s: %v: %s", cmd, err, strings.TrimSpace(string(out)))
	}
	cpu, err := meter.used()
	if err != nil {
		return err
	}
	got, gotBytes, err := tree(into)
	if err != nil {
		return fmt.Errorf("mirror result: %w", err)
	}
	for name, size := range want {
		if got[name] != size {
			return fmt.Errorf("mirror result: %s has %d bytes, want %d (%d of %d files present)", name, got[name], size, len(got), len(want))
		}
	}
	n := float64(len(want))
	if *test == "" {
		*test = fmt.Sprintf("mirror-%s-%d", *dir, *parallel)
	}
	values := map[string]float64{
		"files":            n,
		"bytes":            float64(wantBytes),
		"seconds":          secs,
		"files_per_s":      n / secs,
		"cpu_s_per_1000":   float64(cpu) / 1e6 / n * 1000,
		"parallel":         float64(*parallel),
		"bytes_per_s_mb":   float64(gotBytes) / secs / 1e6,
		"server_cpu_s_all": float64(cpu) / 1e6,
	}
	if *pair > 0 {
		values["pair"] = float64(*pair)
	}
	return emit(cm.out, Result{Test: *test, Server: cm.server, Run: cm.run, Values: values})
}

// tree lists the regular files under dir (relative name -> size).
func tree(dir string) (map[string]int64, int64, error) {
	files := map[string]int64{}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[rel] = fi.Size()
		total += fi.Size()
		return nil
	})
	return files, total, err
}
