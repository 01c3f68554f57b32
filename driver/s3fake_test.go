package driver

// Failures a real store will not produce on demand, against fake ones.

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeStore serves h as an S3 endpoint until the test ends and returns a
// client of it.
func fakeStore(t *testing.T, h http.HandlerFunc) *S3Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := NewS3Client(S3Config{Host: strings.TrimPrefix(srv.URL, "http://"), PathStyle: true, Region: "us-east-1",
		AccessKey: "a", SecretKey: "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestS3StalledStore: a store that stops sending in the middle of a
// download fails the read after opTimeout instead of holding it forever.
func TestS3StalledStore(t *testing.T) {
	defer func(d time.Duration) { opTimeout = d }(opTimeout)
	opTimeout = 300 * time.Millisecond
	c := fakeStore(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Content-Length", "1000")
		if r.Method == http.MethodHead {
			return
		}
		w.Write([]byte(strings.Repeat("x", 10)))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // then nothing more
	})
	f, err := c.Fs("bucket", "", S3Options{}).Open("f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(f)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), UnavailableText) {
			t.Fatalf("stalled read ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a stalled store holds the read")
	}
}

// TestS3PartRefusedAborts: when the store refuses a part, the write fails,
// Close reports it, and the multipart upload is aborted on the store.
func TestS3PartRefusedAborts(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	c := fakeStore(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		q := r.URL.Query()
		mu.Lock()
		switch {
		case r.Method == http.MethodPost && q.Has("uploads"):
			seen = append(seen, "create")
			w.Write([]byte(`<InitiateMultipartUploadResult><Bucket>bucket</Bucket><Key>f</Key><UploadId>up-1</UploadId></InitiateMultipartUploadResult>`))
		case r.Method == http.MethodPut && q.Has("partNumber"):
			seen = append(seen, "part")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`<Error><Code>AccessDenied</Code><Message>no</Message></Error>`))
		case r.Method == http.MethodDelete && q.Get("uploadId") == "up-1":
			seen = append(seen, "abort")
			w.WriteHeader(http.StatusNoContent)
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusNotFound) // nothing exists yet
		case r.Method == http.MethodGet && q.Has("list-type"):
			w.Write([]byte(`<ListBucketResult><Name>bucket</Name><IsTruncated>false</IsTruncated></ListBucketResult>`))
		default:
			seen = append(seen, r.Method+" "+r.URL.String())
			w.WriteHeader(http.StatusNotImplemented)
		}
		mu.Unlock()
	})
	fsys := c.Fs("bucket", "", S3Options{PartSize: 1 << 10})
	f, err := fsys.Create("f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 3<<10)); err == nil || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("write with a refused part: %v", err)
	}
	if err := f.Close(); err == nil {
		t.Fatal("Close reported success")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"create", "part", "abort"}; !slices.Equal(seen, want) {
		t.Fatalf("requests %v, want %v", seen, want)
	}
}

// TestS3ReplacedObjectFailsRead: an object replaced between Open (HEAD)
// and the first read (GET) fails the download instead of serving the new
// object cut at the old size with a 226: every GET is pinned to the ETag
// the HEAD saw, and the store answers 412 when it no longer matches.
func TestS3ReplacedObjectFailsRead(t *testing.T) {
	const v1, v2 = `"11111111111111111111111111111111"`, `"22222222222222222222222222222222"`
	c := fakeStore(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		if r.Method == http.MethodHead { // version 1: 10 bytes
			w.Header().Set("ETag", v1)
			w.Header().Set("Content-Length", "10")
			return
		}
		// By the GET, version 2 (100,000 bytes) has replaced it.
		if m := r.Header.Get("If-Match"); m != "" && m != v2 {
			w.WriteHeader(http.StatusPreconditionFailed)
			w.Write([]byte(`<Error><Code>PreconditionFailed</Code><Message>changed</Message></Error>`))
			return
		}
		w.Header().Set("ETag", v2)
		w.Header().Set("Content-Length", "100000")
		w.Write([]byte(strings.Repeat("N", 100000)))
	})
	f, err := c.Fs("bucket", "", S3Options{}).Open("f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if !errors.Is(err, errChanged) {
		t.Fatalf("read %d bytes of a replaced object, error %v; want %v", len(got), err, errChanged)
	}
}

// TestS3StoreErrorReachesClient: a store refusing a part for quota, on the
// ReadFrom path a data connection takes, is reported as the store's
// refusal (no space), not as a failed data connection.
func TestS3StoreErrorReachesClient(t *testing.T) {
	c := fakeStore(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		q := r.URL.Query()
		switch {
		case r.Method == http.MethodPost && q.Has("uploads"):
			w.Write([]byte(`<InitiateMultipartUploadResult><Bucket>bucket</Bucket><Key>f</Key><UploadId>up-1</UploadId></InitiateMultipartUploadResult>`))
		case r.Method == http.MethodPut && q.Has("partNumber"):
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`<Error><Code>EntityTooLarge</Code><Message>quota</Message></Error>`))
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusNotFound)
		case r.Method == http.MethodGet && q.Has("list-type"):
			w.Write([]byte(`<ListBucketResult><Name>bucket</Name><IsTruncated>false</IsTruncated></ListBucketResult>`))
		default:
			w.WriteHeader(http.StatusNotImplemented)
		}
	})
	d := NewS3(c.Fs("bucket", "", S3Options{PartSize: 1 << 10}), Options{})
	tr, err := d.GetHandle("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A reader without WriteTo, as a data connection: io.Copy uses ReadFrom.
	_, err = io.Copy(tr, struct{ io.Reader }{bytes.NewReader(make([]byte, 3<<10))})
	tr.Close()
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("quota refusal during an upload reached ftpserverlib as %v, want %v", err, ErrNoSpace)
	}
}

// TestS3UploadBufferFollowsData: an upload's buffer grows with what it
// received, so a client that has sent little holds little, and only a
// full part's buffer is part-sized.
func TestS3UploadBufferFollowsData(t *testing.T) {
	w := (&S3Fs{opts: S3Options{PartSize: DefaultPartSize}}).newWriter("k")
	defer w.release()
	if _, err := w.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if c := cap(*w.buf); c > firstBuffer {
		t.Fatalf("one byte received: %d-byte buffer", c)
	}
	chunk := make([]byte, 100_000)
	for range 10 { // 1,000,001 bytes, under one part: no request to the store
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if l, c := len(*w.buf), cap(*w.buf); l != 1_000_001 || c > 2*l {
		t.Fatalf("%d bytes received: buffer of %d bytes, capacity %d", 1_000_001, l, c)
	}
	for i, b := range (*w.buf)[1:] {
		if b != 0 || (*w.buf)[0] != 1 {
			t.Fatalf("byte %d changed while the buffer grew", i+1)
		}
	}
}
