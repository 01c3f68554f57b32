package driver

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newFS(t *testing.T, opts Options) (*FS, string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// A secret next to the root: nothing below may reach it.
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := New(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, root
}

func TestDotDotStaysInside(t *testing.T) {
	f, root := newFS(t, Options{})
	os.WriteFile(filepath.Join(root, "in.txt"), []byte("inside"), 0o644)
	for _, name := range []string{"../secret", "/../secret", "/a/../../secret", "..\\secret", "/../../../../../secret"} {
		file, err := f.Open(name)
		if err == nil {
			b, _ := io.ReadAll(file)
			file.Close()
			if string(b) == "outside" {
				t.Fatalf("%q escaped the root", name)
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%q: unexpected error %v", name, err)
		}
	}
	// ".." at the root is the root itself, as on any FTP server.
	infos, err := f.ReadDir("/..")
	if err != nil || len(infos) != 1 || infos[0].Name() != "in.txt" {
		t.Fatalf("ReadDir(/..) = %v, %v; want the root's listing", infos, err)
	}
}

func TestAbsoluteHostPathIsRootRelative(t *testing.T) {
	f, root := newFS(t, Options{})
	secret := filepath.Join(filepath.Dir(root), "secret")
	if _, err := f.Open(secret); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open(%q) = %v, want not-exist (host paths mean nothing inside the root)", secret, err)
	}
	if _, err := f.Open("/etc/passwd"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open(/etc/passwd) = %v, want not-exist", err)
	}
}

func TestSymlinkOutOfRootRefused(t *testing.T) {
	f, root := newFS(t, Options{})
	outside := filepath.Dir(root)
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "abs-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../secret", filepath.Join(root, "rel-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "dir-link")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"/abs-link", "/rel-link", "/dir-link/secret"} {
		if file, err := f.Open(name); err == nil {
			file.Close()
			t.Errorf("Open(%q) followed a symlink out of the root", name)
		}
		if _, err := f.GetHandle(name, os.O_RDONLY, 0); err == nil {
			t.Errorf("GetHandle(%q) followed a symlink out of the root", name)
		}
	}
	if _, err := f.GetHandle("/dir-link/new", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0); err == nil {
		t.Error("upload through a symlinked directory escaped the root")
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); err == nil {
		t.Error("a file was created outside the root")
	}
	if _, err := f.ReadDir("/dir-link"); err == nil {
		t.Error("listed a directory outside the root")
	}
	// A symlink that stays inside keeps working.
	os.WriteFile(filepath.Join(root, "target"), []byte("ok"), 0o644)
	os.Symlink("target", filepath.Join(root, "good-link"))
	h, err := f.GetHandle("/good-link", os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("inside symlink: %v", err)
	}
	h.Close()
}

func write(t *testing.T, h interface{ Write([]byte) (int, error) }, s string) {
	t.Helper()
	if _, err := h.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func TestUploadReplacesOnlyWhenComplete(t *testing.T) {
	f, root := newFS(t, Options{})
	target := filepath.Join(root, "f.bin")
	os.WriteFile(target, []byte("previous"), 0o640)

	h, err := f.GetHandle("/f.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, h, "partial new da")
	// The previous file is intact while the upload runs, and the part is hidden.
	if b, _ := os.ReadFile(target); string(b) != "previous" {
		t.Fatalf("during upload target = %q", b)
	}
	infos, _ := f.ReadDir("/")
	if len(infos) != 1 {
		t.Fatalf("listing shows %d entries during upload, want only f.bin", len(infos))
	}
	h.(interface{ TransferError(error) }).TransferError(io.ErrUnexpectedEOF)
	if err := h.Close(); err == nil {
		t.Fatal("Close of an aborted upload reported success")
	}
	if b, _ := os.ReadFile(target); string(b) != "previous" {
		t.Fatalf("after aborted upload target = %q, want previous", b)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 1 {
		t.Fatalf("aborted upload left %d entries, want 1", len(entries))
	}

	h, err = f.GetHandle("/f.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, h, "complete")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "complete" {
		t.Fatalf("after upload target = %q", b)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the previous file's 0640", fi.Mode().Perm())
	}
}

func TestUploadCompleteHookCanVeto(t *testing.T) {
	veto := errors.New("no close_notify")
	f, root := newFS(t, Options{UploadComplete: func() error { return veto }})
	os.WriteFile(filepath.Join(root, "f"), []byte("old"), 0o644)
	h, _ := f.GetHandle("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
	write(t, h, "truncated")
	if err := h.Close(); !errors.Is(err, veto) {
		t.Fatalf("Close = %v, want the veto", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "f")); string(b) != "old" {
		t.Fatalf("vetoed upload replaced the file: %q", b)
	}
}

func TestResumeAndAppend(t *testing.T) {
	f, root := newFS(t, Options{})
	p := filepath.Join(root, "r")
	os.WriteFile(p, []byte("0123456789"), 0o644)
	// REST 4 + STOR: ftpserverlib seeks, the driver truncates at the offset.
	h, err := f.GetHandle("/r", os.O_WRONLY|os.O_CREATE, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Seek(4, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	write(t, h, "ab")
	h.Close()
	if b, _ := os.ReadFile(p); string(b) != "0123ab" {
		t.Fatalf("resumed = %q, want 0123ab", b)
	}
	h, _ = f.GetHandle("/r", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0)
	write(t, h, "Z")
	h.Close()
	if b, _ := os.ReadFile(p); string(b) != "0123abZ" {
		t.Fatalf("appended = %q", b)
	}
	// REST on download.
	h, _ = f.GetHandle("/r", os.O_RDONLY, 0)
	h.Seek(5, io.SeekStart)
	b, _ := io.ReadAll(h)
	h.Close()
	if !bytes.Equal(b, []byte("bZ")) {
		t.Fatalf("download from 5 = %q", b)
	}
}

func TestReadOnlyRefusesChanges(t *testing.T) {
	f, root := newFS(t, Options{ReadOnly: true})
	os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	checks := map[string]error{
		"upload": func() error { _, err := f.GetHandle("/new", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0); return err }(),
		"append": func() error { _, err := f.GetHandle("/f", os.O_WRONLY|os.O_APPEND, 0); return err }(),
		"dele":   f.Remove("/f"),
		"rmd":    f.RemoveDir("/d"),
		"mkd":    f.Mkdir("/e", 0o755),
		"rename": f.Rename("/f", "/g"),
		"openw":  func() error { _, err := f.OpenFile("/f", os.O_WRONLY, 0); return err }(),
	}
	for name, err := range checks {
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("%s: err = %v, want permission denied", name, err)
		}
	}
	if h, err := f.GetHandle("/f", os.O_RDONLY, 0); err != nil {
		t.Errorf("read-only user cannot download: %v", err)
	} else {
		h.Close()
	}
}

func TestDeleVersusRmd(t *testing.T) {
	f, root := newFS(t, Options{})
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	os.WriteFile(filepath.Join(root, "f"), nil, 0o644)
	if err := f.Remove("/d"); err == nil {
		t.Error("DELE removed a directory")
	}
	if err := f.RemoveDir("/f"); err == nil {
		t.Error("RMD removed a file")
	}
	if err := f.RemoveDir("/"); err == nil {
		t.Error("RMD removed the root")
	}
	if err := f.RemoveDir("/d"); err != nil {
		t.Error(err)
	}
	if err := f.Remove("/f"); err != nil {
		t.Error(err)
	}
}

func TestPartFilesCannotBeAddressed(t *testing.T) {
	f, root := newFS(t, Options{})
	os.WriteFile(filepath.Join(root, PartPrefix+"x-f"), []byte("x"), 0o644)
	if _, err := f.GetHandle("/"+PartPrefix+"x-f", os.O_RDONLY, 0); err == nil {
		t.Error("an upload in progress could be downloaded")
	}
}

func TestRestartOffsetsChecked(t *testing.T) {
	f, root := newFS(t, Options{})
	p := filepath.Join(root, "f")
	os.WriteFile(p, []byte("0123456789"), 0o644)
	if _, err := f.GetHandle("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, -1); err == nil {
		t.Error("negative offset accepted for an upload")
	}
	if _, err := f.GetHandle("/f", os.O_RDONLY, -1); err == nil {
		t.Error("negative offset accepted for a download")
	}
	if _, err := f.GetHandle("/f", os.O_WRONLY|os.O_CREATE, 11); err == nil {
		t.Error("REST past the end accepted for an upload")
	}
	// REST 4 + STOR whose data connection never opens: nothing changes.
	h, err := f.GetHandle("/f", os.O_WRONLY|os.O_CREATE, 4)
	if err != nil {
		t.Fatal(err)
	}
	h.(interface{ TransferError(error) }).TransferError(errors.New("425 no data connection"))
	h.Close()
	if b, _ := os.ReadFile(p); string(b) != "0123456789" {
		t.Fatalf("REST+STOR without data changed the file to %q", b)
	}
	// A complete, empty REST+STOR cuts at the offset.
	h, _ = f.GetHandle("/f", os.O_WRONLY|os.O_CREATE, 4)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "0123" {
		t.Fatalf("empty REST 4 + STOR = %q, want 0123", b)
	}
}

// ftpserverlib ends a session (closing its FS) before the transfer's file is
// closed; the upload must still be renamed into place, not lost.
func TestUploadSurvivesFSCloseDuringTransfer(t *testing.T) {
	f, root := newFS(t, Options{})
	h, err := f.GetHandle("/late.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, h, "arrived")
	f.Close()
	if err := h.Close(); err != nil {
		t.Fatalf("upload closed after its session: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "late.bin")); string(b) != "arrived" {
		t.Fatalf("late.bin = %q", b)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 1 {
		t.Fatalf("%d entries left, want 1", len(entries))
	}
	if _, err := f.root.Stat("."); err == nil {
		t.Fatal("root still open after the last handle closed")
	}
}

func TestLongNameUpload(t *testing.T) {
	f, root := newFS(t, Options{})
	name := strings.Repeat("n", 250)
	h, err := f.GetHandle("/"+name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, h, "x")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, name)); err != nil {
		t.Fatal(err)
	}
}
