package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestReadmeConfigsCheck: every TOML example in README.md passes `ftpsd
// check` once its placeholders (hash, root) are filled in.
func TestReadmeConfigsCheck(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 2 {
		t.Fatalf("README has %d TOML examples, want the minimal one and the full one", len(blocks))
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	for i, b := range blocks {
		dir := t.TempDir()
		root := filepath.Join(dir, "alice")
		os.Mkdir(root, 0o755)
		cfg := strings.ReplaceAll(b[1], `"$2a$10$..."`, `"`+string(hash)+`"`)
		cfg = strings.ReplaceAll(cfg, `"/srv/ftp/alice"`, `"`+root+`"`)
		path := filepath.Join(dir, "ftpsd.toml")
		os.WriteFile(path, []byte(cfg), 0o600)
		check := exec.Command(ftpsdBin, "check", "-c", path)
		// For an example that takes S3 keys from the environment.
		check.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=example")
		out, err := check.CombinedOutput()
		if err != nil {
			t.Errorf("README TOML example %d fails check: %v\n%s\n%s", i+1, err, out, b[1])
		}
	}
}
