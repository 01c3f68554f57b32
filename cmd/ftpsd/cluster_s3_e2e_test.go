package main

// The scaled-out topology README describes, whole: HAProxy (send-proxy-v2)
// in front of two ftpsd nodes whose users live in one S3 bucket
// (SeaweedFS), so whichever node a client lands on it sees the same files.

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
)

func TestClusterSharesS3Bucket(t *testing.T) {
	ns := newNS(t)
	srv, s3conf := s3Storage(t, ns, e2eBucket)
	root := "s3://" + e2eBucket + "/alice"
	c := startCluster(t, ns, clusterOpts{
		roots: map[string]string{"alice": root, "reader": root},
		node:  func(_ int, o *serverOpts) { o.extra += s3conf },
	})
	work := c.nodes[0].dir

	// on opens sessions through the balancer until one lands on node i
	// (the PASV reply names the node that answered), and returns it with
	// that pending passive port.
	on := func(i int) (*ftpclient.Client, string, int) {
		t.Helper()
		for range 8 {
			cl := c.client(cluA, "alice")
			host, port, err := cl.PASV()
			if err != nil {
				t.Fatal(err)
			}
			if host == nodeIPs[i] {
				return cl, host, port
			}
			cl.Quit()
		}
		t.Fatalf("8 sessions through the balancer, none on node %d", i+1)
		return nil, "", 0
	}

	// 9 MiB: more than one 8 MiB part, so the upload is multipart.
	want := randomFile(t, filepath.Join(work, "cross.bin"), 9<<20)

	t.Run("upload on node A, download on node B", func(t *testing.T) {
		a, host, port := on(0)
		data, err := a.DialDataAt(host, port)
		if err != nil {
			t.Fatal(err)
		}
		if rep, err := a.Cmd("STOR cross.bin"); err != nil || rep.Code != 150 {
			t.Fatalf("STOR on node A: %v %v", rep, err)
		}
		data.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := data.Write(want); err != nil {
			t.Fatal(err)
		}
		data.Close()
		if rep, err := a.Read(); err != nil || rep.Code != 226 {
			t.Fatalf("after STOR on node A: %v %v", rep, err)
		}
		if rep, err := a.Cmd("MKD made-on-a"); err != nil || rep.Code != 257 {
			t.Fatalf("MKD on node A: %v %v", rep, err)
		}
		a.Quit()
		if got, err := object(t, srv, "alice/cross.bin"); err != nil || sum(got) != sum(want) {
			t.Fatalf("the bucket holds %d bytes (%v), want node A's upload", len(got), err)
		}

		b, host, port := on(1)
		data, err = b.DialDataAt(host, port)
		if err != nil {
			t.Fatal(err)
		}
		if rep, err := b.Cmd("RETR cross.bin"); err != nil || rep.Code != 150 {
			t.Fatalf("RETR on node B: %v %v", rep, err)
		}
		data.SetDeadline(time.Now().Add(60 * time.Second))
		got, err := io.ReadAll(data)
		if err != nil || sum(got) != sum(want) {
			t.Fatalf("node B served %d bytes (%v), not node A's upload", len(got), err)
		}
		data.Close()
		if rep, err := b.Read(); err != nil || rep.Code != 226 {
			t.Fatalf("after RETR on node B: %v %v", rep, err)
		}
		list, err := b.Retr("MLSD")
		if err != nil || !strings.Contains(string(list), "type=dir;") || !strings.Contains(string(list), " made-on-a\r\n") ||
			!strings.Contains(string(list), fmt.Sprintf("size=%d;", len(want))) {
			t.Fatalf("node B's listing does not show node A's changes (%v):\n%s", err, list)
		}
		b.Quit()
	})

	t.Run("curl through the balancer", func(t *testing.T) {
		// Whichever nodes curl's two sessions land on, the second sees the
		// first's upload.
		base := fmt.Sprintf("ftp://%s/", c.lb)
		curl := func(args ...string) {
			c.run(60*time.Second, "curl", append(curlArgs(nil, "alice", "--no-ftp-skip-pasv-ip", "--interface", cluA), args...)...)
		}
		curl("-T", "cross.bin", base+"viacurl/cross.bin", "--ftp-create-dirs")
		curl("-o", "curl-back.bin", base+"viacurl/cross.bin")
		if got := mustRead(t, filepath.Join(work, "curl-back.bin")); sum(got) != sum(want) {
			t.Fatal("curl's download through the balancer differs from its upload")
		}
	})
}
