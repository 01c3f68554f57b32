package driver

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

func TestErrorsCarryNoServerPath(t *testing.T) {
	f, root := newFS(t, Options{})
	os.Mkdir(filepath.Join(root, "full"), 0o755)
	os.WriteFile(filepath.Join(root, "full", "x"), []byte("x"), 0o644)
	errs := map[string]error{}
	_, errs["open"] = f.Open("/nope")
	_, errs["stat"] = f.Stat("/nope")
	errs["mkdir"] = f.Mkdir("/full", 0o755)
	errs["rmdir"] = f.RemoveDir("/full")
	errs["remove"] = f.Remove("/nope")
	errs["rename"] = f.Rename("/nope", "/other")
	_, errs["retr"] = f.GetHandle("/nope", os.O_RDONLY, 0)
	_, errs["rest"] = f.GetHandle("/full/x", os.O_WRONLY|os.O_CREATE, 1<<62)
	_, errs["readdir"] = f.ReadDir("/nope")
	for op, err := range errs {
		if err == nil {
			t.Errorf("%s: no error", op)
			continue
		}
		msg := err.Error()
		for _, bad := range []string{root, "openat", "statat", "mkdirat", "unlinkat", "renameat", "/nope", "/full"} {
			if strings.Contains(msg, bad) {
				t.Errorf("%s: %q exposes %q", op, msg, bad)
			}
		}
	}
	if !errors.Is(errs["open"], fs.ErrNotExist) || !errors.Is(errs["mkdir"], fs.ErrExist) {
		t.Errorf("error kinds lost: %v / %v", errs["open"], errs["mkdir"])
	}
	if !errors.Is(public(&fs.PathError{Op: "write", Path: root + "/.ftpsd-part-1", Err: syscall.ENOSPC}), ftpserver.ErrStorageExceeded) {
		t.Error("ENOSPC does not map to ErrStorageExceeded")
	}
}

func TestBackslashIsLiteral(t *testing.T) {
	f, root := newFS(t, Options{})
	h, err := f.GetHandle(`/bs\x.txt`, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, h, "b")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, `bs\x.txt`)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Stat(`/..\..\..`); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf(`Stat(..\..\..) = %v, want not-exist`, err)
	}
}

func TestBadNamesNotCreated(t *testing.T) {
	f, root := newFS(t, Options{})
	for _, name := range []string{"/a\x01b", "/cr\rx", "/lf\nx", "/bad\xff", "/del\x7f", "/c1\u0085"} {
		if _, err := f.GetHandle(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0); !errors.Is(err, ftpserver.ErrFileNameNotAllowed) {
			t.Errorf("upload %q: %v", name, err)
		}
		if err := f.Mkdir(name, 0o755); !errors.Is(err, ftpserver.ErrFileNameNotAllowed) {
			t.Errorf("mkdir %q: %v", name, err)
		}
	}
	os.WriteFile(filepath.Join(root, "ok"), nil, 0o644)
	if err := f.Rename("/ok", "/x\x02"); !errors.Is(err, ftpserver.ErrFileNameNotAllowed) {
		t.Errorf("rename to a bad name: %v", err)
	}
	// A name made outside FTP can still be renamed away.
	os.WriteFile(filepath.Join(root, "odd\x01"), nil, 0o644)
	if err := f.Rename("/odd\x01", "/fixed"); err != nil {
		t.Errorf("rename from an odd name: %v", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 2 {
		t.Errorf("%d entries, want ok and fixed", len(entries))
	}
	if !ValidName("/ümlaut/日本語 name.txt") {
		t.Error("UTF-8 name refused")
	}
}

func TestRestPastEndCreatesNothing(t *testing.T) {
	f, root := newFS(t, Options{})
	for _, off := range []int64{1, 1<<63 - 1} {
		if _, err := f.GetHandle("/new.bin", os.O_WRONLY|os.O_CREATE, off); err == nil {
			t.Errorf("REST %d on a missing file accepted", off)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "new.bin")); err == nil {
		t.Fatal("a refused REST+STOR created the file")
	}
}

func TestSiteChmodUmask(t *testing.T) {
	cwd := "/d"
	f, root := newFS(t, Options{Cwd: func() string { return cwd }, Umask: 0o022})
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	os.WriteFile(filepath.Join(root, "d", "f"), []byte("x"), 0o644)
	mode := func(p string) os.FileMode {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode()
	}
	if a := f.Site("CHMOD 640 f"); a.Code != 200 || mode("d/f").Perm() != 0o640 {
		t.Errorf("SITE CHMOD 640 f (relative to /d): %+v, mode %v", a, mode("d/f"))
	}
	for _, bad := range []string{"CHMOD 4755 f", "CHMOD 2755 f", "CHMOD 1777 /d"} {
		if a := f.Site(bad); a.Code < 500 {
			t.Errorf("SITE %s: %+v", bad, a)
		}
	}
	if m := mode("d/f"); m&(os.ModeSetuid|os.ModeSetgid) != 0 || mode("d")&os.ModeSticky != 0 {
		t.Errorf("special bits set: %v %v", m, mode("d"))
	}
	for _, bad := range []string{"CHMOD 9 f", "CHMOD 644", "CHMOD", "CHMOD 644 /nope", "CHMOD 755 /"} {
		if a := f.Site(bad); a.Code < 500 {
			t.Errorf("SITE %s: %+v", bad, a)
		}
	}
	for _, other := range []string{"SYMLINK f l", "CHOWN 0 f", "MKDIR x", "RMDIR d", "EXEC ls", ""} {
		if a := f.Site(other); a.Code != 500 {
			t.Errorf("SITE %s: %+v, want 500", other, a)
		}
	}
	if a := f.Site("HELP"); a.Code != 214 || !strings.Contains(a.Message, "CHMOD") {
		t.Errorf("SITE HELP: %+v", a)
	}
	if a := f.Site("UMASK"); a.Code != 200 || !strings.Contains(a.Message, "022") {
		t.Errorf("SITE UMASK: %+v", a)
	}
	if a := f.Site("umask 027"); a.Code != 200 {
		t.Errorf("SITE UMASK 027: %+v", a)
	}
	h, err := f.GetHandle("/d/new", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, h, "n")
	h.Close()
	f.Mkdir("/d/sub", 0o755)
	if mode("d/new").Perm() != 0o640 || mode("d/sub").Perm() != 0o750 {
		t.Errorf("with umask 027: file %v, dir %v", mode("d/new"), mode("d/sub"))
	}
	// A replaced file keeps its own mode.
	os.Chmod(filepath.Join(root, "d", "f"), 0o666)
	h, _ = f.GetHandle("/d/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
	write(t, h, "y")
	h.Close()
	if mode("d/f").Perm() != 0o666 {
		t.Errorf("replaced file: %v, want 0666 kept", mode("d/f"))
	}
	ro, _ := newFS(t, Options{ReadOnly: true})
	if a := ro.Site("CHMOD 600 /"); a.Code < 500 {
		t.Errorf("read-only SITE CHMOD: %+v", a)
	}
	if f2, _ := newFS(t, Options{Umask: 0o077}); f2.Umask() != 0o077 {
		t.Errorf("seeded umask = %o", f2.Umask())
	}
}

func TestComputeHash(t *testing.T) {
	f, root := newFS(t, Options{})
	os.WriteFile(filepath.Join(root, "f"), []byte("0123456789"), 0o644)
	sum := sha256.Sum256([]byte("234"))
	if h, err := f.ComputeHash("/f", ftpserver.HASHAlgoSHA256, 2, 5); err != nil || h != hex.EncodeToString(sum[:]) {
		t.Errorf("SHA-256 of [2,5) = %s %v", h, err)
	}
	if _, err := f.ComputeHash("/", ftpserver.HASHAlgoSHA256, 0, 0); err == nil {
		t.Error("hash of a directory")
	}
	if _, err := f.ComputeHash("/"+PartPrefix+"x", ftpserver.HASHAlgoMD5, 0, 0); err == nil {
		t.Error("hash of a part name")
	}
}
