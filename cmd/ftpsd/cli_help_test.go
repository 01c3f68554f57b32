package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelpEverywhere: every command and subcommand answers -h and --help on
// standard output with exit 0, and does nothing else (passwd must not hash
// its standard input).
func TestHelpEverywhere(t *testing.T) {
	for _, cmd := range [][]string{{"serve"}, {"check"}, {"passwd"}, {"firewall"}, {"firewall", "status"}, {"firewall", "reset"}, {"ban"}, {"ban", "list"}, {"version"}, {}} {
		for _, flag := range []string{"-h", "--help"} {
			args := append(append([]string(nil), cmd...), flag)
			c := exec.Command(ftpsdBin, args...)
			c.Stdin = strings.NewReader("secret\n")
			var stderr strings.Builder
			c.Stderr = &stderr
			out, err := c.Output()
			if err != nil {
				t.Errorf("ftpsd %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
				continue
			}
			name := strings.Join(cmd, " ")
			if !strings.HasPrefix(string(out), "usage: ftpsd "+name) || stderr.Len() != 0 {
				t.Errorf("ftpsd %s: stdout %q stderr %q", strings.Join(args, " "), out, stderr.String())
			}
			if strings.Contains(string(out), "$2a$") {
				t.Errorf("ftpsd %s printed a hash", strings.Join(args, " "))
			}
		}
	}
	for _, args := range [][]string{{"firewall", "bogus"}, {"serve", "-x"}, {"passwd", "extra"}} {
		c := exec.Command(ftpsdBin, args...)
		out, err := c.CombinedOutput()
		if err == nil || c.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "ftpsd: ") {
			t.Errorf("ftpsd %s: exit %d, want 1 with a message\n%s", strings.Join(args, " "), c.ProcessState.ExitCode(), out)
		}
	}
}

// TestVersionStamp: a binary built with -ldflags -X prints that version for
// both `ftpsd version` and `ftpsd --version`.
func TestVersionStamp(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ftpsd")
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.version=9.8.7-test", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil || !strings.HasPrefix(string(out), "ftpsd 9.8.7-test (ftpserverlib v") {
			t.Errorf("ftpsd %s: %q %v", arg, out, err)
		}
	}
}
