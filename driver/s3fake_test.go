package driver

// Failures a real store will not produce on demand, against fake ones.

import (
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestS3StalledStore: a store that stops sending in the middle of a
// download fails the read after opTimeout instead of holding it forever.
func TestS3StalledStore(t *testing.T) {
	defer func(d time.Duration) { opTimeout = d }(opTimeout)
	opTimeout = 300 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Content-Length", "1000")
		if r.Method == http.MethodHead {
			return
		}
		w.Write([]byte(strings.Repeat("x", 10)))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // then nothing more
	}))
	defer srv.Close()
	c, err := NewS3Client(S3Config{Host: strings.TrimPrefix(srv.URL, "http://"), PathStyle: true, Region: "us-east-1",
		AccessKey: "a", SecretKey: "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
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
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	}))
	defer srv.Close()
	c, err := NewS3Client(S3Config{Host: strings.TrimPrefix(srv.URL, "http://"), PathStyle: true, Region: "us-east-1",
		AccessKey: "a", SecretKey: "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
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
