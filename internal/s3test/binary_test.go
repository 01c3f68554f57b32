package s3test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBinaryCached: the binary is found under the user's cache directory,
// named by the pinned version, and runs.
func TestBinaryCached(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	mod, _ := moduleDir()
	ver, err := version(mod)
	if err != nil || !strings.HasPrefix(ver, "v0.0.0-") {
		t.Fatalf("version %q, %v", ver, err)
	}
	cache, _ := os.UserCacheDir()
	if bin != filepath.Join(cache, "ftpsd", "weed-"+ver) {
		t.Fatalf("binary at %s", bin)
	}
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("not an executable: %v %v", fi, err)
	}
}
