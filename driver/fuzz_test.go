package driver

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRel: every FTP path maps to "." or a clean relative name that
// cannot climb: no "..", no leading slash. A backslash is an ordinary
// character of a name on Unix (as vsftpd has it), so "..\\x" is one name,
// not a way up: os.Root only ever splits on "/".
func FuzzRel(f *testing.F) {
	for _, s := range []string{"", "/", ".", "..", "../secret", "/a/../../b", "..\\..\\secret", "a//b/./c/", "/" + PartPrefix + "x", "a/\x00/b", "\\\\server\\share"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		r, err := rel(name)
		if err != nil {
			return
		}
		if r == "." {
			return
		}
		if strings.HasPrefix(r, "/") || r != filepath.Clean(r) {
			t.Fatalf("rel(%q) = %q: not a clean relative name", name, r)
		}
		for _, seg := range strings.Split(r, "/") {
			if seg == ".." || seg == "" {
				t.Fatalf("rel(%q) = %q: segment %q", name, r, seg)
			}
		}
	})
}

// FuzzConfinement opens, lists and stats arbitrary paths in a root that
// has symlinks pointing out of it: nothing may read the file kept next to
// the root, or list the directory above it.
func FuzzConfinement(f *testing.F) {
	for _, s := range []string{"../secret", "/link-abs", "/link-rel", "/link-dir/secret", "/sub/../../secret", "link-dir/../secret", "/sub/inner-link/secret", "%2e%2e/secret"} {
		f.Add(s)
	}
	dir := f.TempDir()
	root := filepath.Join(dir, "root")
	must := func(err error) {
		if err != nil {
			f.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "secret"), []byte("outside"), 0o644))
	must(os.WriteFile(filepath.Join(root, "in.txt"), []byte("inside"), 0o644))
	must(os.Symlink(filepath.Join(dir, "secret"), filepath.Join(root, "link-abs")))
	must(os.Symlink("../secret", filepath.Join(root, "link-rel")))
	must(os.Symlink(dir, filepath.Join(root, "link-dir")))
	must(os.Symlink("../..", filepath.Join(root, "sub", "inner-link")))
	fsys, err := New(root, Options{ReadOnly: true})
	must(err)
	f.Cleanup(func() { fsys.Close() })
	f.Fuzz(func(t *testing.T, name string) {
		if file, err := fsys.Open(name); err == nil {
			b, _ := io.ReadAll(io.LimitReader(file, 64))
			file.Close()
			if string(b) == "outside" {
				t.Fatalf("Open(%q) read the file outside the root", name)
			}
		}
		if infos, err := fsys.ReadDir(name); err == nil {
			for _, fi := range infos {
				if fi.Name() == "secret" || fi.Name() == "root" {
					t.Fatalf("ReadDir(%q) listed the directory above the root", name)
				}
			}
		}
		if fi, err := fsys.Stat(name); err == nil && fi.Name() == "secret" {
			t.Fatalf("Stat(%q) reached the file outside the root", name)
		}
	})
}

// FuzzS3Key: every FTP path maps to the prefix itself or to a key under it
// whose segments are plain names: no "", "." or "..", no backslash (which
// some stores treat as a separator), nothing a store could read as a way
// out of the prefix.
func FuzzS3Key(f *testing.F) {
	for _, s := range []string{"", "/", ".", "..", "../x", "/a/../../b", "a//b/./c/", "..\\..\\x", "%2e%2e/x", "a/\x00/b", "\xff", strings.Repeat("a/", 600)} {
		f.Add(s)
	}
	fsys := (&S3Client{}).Fs("bucket", "users/alice/", S3Options{})
	f.Fuzz(func(t *testing.T, name string) {
		k, err := fsys.key(name)
		if err != nil || k == "" {
			return
		}
		rest, ok := strings.CutPrefix(k, "users/alice/")
		if !ok || len(k) > 1023 {
			t.Fatalf("key(%q) = %q: outside the prefix or too long", name, k)
		}
		for _, seg := range strings.Split(rest, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.ContainsRune(seg, '\\') || !ValidName(seg) {
				t.Fatalf("key(%q) = %q: segment %q", name, k, seg)
			}
		}
	})
}
