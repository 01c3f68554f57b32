package driver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/minio/minio-go/v7"
	"github.com/spf13/afero"
)

// s3File is an open object (reading, with range requests from the current
// offset), a directory (Readdir) or a new object being written (w).
type s3File struct {
	fs   *S3Fs
	name string // as opened, for Readdir
	key  string
	info *s3Info

	off  int64
	body io.ReadCloser // the current range read, from off
	// progress and stop belong to body's request (stallCtx).
	progress, stop func()

	entries []os.FileInfo
	listed  bool

	w      *s3Writer
	closed bool
}

var _ afero.File = (*s3File)(nil)

var errClosed = &publicError{"file already closed", fs.ErrClosed}

// errChanged ends a download whose object was replaced after it was opened.
var errChanged = &publicError{"file changed during the transfer", io.ErrUnexpectedEOF}

func (f *s3File) Name() string { return f.info.name }

func (f *s3File) Stat() (os.FileInfo, error) {
	if f.w != nil {
		fi := *f.info
		fi.size = f.w.size
		return &fi, nil
	}
	return f.info, nil
}

// getOptions pins every read of the file to the object Stat saw: an
// object replaced in the meantime fails the read (PreconditionFailed)
// instead of mixing two versions or ending early with a 226.
func (f *s3File) getOptions() minio.GetObjectOptions {
	var opts minio.GetObjectOptions
	if f.info.etag != "" {
		opts.SetMatchETag(f.info.etag)
	}
	return opts
}

// open starts a range read at the current offset.
func (f *s3File) open() error {
	opts := f.getOptions()
	if f.off > 0 {
		if err := opts.SetRange(f.off, 0); err != nil {
			return err
		}
	}
	// The body streams for as long as the transfer takes, but not longer
	// than opTimeout without a byte.
	c, progress, stop := stallCtx()
	body, _, _, err := f.fs.c.core.GetObject(c, f.fs.bucket, f.key, opts)
	if err != nil {
		stop()
		return f.fs.fail("get", f.key, err)
	}
	f.body, f.progress, f.stop = body, progress, stop
	return nil
}

// endRead closes the current range read.
func (f *s3File) endRead() {
	if f.body != nil {
		f.body.Close()
		f.stop()
		f.body = nil
	}
}

func (f *s3File) Read(p []byte) (int, error) {
	switch {
	case f.closed:
		return 0, errClosed
	case f.w != nil:
		return 0, &publicError{"file is open for writing", fs.ErrInvalid}
	case f.info.dir:
		return 0, errIsDir
	case f.off >= f.info.size:
		return 0, io.EOF
	case len(p) == 0:
		return 0, nil
	}
	if f.body == nil {
		if err := f.open(); err != nil {
			return 0, err
		}
	}
	n, err := f.body.Read(p)
	f.off += int64(n)
	if n > 0 {
		f.progress()
	}
	if err != nil && err != io.EOF {
		f.endRead()
		return n, f.fs.fail("read", f.key, err)
	}
	if err == io.EOF && f.off < f.info.size {
		// The object changed under us (replaced by a shorter one).
		return n, errChanged
	}
	return n, err
}

func (f *s3File) ReadAt(p []byte, off int64) (int, error) {
	if f.closed {
		return 0, errClosed
	}
	if off >= f.info.size {
		return 0, io.EOF
	}
	opts := f.getOptions()
	end := min(off+int64(len(p)), f.info.size) - 1
	if err := opts.SetRange(off, end); err != nil {
		return 0, err
	}
	c, cancel := ctx()
	defer cancel()
	body, _, _, err := f.fs.c.core.GetObject(c, f.fs.bucket, f.key, opts)
	if err != nil {
		return 0, f.fs.fail("get", f.key, err)
	}
	defer body.Close()
	n, err := io.ReadFull(body, p[:end-off+1])
	if err != nil {
		return n, f.fs.fail("read", f.key, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Seek moves the read offset; the next Read starts a new range request.
func (f *s3File) Seek(offset int64, whence int) (int64, error) {
	if f.closed {
		return 0, errClosed
	}
	if f.w != nil {
		if offset == 0 && whence != io.SeekEnd {
			return f.w.size, nil
		}
		return 0, &publicError{"seeking in a file being written is not supported on object storage", errors.ErrUnsupported}
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = f.off + offset
	case io.SeekEnd:
		abs = f.info.size + offset
	default:
		return 0, &publicError{"invalid whence", fs.ErrInvalid}
	}
	if abs < 0 {
		return 0, &publicError{"negative offset", fs.ErrInvalid}
	}
	if abs != f.off {
		f.endRead()
	}
	f.off = abs
	return abs, nil
}

func (f *s3File) Readdir(count int) ([]os.FileInfo, error) {
	if !f.info.dir {
		return nil, errNotDir
	}
	if !f.listed {
		entries, err := f.fs.ReadDir(f.name)
		if err != nil {
			return nil, err
		}
		f.entries, f.listed = entries, true
	}
	if count <= 0 {
		out := f.entries
		f.entries = nil
		return out, nil
	}
	if len(f.entries) == 0 {
		return nil, io.EOF
	}
	n := min(count, len(f.entries))
	out := f.entries[:n]
	f.entries = f.entries[n:]
	return out, nil
}

func (f *s3File) Readdirnames(n int) ([]string, error) {
	fis, err := f.Readdir(n)
	names := make([]string, len(fis))
	for i, fi := range fis {
		names[i] = fi.Name()
	}
	return names, err
}

func (f *s3File) Write(p []byte) (int, error) {
	if f.closed {
		return 0, errClosed
	}
	if f.w == nil {
		return 0, &publicError{"file is not open for writing", fs.ErrPermission}
	}
	return f.w.Write(p)
}

// ReadFrom fills the part buffer straight from r (io.Copy prefers it).
func (f *s3File) ReadFrom(r io.Reader) (int64, error) {
	if f.closed {
		return 0, errClosed
	}
	if f.w == nil {
		return 0, &publicError{"file is not open for writing", fs.ErrPermission}
	}
	return f.w.ReadFrom(r)
}

func (f *s3File) WriteAt([]byte, int64) (int, error) {
	return 0, &publicError{"writing at an offset is not supported on object storage", errors.ErrUnsupported}
}

func (f *s3File) WriteString(s string) (int, error) { return f.Write([]byte(s)) }

func (f *s3File) Truncate(size int64) error {
	if f.w != nil && size == f.w.size {
		return nil
	}
	return &publicError{"truncating is not supported on object storage", errors.ErrUnsupported}
}

// Sync has nothing to flush: an object is durable once Close stored it.
func (f *s3File) Sync() error { return nil }

// Close ends a read, or stores what was written as the object.
func (f *s3File) Close() error {
	if f.closed {
		return errClosed
	}
	f.closed = true
	f.endRead()
	if f.w != nil {
		return f.w.commit()
	}
	return nil
}

// Abort discards a file opened for writing: nothing it was given becomes
// visible, and an object of the same name stays as it was.
func (f *s3File) Abort() {
	if f.closed {
		return
	}
	f.closed = true
	if f.w != nil {
		f.w.abort()
	}
}

// partBuffers recycles part buffers between uploads of the same size.
var partBuffers sync.Map // part size -> *sync.Pool of *[]byte

func getPart(size int) *[]byte {
	p, _ := partBuffers.LoadOrStore(size, &sync.Pool{New: func() any {
		b := make([]byte, 0, size)
		return &b
	}})
	return p.(*sync.Pool).Get().(*[]byte)
}

func putPart(b *[]byte) {
	if p, ok := partBuffers.Load(cap(*b)); ok {
		*b = (*b)[:0]
		p.(*sync.Pool).Put(b)
	}
}

// s3Writer streams an upload as a multipart upload, one part buffer at a
// time: memory stays at one part however large the file. A file smaller
// than one part is stored with a single PUT instead.
type s3Writer struct {
	fs       *S3Fs
	key      string
	buf      *[]byte // nil until the first read, and after commit or abort
	size     int64
	uploadID string
	parts    []minio.CompletePart
	err      error // the first failure; the upload can only be aborted then
	done     bool
}

func (s *S3Fs) newWriter(k string) *s3Writer { return &s3Writer{fs: s, key: k} }

// firstBuffer is where an upload's buffer starts: it doubles up to the
// part size as data arrives, so an upload holds about as much memory as it
// has received (a client that sends nothing, or trickles, holds little),
// and only a buffer that reached the part size comes from the pool.
const firstBuffer = 64 << 10

// buffer returns the current part's buffer with room for more data.
func (w *s3Writer) buffer() []byte {
	part := w.fs.opts.PartSize
	if w.buf == nil {
		b := make([]byte, 0, min(firstBuffer, part))
		w.buf = &b
	}
	b := *w.buf
	if len(b) == cap(b) && cap(b) < part {
		var nb *[]byte
		if next := 2 * cap(b); next < part {
			grown := make([]byte, len(b), next)
			nb = &grown
		} else {
			nb = getPart(part)
			*nb = (*nb)[:len(b)]
		}
		copy(*nb, b)
		w.buf = nb
	}
	return *w.buf
}

// full reports whether the buffer holds a whole part.
func (w *s3Writer) full() bool { return len(*w.buf) == w.fs.opts.PartSize }

func (w *s3Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	written := 0
	for len(p) > 0 {
		b := w.buffer()
		n := copy(b[len(b):cap(b)], p)
		*w.buf = b[:len(b)+n]
		p = p[n:]
		written += n
		w.size += int64(n)
		if w.full() {
			if err := w.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (w *s3Writer) ReadFrom(r io.Reader) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	var total int64
	for {
		b := w.buffer()
		n, err := r.Read(b[len(b):cap(b)])
		*w.buf = b[:len(b)+n]
		total += int64(n)
		w.size += int64(n)
		if w.full() {
			if ferr := w.flush(); ferr != nil {
				return total, ferr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// flush sends the buffer as the next part, starting the multipart upload
// with the first one.
func (w *s3Writer) flush() error {
	c, cancel := ctx()
	defer cancel()
	if w.uploadID == "" {
		id, err := w.fs.c.core.NewMultipartUpload(c, w.fs.bucket, w.key, minio.PutObjectOptions{})
		if err != nil {
			w.err = w.fs.fail("start upload", w.key, err)
			return w.err
		}
		w.uploadID = id
	}
	num := len(w.parts) + 1
	data := *w.buf
	part, err := w.fs.c.core.PutObjectPart(c, w.fs.bucket, w.key, w.uploadID, num,
		bytes.NewReader(data), int64(len(data)), minio.PutObjectPartOptions{})
	if err != nil {
		w.err = w.fs.fail("upload part", w.key, err)
		return w.err
	}
	w.parts = append(w.parts, minio.CompletePart{PartNumber: num, ETag: part.ETag})
	*w.buf = data[:0]
	return nil
}

// commit makes the object visible: one PUT, or the multipart upload's
// last part and completion. On failure the upload is aborted.
func (w *s3Writer) commit() error {
	if w.done {
		return nil
	}
	defer w.release()
	if w.err != nil {
		w.abort()
		return w.err
	}
	if w.uploadID == "" {
		var data []byte
		if w.buf != nil {
			data = *w.buf
		}
		c, cancel := ctx()
		defer cancel()
		_, err := w.fs.c.core.PutObject(c, w.fs.bucket, w.key, bytes.NewReader(data), int64(len(data)), "", "", minio.PutObjectOptions{})
		w.done = true
		return w.fs.fail("put", w.key, err)
	}
	if w.buf != nil && len(*w.buf) > 0 {
		if err := w.flush(); err != nil {
			w.abort()
			return err
		}
	}
	c, cancel := ctx()
	defer cancel()
	if _, err := w.fs.c.core.CompleteMultipartUpload(c, w.fs.bucket, w.key, w.uploadID, w.parts, minio.PutObjectOptions{}); err != nil {
		w.abort()
		return w.fs.fail("complete upload", w.key, err)
	}
	w.done = true
	return nil
}

// abort discards the upload; a multipart upload is aborted on the server,
// so its parts do not linger (and cost) there.
func (w *s3Writer) abort() {
	if w.done {
		return
	}
	w.done = true
	defer w.release()
	if w.uploadID == "" {
		return
	}
	c, cancel := ctx()
	defer cancel()
	if err := w.fs.c.core.AbortMultipartUpload(c, w.fs.bucket, w.key, w.uploadID); err != nil {
		w.fs.c.log.Warn("object storage: abort of an incomplete upload failed; a bucket lifecycle rule "+
			"(AbortIncompleteMultipartUpload) or ftpsd's next start removes it",
			"bucket", w.fs.bucket, "key", w.key, "upload_id", w.uploadID, "err", err)
	}
}

func (w *s3Writer) release() {
	if w.buf != nil {
		putPart(w.buf)
		w.buf = nil
	}
}

// String names the upload in logs.
func (w *s3Writer) String() string { return fmt.Sprintf("s3://%s/%s", w.fs.bucket, w.key) }
