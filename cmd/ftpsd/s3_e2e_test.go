package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ftpsd/ftpsd/internal/s3test"
	"github.com/ftpsd/ftpsd/internal/testns"
)

// s3Storage runs SeaweedFS inside ns (stopped when t ends), makes bucket,
// and returns the server and the [storage.s3] TOML that points ftpsd at it
// (for serverOpts.extra; users get roots through serverOpts.roots, e.g.
// "s3://" + bucket + "/alice"). Nodes in the same namespace can share it.
func s3Storage(t *testing.T, ns *testns.NS, bucket string) (*s3test.Server, string) {
	t.Helper()
	srv, err := s3test.Start(s3test.Options{
		Command: ns.Command,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	if _, err := srv.Bucket(bucket); err != nil {
		t.Fatal(err)
	}
	creds, err := srv.CredentialsFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return srv, fmt.Sprintf("\n[storage.s3]\nendpoint = %q\nregion = \"us-east-1\"\npath_style = true\ncredentials_file = %q\n",
		srv.Endpoint, creds)
}

const e2eBucket = "ftpsd-e2e"

// object reads a key straight from the store.
func object(t *testing.T, srv *s3test.Server, key string) ([]byte, error) {
	t.Helper()
	o, err := srv.Client.GetObject(context.Background(), e2eBucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer o.Close()
	return io.ReadAll(o)
}

func keys(t *testing.T, srv *s3test.Server, prefix string) []string {
	t.Helper()
	var out []string
	for oi := range srv.Client.ListObjects(context.Background(), e2eBucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		out = append(out, strings.TrimPrefix(oi.Key, prefix))
	}
	return out
}

func uploadsInProgress(t *testing.T, srv *s3test.Server) int {
	t.Helper()
	n := 0
	for u := range srv.Client.ListIncompleteUploads(context.Background(), e2eBucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		n++
	}
	return n
}

// TestS3AndBalancer shares one namespace and one SeaweedFS (about 10 s
// to start) between a standalone node on S3 and the scaled-out topology:
// two nodes on the same bucket behind HAProxy.
func TestS3AndBalancer(t *testing.T) {
	ns := newNS(t)
	srv, s3conf := s3Storage(t, ns, e2eBucket)
	t.Run("standalone", func(t *testing.T) { testS3Storage(t, ns, srv, s3conf) })
	t.Run("behind HAProxy", func(t *testing.T) { testBehindHAProxy(t, ns, srv, s3conf) })
}

// testS3Storage serves alice (and the read-only reader, on the same
// prefix) from s3://ftpsd-e2e/alice with real clients; one ftpsd for all
// the steps. ftpsd runs as nobody, with a credentials file only root can
// read: it reads the keys before dropping privileges. It listens on
// srvIP4 alone, with a passive range of its own, beside the cluster's
// nodes that share the namespace.
func testS3Storage(t *testing.T, ns *testns.NS, srv *s3test.Server, extra string) {
	root := "s3://" + e2eBucket + "/alice"
	dir := t.TempDir()
	xfer := filepath.Join(dir, "xferlog")
	extra += fmt.Sprintf("\n[log]\nxferlog = %q\n", xfer)
	s := &ftpsd{t: t, ns: ns, dir: dir, host: srvIP4, cfgPath: writeConfig(t, dir, serverOpts{extra: extra, host: srvIP4,
		ports: "51000-51099", roots: map[string]string{"alice": root, "reader": root}})}
	uid, gid := startAsNobody(t, s, "")
	base := fmt.Sprintf("ftp://%s:%d/", srvIP4, ctlPort)

	// 10 MiB: past one 8 MiB part, so uploads of it are multipart.
	big := randomFile(t, filepath.Join(s.dir, "big.bin"), 10<<20)
	small := randomFile(t, filepath.Join(s.dir, "small.bin"), 300_000)

	t.Run("curl", func(t *testing.T) {
		s.mustRun(60*time.Second, "curl", curlArgs(s, "alice", "-T", "big.bin", base+"sub/big.bin", "--ftp-create-dirs")...)
		s.mustRun(60*time.Second, "curl", curlArgs(s, "alice", "-T", "small.bin", base+"small.bin")...)
		for key, want := range map[string][]byte{"alice/sub/big.bin": big, "alice/small.bin": small} {
			if got, err := object(t, srv, key); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s in the bucket: %d bytes, %v", key, len(got), err)
			}
		}
		s.mustRun(60*time.Second, "curl", curlArgs(s, "alice", "-o", "back.bin", base+"sub/big.bin")...)
		if got, _ := os.ReadFile(filepath.Join(s.dir, "back.bin")); !bytes.Equal(got, big) {
			t.Fatal("curl download differs")
		}
		list := s.mustRun(30*time.Second, "curl", curlArgs(s, "alice", base)...)
		if !strings.Contains(list, "small.bin") || !strings.Contains(list, "300000") || !strings.Contains(list, "sub") {
			t.Fatalf("listing:\n%s", list)
		}
	})

	t.Run("rest", func(t *testing.T) {
		// curl -C - resumes from what the local file already has.
		part := filepath.Join(s.dir, "resumed.bin")
		os.WriteFile(part, big[:3<<20+17], 0o644)
		s.mustRun(60*time.Second, "curl", curlArgs(s, "alice", "-C", "-", "-o", "resumed.bin", base+"sub/big.bin")...)
		if got, _ := os.ReadFile(part); !bytes.Equal(got, big) {
			t.Fatal("resumed download differs")
		}
		s.waitLog(fmt.Sprintf("offset=%d", 3<<20+17), 5*time.Second)
		// And with the Go client, checking the reply to REST.
		c := s.client(cliA4, srvIP4, "alice")
		if _, err := c.Expect(350, "REST 1000"); err != nil {
			t.Fatal(err)
		}
		got, err := c.Retr("RETR small.bin")
		if err != nil || !bytes.Equal(got, small[1000:]) {
			t.Fatalf("REST 1000 + RETR: %d bytes, %v", len(got), err)
		}
		// An upload cannot resume: objects are written whole.
		if _, err := c.Expect(350, "REST 10"); err != nil {
			t.Fatal(err)
		}
		if err := c.Stor("STOR small.bin", []byte("x")); err == nil || !strings.Contains(err.Error(), "not supported on object storage") {
			t.Fatalf("REST+STOR: %v", err)
		}
	})

	t.Run("killed-upload", func(t *testing.T) {
		previous := []byte("the previous version")
		if _, err := srv.Client.PutObject(context.Background(), e2eBucket, "alice/precious.bin", bytes.NewReader(previous),
			int64(len(previous)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		check := func(how string) {
			t.Helper()
			waitFor(t, 15*time.Second, how+": previous object intact and no upload left", func() bool {
				got, err := object(t, srv, "alice/precious.bin")
				return err == nil && bytes.Equal(got, previous) && uploadsInProgress(t, srv) == 0
			})
		}
		aborted := countLines(s.log.String(), "direction=upload", `result="aborted`)

		// 1. The data connection's TCP stream is cut without TLS
		// close_notify, after more than a part: a multipart upload is open.
		cutUpload(t, s, "precious.bin", big)
		check("TCP cut")

		// 2. The whole client dies: control and data both reset.
		resetUpload(t, s, "precious.bin", big)
		check("client reset")

		// 3. ABOR in the middle of the upload, the data connection left open.
		c := s.client(cliA4, srvIP4, "alice")
		data, err := c.Begin("STOR precious.bin")
		if err != nil {
			t.Fatal(err)
		}
		data.Write(big)
		if err := abort(c); err != nil {
			t.Fatal(err)
		}
		data.Close()
		check("ABOR")

		// 4. A real curl killed in the middle of a rate-limited upload.
		cmd := s.ns.Command("curl", curlArgs(s, "alice", "--limit-rate", "4M", "-T", "big.bin", base+"precious.bin")...)
		cmd.Dir = s.dir
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "curl's upload under way", func() bool { return uploadsInProgress(t, srv) > 0 })
		cmd.Process.Kill()
		cmd.Wait()
		waitFor(t, 15*time.Second, "four more aborted uploads in the log", func() bool {
			return countLines(s.log.String(), "direction=upload", `result="aborted`) == aborted+4
		})
		check("curl killed")
	})

	t.Run("lftp-mirror", func(t *testing.T) {
		lftpMirror(t, s, "put small.bin -o lftp-small.bin\nget lftp-small.bin -o lftp-back.bin\n")
		if got, _ := os.ReadFile(filepath.Join(s.dir, "lftp-back.bin")); !bytes.Equal(got, small) {
			t.Fatal("lftp put/get differs")
		}
		// "" is the marker of up/ itself.
		want := []string{"", "a/", "a/b/", "a/b/two.bin", "a/one.bin", "c/", "c/three.txt", "empty-dir/", "empty-dir/.keep"}
		if got := keys(t, srv, "alice/up/"); !slices.Equal(got, want) {
			t.Fatalf("keys under up/: %v, want %v", got, want)
		}
	})

	t.Run("files-and-dirs", func(t *testing.T) {
		c := s.client(cliA4, srvIP4, "alice")
		steps := []struct {
			code int
			cmd  string
		}{
			{257, "MKD d"},
			{550, "MKD d"},
			{550, "MKD missing/d"},
		}
		for _, st := range steps {
			if _, err := c.Expect(st.code, "%s", st.cmd); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Stor("STOR d/f.txt", []byte("content")); err != nil {
			t.Fatal(err)
		}
		for _, st := range []struct {
			code int
			cmd  string
			text string
		}{
			{550, "RMD d", "not empty"},
			{550, "DELE d", "directory"},
			{350, "RNFR d/f.txt", ""},
			{250, "RNTO g.txt", ""},
			{350, "RNFR d", ""},
			{550, "RNTO d2", "renaming a directory is not supported"},
			{213, "SIZE g.txt", "7"},
			{550, "SITE CHMOD 600 g.txt", "no permission bits"},
			{550, "MFMT 20200101000000 g.txt", "not supported on object storage"},
			{250, "RMD d", ""},
			{550, "CWD d", ""},
			{250, "DELE g.txt", ""},
			{550, "RETR g.txt", ""},
		} {
			rep, err := c.Expect(st.code, "%s", st.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(rep.String(), st.text) {
				t.Errorf("%s: %v, want %q", st.cmd, rep, st.text)
			}
		}
		// MDTM and MLSD facts come from the object's metadata.
		if err := c.Stor("STOR m.txt", []byte("12345")); err != nil {
			t.Fatal(err)
		}
		rep, err := c.Expect(213, "MDTM m.txt")
		if err != nil {
			t.Fatal(err)
		}
		mod, err := time.Parse("20060102150405", strings.Fields(rep.String())[1])
		if err != nil || time.Since(mod) > 10*time.Minute || time.Until(mod) > 10*time.Minute {
			t.Errorf("MDTM %v: %v", rep, err)
		}
		mlsd, err := c.Retr("MLSD")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(mlsd), "type=file;size=5;modify="+mod.Format("20060102150405")) ||
			!strings.Contains(string(mlsd), "type=dir;") {
			t.Errorf("MLSD:\n%s", mlsd)
		}
		// Unix facts: fixed modes, the server's account (nobody) as owner.
		if _, err := c.Expect(200, "OPTS MLST type;size;modify;unix.mode;unix.owner;unix.group;"); err != nil {
			t.Fatal(err)
		}
		if mlsd, err = c.Retr("MLSD"); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(mlsd), fmt.Sprintf("unix.mode=0644;unix.owner=%d;unix.group=%d; m.txt", uid, gid)) {
			t.Errorf("MLSD unix facts:\n%s", mlsd)
		}
		group, _ := user.LookupGroupId(fmt.Sprint(gid))
		list, err := c.Retr("LIST")
		if err != nil || group == nil || !regexp.MustCompile(`-rw-r--r-- 1 nobody `+group.Name+` +5 .* m\.txt`).Match(list) {
			t.Errorf("LIST: %v\n%s", err, list)
		}
		// HASH reads the object.
		sum := sha256.Sum256([]byte("12345"))
		if rep, err := c.Expect(213, "HASH m.txt"); err != nil || !strings.Contains(rep.String(), fmt.Sprintf("%x", sum)) {
			t.Errorf("HASH: %v %v", rep, err)
		}
	})

	t.Run("read-only", func(t *testing.T) {
		c := s.client(cliA4, srvIP4, "reader")
		got, err := c.Retr("RETR small.bin")
		if err != nil || !bytes.Equal(got, small) {
			t.Fatalf("reader download: %v", err)
		}
		if err := c.Stor("STOR new.bin", []byte("x")); err == nil {
			t.Fatal("read-only upload accepted")
		}
		for _, cmd := range []string{"DELE small.bin", "MKD x", "RMD up"} {
			if _, err := c.Expect(550, "%s", cmd); err != nil {
				t.Error(err)
			}
		}
		if _, err := c.Expect(350, "RNFR small.bin"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Expect(550, "RNTO other.bin"); err != nil {
			t.Error(err)
		}
		if _, err := object(t, srv, "alice/small.bin"); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(keys(t, srv, "alice/"), "new.bin") {
			t.Fatal("read-only upload stored")
		}
	})

	// A reload as nobody cannot read the credentials again, and need not:
	// the client made at start goes on serving.
	t.Run("reload", func(t *testing.T) {
		s.cmd.Process.Signal(syscall.SIGHUP)
		s.waitLog("reloaded users", 10*time.Second)
		c := s.client(cliA4, srvIP4, "alice")
		if got, err := c.Retr("RETR small.bin"); err != nil || !bytes.Equal(got, small) {
			t.Fatalf("download after reload: %v", err)
		}
		if err := c.Stor("STOR after-reload.bin", []byte("ok")); err != nil {
			t.Fatal(err)
		}
	})

	// Every transfer is in the transfer log and the xferlog, as for local users.
	if n := countLines(s.log.String(), "msg=transfer", "user=alice"); n < 8 {
		t.Errorf("only %d transfer log lines for alice", n)
	}
	var complete, incomplete int
	for _, l := range parseXferlog(t, xfer) {
		if l.file == "/sub/big.bin" && l.dir == "i" && l.status == "c" && l.bytes == int64(len(big)) {
			complete++
		}
		if l.file == "/precious.bin" && l.dir == "i" && l.status == "i" {
			incomplete++
		}
	}
	if complete != 1 || incomplete != 4 {
		t.Errorf("xferlog: %d complete uploads of /sub/big.bin (want 1), %d incomplete of /precious.bin (want 4)", complete, incomplete)
	}
}
