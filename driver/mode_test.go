package driver

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestUmaskModes: new files, directories and resumed-upload files get
// 0666/0777 less the user's umask, whatever the process umask is; an
// upload over an existing file keeps that file's mode.
func TestUmaskModes(t *testing.T) {
	old := syscall.Umask(0o077) // stricter than the user's: must not win
	defer syscall.Umask(old)
	for _, umask := range []os.FileMode{0o022, 0o002, 0o027} {
		f, root := newFS(t, Options{Umask: umask})
		h, err := f.GetHandle("/new.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte("x"))
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		h, err = f.GetHandle("/appended.bin", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte("x"))
		h.Close()
		if err := f.Mkdir("/dir", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := f.MkdirAll("/a/b", 0o755); err != nil {
			t.Fatal(err)
		}
		file, err := f.Create("/created")
		if err != nil {
			t.Fatal(err)
		}
		file.Close()
		for name, want := range map[string]os.FileMode{
			"new.bin": 0o666 &^ umask, "appended.bin": 0o666 &^ umask, "created": 0o666 &^ umask,
			"dir": 0o777 &^ umask, "a/b": 0o777 &^ umask,
		} {
			fi, err := os.Stat(filepath.Join(root, name))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("umask %03o: %s has mode %04o, want %04o", umask, name, got, want)
			}
		}
		// SetUmask applies to what comes next only.
		f.SetUmask(0o077)
		if err := f.Mkdir("/private", 0); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(filepath.Join(root, "private")); fi.Mode().Perm() != 0o700 {
			t.Errorf("after SetUmask(077): mode %04o", fi.Mode().Perm())
		}
	}
}
