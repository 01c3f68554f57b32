package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// cmdXfer runs one curl download or upload and records MB/s and the server's
// CPU seconds per GiB.
func cmdXfer(args []string) error {
	fs, cm, t := flags("xfer")
	dir := fs.String("dir", "down", `"down" (RETR -remote to /dev/null) or "up" (STOR -local as -remote)`)
	remote := fs.String("remote", "", "remote path")
	local := fs.String("local", "", "local file to upload")
	check := fs.String("check", "", "after an upload, the path where the server stored it (size is checked, then it is removed)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	curlBin := fs.String("curl", "curl", "curl binary")
	if err := parse(fs, args, cm, t, true); err != nil {
		return err
	}
	url := fmt.Sprintf("ftp://%s/%s", t.addr, strings.TrimPrefix(*remote, "/"))
	const w = "%{time_pretransfer} %{time_total} %{size_download} %{size_upload} %{ssl_verify_result}\n"
	var extra []string
	var want int64
	switch *dir {
	case "down":
		extra = []string{"-o", "/dev/null", "-w", w, url}
	case "up":
		fi, err := os.Stat(*local)
		if err != nil {
			return err
		}
		want = fi.Size()
		extra = []string{"-T", *local, "-w", w, url}
	default:
		return fmt.Errorf("-dir must be down or up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	meter, err := startCPU(cm.cgroup)
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, *curlBin, curlArgs(t, extra...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("curl: %v: %s", err, strings.TrimSpace(string(out)))
	}
	cpu, err := meter.used()
	if err != nil {
		return err
	}
	f := strings.Fields(strings.TrimSpace(string(out)))
	if len(f) < 4 {
		return fmt.Errorf("unexpected curl output %q", out)
	}
	num := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	pre, total := num(f[0]), num(f[1])
	bytes := num(f[2])
	if *dir == "up" {
		bytes = num(f[3])
		if *check != "" {
			fi, err := os.Stat(*check)
			if err != nil {
				return fmt.Errorf("uploaded file: %w", err)
			}
			os.Remove(*check)
			if fi.Size() != want {
				return fmt.Errorf("uploaded file has %d bytes, want %d", fi.Size(), want)
			}
		}
	}
	if bytes == 0 {
		return fmt.Errorf("curl moved no data: %q", out)
	}
	xferSecs := total - pre
	return emit(cm.out, Result{Test: map[string]string{"down": "download", "up": "upload"}[*dir],
		Server: cm.server, Run: cm.run, Values: map[string]float64{
			"mb_per_s":       bytes / xferSecs / 1e6,
			"seconds":        xferSecs,
			"login_seconds":  pre,
			"bytes":          bytes,
			"cpu_s_per_gib":  float64(cpu) / 1e6 / (bytes / (1 << 30)),
			"cpu_s_transfer": float64(cpu) / 1e6,
		}})
}
