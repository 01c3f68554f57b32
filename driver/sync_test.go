package driver

import (
	"os"
	"path/filepath"
	"testing"
)

// A replacing upload is flushed before its rename unless SkipSync
// ([storage] fsync = "never"); either way it lands complete under its name.
func TestUploadSyncUnlessSkipped(t *testing.T) {
	syncs := 0
	orig := syncFile
	syncFile = func(f *os.File) error { syncs++; return orig(f) }
	t.Cleanup(func() { syncFile = orig })
	for _, c := range []struct {
		skip bool
		want int
	}{{false, 1}, {true, 0}} {
		syncs = 0
		f, root := newFS(t, Options{SkipSync: c.skip})
		h, err := f.GetHandle("/f.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		write(t, h, "complete")
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		if syncs != c.want {
			t.Errorf("SkipSync=%v: %d flushes, want %d", c.skip, syncs, c.want)
		}
		if b, _ := os.ReadFile(filepath.Join(root, "f.bin")); string(b) != "complete" {
			t.Errorf("SkipSync=%v: target = %q", c.skip, b)
		}
	}
}
