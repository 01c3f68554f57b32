package driver

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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
