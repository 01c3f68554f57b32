package driver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/minio/minio-go/v7"

	"github.com/ftpsd/ftpsd/internal/s3test"
)

// One SeaweedFS for the package's tests, started by the first that needs
// it and stopped by TestMain.
var shared struct {
	once sync.Once
	srv  *s3test.Server
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	os.Exit(code)
}

const testBucket = "driver-test"

// s3fs returns an S3Fs over a prefix of its own, with small parts.
func s3fs(t *testing.T, opts S3Options) (*S3Fs, *s3test.Server) {
	t.Helper()
	shared.once.Do(func() {
		shared.srv, shared.err = s3test.Start(s3test.Options{})
		if shared.err == nil {
			_, shared.err = shared.srv.Bucket(testBucket)
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	srv := shared.srv
	c, err := NewS3Client(S3Config{Host: srv.Host, PathStyle: true, Region: "us-east-1",
		AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if opts.PartSize == 0 {
		opts.PartSize = 5 << 20
	}
	prefix := "t/" + strings.ReplaceAll(t.Name(), "/", "_") + fmt.Sprintf("-%d/", time.Now().UnixNano())
	return c.Fs(testBucket, prefix, opts), srv
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + i>>13)
	}
	return b
}

func writeFile(t *testing.T, fsys *S3Fs, name string, data []byte) {
	t.Helper()
	f, err := fsys.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, fsys *S3Fs, name string) []byte {
	t.Helper()
	f, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawKeys lists every key under the file system's prefix, as stored.
func rawKeys(t *testing.T, srv *s3test.Server, fsys *S3Fs) []string {
	t.Helper()
	var keys []string
	for oi := range srv.Client.ListObjects(context.Background(), testBucket, minio.ListObjectsOptions{Prefix: fsys.prefix, Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		keys = append(keys, strings.TrimPrefix(oi.Key, fsys.prefix))
	}
	return keys
}

func incomplete(t *testing.T, srv *s3test.Server, fsys *S3Fs) int {
	t.Helper()
	n := 0
	for u := range srv.Client.ListIncompleteUploads(context.Background(), testBucket, fsys.prefix, true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		n++
	}
	return n
}

func TestS3MultipartRoundTrip(t *testing.T) {
	fsys, srv := s3fs(t, S3Options{})
	// Three and a bit parts: multipart, with a short last part.
	data := pattern(3*fsys.opts.PartSize + 12345)
	f, err := fsys.Create("/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	// Through ReadFrom, as a transfer's io.Copy does.
	if _, err := io.Copy(f, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if got := rawKeys(t, srv, fsys); len(got) != 0 {
		t.Fatalf("object visible before Close: %v", got)
	}
	if incomplete(t, srv, fsys) != 1 {
		t.Fatal("expected one multipart upload in progress")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, fsys, "big.bin"), data) {
		t.Fatal("read back differs")
	}
	fi, err := fsys.Stat("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(data)) || fi.IsDir() || time.Since(fi.ModTime()) > time.Hour || fi.ModTime().After(time.Now().Add(time.Minute)) {
		t.Fatalf("stat: size %d dir %v mod %v", fi.Size(), fi.IsDir(), fi.ModTime())
	}
	if incomplete(t, srv, fsys) != 0 {
		t.Fatal("multipart upload left behind")
	}

	// Range reads: Seek then Read, and ReadAt.
	r, err := fsys.Open("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	off := int64(2*fsys.opts.PartSize - 7)
	if _, err := r.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(rest, data[off:]) {
		t.Fatalf("read from %d: %d bytes, err %v", off, len(rest), err)
	}
	buf := make([]byte, 100)
	if n, err := r.ReadAt(buf, 1000); n != 100 || err != nil || !bytes.Equal(buf, data[1000:1100]) {
		t.Fatalf("ReadAt: %d %v", n, err)
	}
	if n, err := r.ReadAt(buf, int64(len(data)-10)); n != 10 || err != io.EOF {
		t.Fatalf("ReadAt at the end: %d %v", n, err)
	}
}

func TestS3SmallFileSinglePut(t *testing.T) {
	fsys, srv := s3fs(t, S3Options{})
	writeFile(t, fsys, "small.txt", []byte("hello"))
	writeFile(t, fsys, "empty", nil)
	if got := readFile(t, fsys, "small.txt"); string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
	if fi, err := fsys.Stat("empty"); err != nil || fi.Size() != 0 || fi.IsDir() {
		t.Fatalf("empty file: %v %v", fi, err)
	}
	if got := rawKeys(t, srv, fsys); !slices.Equal(got, []string{"empty", "small.txt"}) {
		t.Fatalf("keys %v", got)
	}
}

func TestS3AbortKeepsOldObject(t *testing.T) {
	fsys, srv := s3fs(t, S3Options{})
	old := []byte("the old content")
	writeFile(t, fsys, "f", old)
	for _, size := range []int{100, 2*fsys.opts.PartSize + 1} { // single PUT and multipart
		f, err := fsys.Create("f")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(pattern(size)); err != nil {
			t.Fatal(err)
		}
		f.(*s3File).Abort()
		if got := readFile(t, fsys, "f"); !bytes.Equal(got, old) {
			t.Fatalf("size %d: old object changed to %d bytes", size, len(got))
		}
		if n := incomplete(t, srv, fsys); n != 0 {
			t.Fatalf("size %d: %d multipart uploads left", size, n)
		}
	}
	// A new name that was aborted never appears.
	f, _ := fsys.Create("new")
	f.Write(pattern(fsys.opts.PartSize + 1))
	f.(*s3File).Abort()
	if _, err := fsys.Stat("new"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("aborted new file: %v", err)
	}
}

func TestS3ListingPaginates(t *testing.T) {
	fsys, _ := s3fs(t, S3Options{ListPage: 2})
	if err := fsys.Mkdir("d", 0); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 7 {
		name := fmt.Sprintf("d/f%02d", i)
		writeFile(t, fsys, name, []byte(name))
		want = append(want, fmt.Sprintf("f%02d", i))
	}
	if err := fsys.Mkdir("d/sub", 0); err != nil {
		t.Fatal(err)
	}
	writeFile(t, fsys, "d/sub/inner", []byte("x"))
	want = append(want, "sub")
	infos, err := fsys.ReadDir("/d/")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fi := range infos {
		got = append(got, fi.Name())
		if fi.IsDir() != (fi.Name() == "sub") {
			t.Errorf("%s: IsDir %v", fi.Name(), fi.IsDir())
		}
		if !fi.IsDir() && fi.Size() != 5 {
			t.Errorf("%s: size %d", fi.Name(), fi.Size())
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("listing over pages of 2: %v, want %v", got, want)
	}
	// The store did cut the listing into pages (else the above proves nothing).
	page, err := fsys.c.core.ListObjectsV2(testBucket, fsys.prefix+"d/", "", "", "/", 2)
	if err != nil || !page.IsTruncated || len(page.Contents)+len(page.CommonPrefixes) != 2 {
		t.Fatalf("first page of 2: truncated %v, %d+%d entries, %v", page.IsTruncated, len(page.Contents), len(page.CommonPrefixes), err)
	}
	// Through afero's File.Readdir, in pieces.
	d, err := fsys.Open("d")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var names []string
	for {
		part, err := d.Readdirnames(3)
		names = append(names, part...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(names) != len(want) {
		t.Fatalf("Readdirnames(3): %v", names)
	}
}

func TestS3Directories(t *testing.T) {
	fsys, srv := s3fs(t, S3Options{})
	if err := fsys.Mkdir("a", 0); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Mkdir("a", 0); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Mkdir: %v", err)
	}
	if err := fsys.Mkdir("missing/b", 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Mkdir without parent: %v", err)
	}
	if _, err := fsys.Create("missing/f"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Create without parent: %v", err)
	}
	if fi, err := fsys.Stat("a"); err != nil || !fi.IsDir() {
		t.Fatalf("Stat dir: %v %v", fi, err)
	}
	writeFile(t, fsys, "a/f", []byte("x"))
	if _, err := fsys.Create("a"); !errors.Is(err, syscall.EISDIR) {
		t.Fatalf("Create over a directory: %v", err)
	}
	if err := fsys.Remove("a"); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("Remove non-empty dir: %v", err)
	}
	if err := fsys.Remove("a/f"); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Remove("a"); err != nil {
		t.Fatalf("Remove empty dir: %v", err)
	}
	if _, err := fsys.Stat("a"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("removed dir: %v", err)
	}
	// A directory that only exists as a prefix (written by another tool).
	if _, err := srv.Client.PutObject(context.Background(), testBucket, fsys.prefix+"implicit/deep/x", strings.NewReader("1"), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"implicit", "implicit/deep"} {
		if fi, err := fsys.Stat(d); err != nil || !fi.IsDir() {
			t.Fatalf("implicit dir %s: %v %v", d, fi, err)
		}
	}
	if err := fsys.MkdirAll("m/n/o", 0); err != nil {
		t.Fatal(err)
	}
	if err := fsys.RemoveAll("m"); err != nil {
		t.Fatal(err)
	}
	if got := rawKeys(t, srv, fsys); !slices.Equal(got, []string{"implicit/deep/x"}) {
		t.Fatalf("keys after RemoveAll: %v", got)
	}
}

func TestS3Rename(t *testing.T) {
	fsys, srv := s3fs(t, S3Options{})
	data := pattern(70000)
	writeFile(t, fsys, "src", data)
	fsys.Mkdir("dir", 0)
	if err := fsys.Rename("src", "dir/dst"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, fsys, "dir/dst"), data) {
		t.Fatal("renamed content differs")
	}
	if _, err := fsys.Stat("src"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("source still there: %v", err)
	}
	writeFile(t, fsys, "other", []byte("o"))
	if err := fsys.Rename("other", "dir/dst"); err != nil {
		t.Fatalf("rename over a file: %v", err)
	}
	if string(readFile(t, fsys, "dir/dst")) != "o" {
		t.Fatal("rename over a file did not replace it")
	}
	if err := fsys.Rename("dir", "dir2"); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("directory rename: %v", err)
	}
	if err := fsys.Rename("nope", "x"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("rename of a missing file: %v", err)
	}
	if got := rawKeys(t, srv, fsys); !slices.Equal(got, []string{"dir/", "dir/dst"}) {
		t.Fatalf("keys %v", got)
	}
}

func TestS3Confinement(t *testing.T) {
	fsys, srv := s3fs(t, S3Options{})
	writeFile(t, fsys, "../../../escape", []byte("1"))
	writeFile(t, fsys, "//a//..//b", []byte("2"))
	writeFile(t, fsys, "%2e%2e", []byte("3"))
	got := rawKeys(t, srv, fsys)
	if want := []string{"%2e%2e", "b", "escape"}; !slices.Equal(got, want) {
		t.Fatalf("keys %v, want %v (all under the prefix)", got, want)
	}
	// Nothing outside the prefix was written.
	for oi := range srv.Client.ListObjects(context.Background(), testBucket, minio.ListObjectsOptions{Prefix: "escape"}) {
		t.Fatalf("escaped: %v", oi.Key)
	}
	for _, bad := range []string{"a\\b", "nl\nname", "\xff"} {
		if _, err := fsys.Create(bad); !errors.Is(err, ftpserver.ErrFileNameNotAllowed) {
			t.Errorf("Create(%q): %v", bad, err)
		}
	}
	if _, err := fsys.Create(strings.Repeat("x", 1100)); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("long name: %v", err)
	}
	// The root is a directory that cannot be removed or renamed.
	if err := fsys.Remove("/"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Remove(/): %v", err)
	}
	if err := fsys.Rename("/", "x"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Rename(/): %v", err)
	}
}

func TestS3Unsupported(t *testing.T) {
	fsys, _ := s3fs(t, S3Options{})
	writeFile(t, fsys, "f", []byte("x"))
	if _, err := fsys.OpenFile("f", os.O_WRONLY|os.O_APPEND, 0); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("append: %v", err)
	}
	if _, err := fsys.OpenFile("f", os.O_WRONLY, 0); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("write in place: %v", err)
	}
	if err := fsys.Chmod("f", 0o600); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("chmod: %v", err)
	}
	if err := fsys.Chtimes("f", time.Now(), time.Now()); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("chtimes: %v", err)
	}
}

func TestS3MissingBucket(t *testing.T) {
	fsys, _ := s3fs(t, S3Options{})
	gone := fsys.c.Fs("no-such-bucket-here", "", S3Options{})
	_, err := gone.Stat("x")
	if err == nil || !strings.Contains(err.Error(), UnavailableText) {
		t.Fatalf("stat in a missing bucket: %v", err)
	}
}

func TestS3SweepUploads(t *testing.T) {
	fsys, srv := s3fs(t, S3Options{})
	f, _ := fsys.Create("dangling")
	f.Write(pattern(fsys.opts.PartSize + 1)) // starts a multipart upload
	if incomplete(t, srv, fsys) != 1 {
		t.Fatal("no upload in progress")
	}
	if n, err := fsys.SweepUploads(time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("sweep of recent uploads: %d %v", n, err)
	}
	if n, err := fsys.SweepUploads(time.Now().Add(time.Minute)); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if incomplete(t, srv, fsys) != 0 {
		t.Fatal("upload not aborted")
	}
}

// The ClientDriver over S3: what ftpserverlib calls for a session.
func TestS3ClientDriver(t *testing.T) {
	fsys, srv := s3fs(t, S3Options{})
	var recs []TransferRecord
	var complete error
	d := NewS3(fsys, Options{OnTransfer: func(r TransferRecord) { recs = append(recs, r) },
		UploadComplete: func() error { return complete }})
	defer d.Close()

	data := pattern(2*fsys.opts.PartSize + 99)
	up, err := d.GetHandle("/file.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(up, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := up.Close(); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Err != nil || recs[0].Bytes != int64(len(data)) || recs[0].Direction != "upload" {
		t.Fatalf("record %+v", recs)
	}

	// Download from an offset (REST): ftpserverlib seeks, then copies.
	down, err := d.GetHandle("file.bin", os.O_RDONLY, 5000)
	if err != nil {
		t.Fatal(err)
	}
	down.Seek(5000, io.SeekStart)
	got, err := io.ReadAll(down)
	if err != nil || !bytes.Equal(got, data[5000:]) {
		t.Fatalf("REST download: %d bytes, %v", len(got), err)
	}
	down.Close()

	// An upload whose stream broke is aborted; the object stays.
	up, _ = d.GetHandle("file.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
	up.Write(pattern(fsys.opts.PartSize + 5))
	up.(ftpserver.FileTransferError).TransferError(errors.New("connection reset"))
	if err := up.Close(); err == nil {
		t.Fatal("broken upload reported success")
	}
	// One that ended without TLS close_notify likewise.
	complete = errors.New("TLS stream truncated")
	up, _ = d.GetHandle("file.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
	up.Write([]byte("short"))
	if err := up.Close(); err == nil {
		t.Fatal("truncated upload reported success")
	}
	complete = nil
	if !bytes.Equal(readFile(t, fsys, "file.bin"), data) || incomplete(t, srv, fsys) != 0 {
		t.Fatal("aborted uploads changed the object or left uploads")
	}
	if recs[len(recs)-1].Err == nil {
		t.Fatal("aborted upload recorded as complete")
	}

	// HASH reads the object's range.
	sum := sha256.Sum256(data[10:20000])
	h, err := d.ComputeHash("/file.bin", ftpserver.HASHAlgoSHA256, 10, 20000)
	if err != nil || h != hex.EncodeToString(sum[:]) {
		t.Fatalf("hash %s %v", h, err)
	}

	// Resumed uploads cannot work on objects.
	if _, err := d.GetHandle("file.bin", os.O_WRONLY, 10); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("REST+STOR: %v", err)
	}
	if _, err := d.GetHandle("file.bin", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("APPE: %v", err)
	}
	// Listing, MLSD facts, RMD non-empty, SITE.
	if err := d.Mkdir("dir", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, fsys, "dir/x", []byte("x"))
	if err := d.RemoveDir("dir"); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("RMD non-empty: %v", err)
	}
	if err := d.Remove("dir"); !errors.Is(err, syscall.EISDIR) {
		t.Fatalf("DELE dir: %v", err)
	}
	infos, err := d.ReadDir("/")
	if err != nil || len(infos) != 2 {
		t.Fatalf("list: %v %v", infos, err)
	}
	if fi, ok := d.Listed("file.bin"); !ok || fi.Size() != int64(len(data)) {
		t.Fatalf("Listed: %v %v", fi, ok)
	}
	if a := d.Site("CHMOD 600 file.bin"); a.Code != ftpserver.StatusActionNotTaken {
		t.Fatalf("SITE CHMOD: %+v", a)
	}

	// A read-only user changes nothing.
	ro := NewS3(fsys, Options{ReadOnly: true})
	defer ro.Close()
	if _, err := ro.GetHandle("new", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0); !errors.Is(err, ErrReadOnly) && !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("read-only upload: %v", err)
	}
	for name, err := range map[string]error{
		"mkdir":  ro.Mkdir("d2", 0o755),
		"remove": ro.Remove("file.bin"),
		"rename": ro.Rename("file.bin", "y"),
		"rmdir":  ro.RemoveDir("dir"),
	} {
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("read-only %s: %v", name, err)
		}
	}
	if _, err := ro.Stat("file.bin"); err != nil {
		t.Fatal(err)
	}
}

// TestS3UploadMemoryBounded: an upload allocates about one part, not the
// file: 48 MiB through 5 MiB parts stays far under 48 MiB of allocations
// (whole-file buffering would need all of it).
func TestS3UploadMemoryBounded(t *testing.T) {
	fsys, _ := s3fs(t, S3Options{PartSize: 5 << 20})
	const size = 48 << 20
	chunk := pattern(1 << 20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := fsys.Create("mem.bin")
	if err != nil {
		t.Fatal(err)
	}
	for range size / len(chunk) {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d MiB for a %d MiB upload", alloc>>20, size>>20)
	if alloc > 32<<20 {
		t.Fatalf("allocated %d MiB for a %d MiB upload with 5 MiB parts", alloc>>20, size>>20)
	}
	if fi, err := fsys.Stat("mem.bin"); err != nil || fi.Size() != size {
		t.Fatalf("stored %v %v", fi, err)
	}
}
