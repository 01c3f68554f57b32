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

// Sessions of one user share one root descriptor; it closes with the last
// session, a second Close of one session does not take another's, and a
// root directory replaced on disk is opened afresh for new sessions.
func TestSessionsShareTheirRoot(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "r")
	os.Mkdir(root, 0o755)
	a, err := New(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.root != b.root {
		t.Fatal("two sessions of one root hold two descriptors")
	}
	a.Close()
	a.Close()
	if _, err := b.Stat("/"); err != nil {
		t.Fatalf("b's root after a closed twice: %v", err)
	}
	os.Rename(root, filepath.Join(dir, "old"))
	os.Mkdir(root, 0o755)
	os.WriteFile(filepath.Join(root, "new"), nil, 0o644)
	c, err := New(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Stat("/new"); err != nil {
		t.Fatalf("a session after the root was replaced sees the old one: %v", err)
	}
	b.Close()
	if _, err := b.root.Stat("."); err == nil {
		t.Fatal("root still open after its last session closed")
	}
	if _, err := c.Stat("/new"); err != nil {
		t.Fatalf("c's root after b closed: %v", err)
	}
}
