package xferlog

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	end := time.Date(2026, 3, 4, 8, 12, 30, 0, time.FixedZone("X", 3600))
	cases := []struct {
		r    Record
		want string
	}{
		{Record{End: end, Duration: 200 * time.Millisecond, Client: netip.MustParseAddr("::ffff:192.0.2.7"), Bytes: 37,
			Path: "/in coming/a\tb.txt", Upload: true, User: "mary", Complete: true},
			"Wed Mar  4 07:12:30 2026 1 192.0.2.7 37 /in_coming/a_b.txt b _ i r mary ftp 0 * c\n"},
		{Record{End: end, Duration: 2600 * time.Millisecond, Client: netip.MustParseAddr("2001:db8::1"), Bytes: 0,
			Path: "/f", User: "bob"},
			"Wed Mar  4 07:12:30 2026 3 2001:db8::1 0 /f b _ o r bob ftp 0 * i\n"},
	}
	for _, c := range cases {
		if got := Format(c.r); got != c.want {
			t.Errorf("Format:\n got %q\nwant %q", got, c.want)
		}
	}
}

func TestWriterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xferlog")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r := Record{End: time.Now(), Client: netip.MustParseAddr("192.0.2.1"), Path: "/f", User: "u", Complete: true}
	w.Write(r)
	os.Rename(path, path+".1") // logrotate
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	w.Write(r)
	for _, p := range []string{path, path + ".1"} {
		if b, _ := os.ReadFile(p); len(b) == 0 || b[len(b)-1] != '\n' {
			t.Errorf("%s: %q", p, b)
		}
	}
}
