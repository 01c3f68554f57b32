package server

import (
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/driver"
)

type fakeInfo struct {
	name string
	dir  bool
}

func (f fakeInfo) Name() string { return f.name }
func (f fakeInfo) Size() int64  { return 42 }
func (f fakeInfo) Mode() os.FileMode {
	if f.dir {
		return os.ModeDir | 0o750
	}
	return 0o640
}
func (f fakeInfo) ModTime() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
func (f fakeInfo) IsDir() bool        { return f.dir }
func (f fakeInfo) Sys() any           { return nil }

func TestFacts(t *testing.T) {
	if got := factsLine(fakeInfo{name: "f"}, false, allFacts, "f"); got != "type=file;size=42;modify=20260102030405;perm=adfrw;unix.mode=0640; f" {
		t.Errorf("file facts: %s", got)
	}
	if got := factsLine(fakeInfo{name: "d", dir: true}, true, []string{"type", "perm"}, "d"); got != "type=dir;perm=el; d" {
		t.Errorf("read-only dir facts: %s", got)
	}
	sel := selectFacts("Type;SIZE;bogus;unix.mode;")
	if strings.Join(sel, ";") != "type;size;unix.mode" {
		t.Errorf("selectFacts = %v", sel)
	}
	if got := factList(allFacts, sel); got != "type*;size*;modify;perm;unix.mode*;unix.owner;unix.group;" {
		t.Errorf("factList = %s", got)
	}
	if got := hashList("MD5"); got != "SHA-256;SHA-512;SHA-1;MD5*;CRC32;" {
		t.Errorf("hashList = %s", got)
	}
}

// TestReplyRewrite: what ftpserverlib writes is fixed on the way out, line
// by line, however its writes are split.
func TestReplyRewrite(t *testing.T) {
	srv, cli := net.Pipe()
	defer cli.Close()
	sess := &session{log: slog.New(slog.DiscardHandler)}
	c := newCtlConn(srv, sess)
	c.markUpload()
	upload := c.upload
	in := "150 Using transfer connection\r\n" +
		"552 Issue during transfer: network error: error transferring data: insufficient storage space\r\n" +
		"550 Could not access file: driver error: calling GetHandle: no such file or directory\r\n" +
		"550 Couldn't parse size: strconv.ParseInt: parsing \"x\": invalid syntax\r\n" +
		"550 Could not list: " + driver.UnavailableText + "\r\n"
	go func() {
		for i := 0; i < len(in); i += 7 {
			c.Write([]byte(in[i:min(i+7, len(in))]))
		}
		srv.Close()
	}()
	out, _ := io.ReadAll(cli)
	want := "150 Using transfer connection\r\n" +
		"452 Issue during transfer: insufficient storage space\r\n" +
		"550 Could not access file: no such file or directory\r\n" +
		"550 Couldn't parse size: invalid syntax\r\n" +
		"451 Could not list: " + driver.UnavailableText + "\r\n"
	if string(out) != want {
		t.Errorf("rewritten replies:\n%q\nwant\n%q", out, want)
	}
	select {
	case <-upload:
	default:
		t.Error("the upload's final reply did not end the wait")
	}
}

func TestLsLine(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if got := lsLine(fakeInfo{name: "f"}, now); got != "-rw-r----- 1 ftp ftp           42 Jan  2 03:04 f" {
		t.Errorf("lsLine = %q", got)
	}
	if got := lsLine(fakeInfo{name: "d", dir: true}, now.AddDate(1, 0, 0)); !strings.Contains(got, "Jan  2  2026 d") {
		t.Errorf("old entry: %q", got)
	}
}
