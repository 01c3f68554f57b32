package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/spf13/afero"
)

// DefaultPartSize is the multipart part size of uploads to object storage,
// and so the memory one upload holds: one part buffer, filled from the data
// connection and sent before the next is read. S3 wants at least 5 MiB per
// part (but the last) and at most 10,000 parts, so 8 MiB parts allow
// objects up to 78 GiB.
const DefaultPartSize = 8 << 20

// opTimeout bounds one request (stat, copy, delete, one part upload: at
// least 70 KB/s for an 8 MiB part), and how long a streaming read or a
// listing may go without progress, so that a store that stops answering
// cannot hold a transfer (and its part buffer) forever.
var opTimeout = 2 * time.Minute

// S3Config says how to reach an S3-compatible service.
type S3Config struct {
	Host      string // host[:port]
	Secure    bool   // https
	Region    string
	PathStyle bool
	AccessKey string
	SecretKey string
	Token     string
	// Transport, if set, carries the requests (tests use it to reach a
	// server inside a network namespace).
	Transport http.RoundTripper
}

// S3Client is one connection pool to an S3 service, shared by every user
// whose root is on it.
type S3Client struct {
	core *minio.Core
	log  *slog.Logger
}

// NewS3Client prepares a client; it sends no request.
func NewS3Client(c S3Config, log *slog.Logger) (*S3Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lookup := minio.BucketLookupDNS
	if c.PathStyle {
		lookup = minio.BucketLookupPath
	}
	core, err := minio.NewCore(c.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(c.AccessKey, c.SecretKey, c.Token),
		Secure:       c.Secure,
		Region:       c.Region,
		BucketLookup: lookup,
		Transport:    c.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", c.Host, err)
	}
	return &S3Client{core: core, log: log}, nil
}

// S3Options tune one user's object file system.
type S3Options struct {
	// PartSize is the multipart part size (default DefaultPartSize). Tests
	// use small parts; real S3 refuses parts under 5 MiB but the last.
	PartSize int
	// ListPage is how many keys one list request asks for (default: the
	// server's, 1000 on S3).
	ListPage int
}

// S3Fs is an afero.Fs over the keys under one prefix of a bucket.
// Directories are prefixes: a directory exists if a marker object
// "dir/" or any key under "dir/" exists; Mkdir writes the marker.
// Writes become visible only when the file is closed, all at once (a
// single PUT or a completed multipart upload); Abort on a file opened for
// writing discards everything written.
type S3Fs struct {
	c              *S3Client
	bucket, prefix string
	opts           S3Options
}

var _ afero.Fs = (*S3Fs)(nil)

// Fs returns the file system of the keys under prefix ("" or ending in "/").
func (c *S3Client) Fs(bucket, prefix string, opts S3Options) *S3Fs {
	if opts.PartSize <= 0 {
		opts.PartSize = DefaultPartSize
	}
	return &S3Fs{c: c, bucket: bucket, prefix: prefix, opts: opts}
}

// Name identifies the file system.
func (s *S3Fs) Name() string { return "s3" }

// errUnsupported is what object storage cannot do (modes, owners, times).
var errUnsupported = &publicError{"not supported on object storage", errors.ErrUnsupported}

// errDirRename is a directory rename, which would be a copy of every key.
var errDirRename = &publicError{"renaming a directory is not supported on object storage", fs.ErrPermission}

// UnavailableText is the reply text of a storage failure that may pass
// (network, throttling, missing bucket); the server answers it with 451.
const UnavailableText = "storage temporarily unavailable"

// key maps an FTP path to its object key. Cleaning the absolute path
// removes "..", "." and empty segments, so no name leaves the prefix; key
// is "" for the root itself. Keys are sent URL-encoded, so '%' and other
// bytes reach the server as the literal name. Backslashes (which some
// S3 implementations turn into '/') and control characters are refused.
func (s *S3Fs) key(name string) (string, error) {
	clean := path.Clean("/" + name)
	if clean == "/" {
		return "", nil
	}
	rel := clean[1:]
	if strings.ContainsRune(rel, '\\') || !ValidName(rel) {
		return "", ErrBadName
	}
	k := s.prefix + rel
	if len(k)+1 > 1024 { // +1: a directory's marker has a trailing '/'
		return "", &publicError{"file name too long", syscall.ENAMETOOLONG}
	}
	return k, nil
}

// entryKey is key for an entry that is removed or renamed: the root
// itself is refused.
func (s *S3Fs) entryKey(name string) (string, error) {
	k, err := s.key(name)
	if err == nil && k == "" {
		return "", &publicError{"permission denied", fs.ErrPermission}
	}
	return k, err
}

// dirKey is the prefix of a directory's contents: "" + prefix for the root.
func (s *S3Fs) dirKey(k string) string {
	if k == "" {
		return s.prefix
	}
	return k + "/"
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

// stallCtx is cancelled when progress (the returned func) is not reported
// for opTimeout; stop releases it.
func stallCtx() (c context.Context, progress func(), stop func()) {
	c, cancel := context.WithCancel(context.Background())
	t := time.AfterFunc(opTimeout, cancel)
	return c, func() { t.Reset(opTimeout) }, func() { t.Stop(); cancel() }
}

// fail maps an S3 error to what a client may see, and logs what the
// operator must fix or watch (missing bucket, refused keys, network).
func (s *S3Fs) fail(op, k string, err error) error {
	if err == nil {
		return nil
	}
	var pe *publicError
	if errors.As(err, &pe) {
		return pe
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey", "NotFound", "NoSuchUpload":
		return &publicError{"no such file or directory", fs.ErrNotExist}
	case "PreconditionFailed":
		return errChanged
	case "AccessDenied", "AllAccessDisabled":
		s.c.log.Warn("object storage refused a request", "op", op, "bucket", s.bucket, "key", k, "err", err)
		return &publicError{"permission denied", fs.ErrPermission}
	case "EntityTooLarge", "QuotaExceeded":
		return ErrNoSpace
	case "KeyTooLongError", "InvalidObjectName", "XMinioInvalidObjectName":
		return &publicError{"file name not allowed by the object storage", ErrBadName.kind}
	case "NoSuchBucket":
		s.c.log.Error("object storage: bucket does not exist", "op", op, "bucket", s.bucket, "err", err)
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken":
		s.c.log.Error("object storage: credentials refused", "op", op, "bucket", s.bucket, "err", err)
	default:
		s.c.log.Warn("object storage request failed", "op", op, "bucket", s.bucket, "key", k, "err", err)
	}
	return &publicError{UnavailableText, err}
}

func notFound(err error) bool {
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NotFound":
		return true
	}
	return false
}

// s3Info describes an object or a directory (prefix).
type s3Info struct {
	name string
	size int64
	mod  time.Time
	dir  bool
	etag string // of the object as stated; reads are pinned to it
}

func (i *s3Info) Name() string { return i.name }
func (i *s3Info) Size() int64  { return i.size }

// Mode is fixed: objects have no permission bits, and every user sees
// their own files as theirs.
func (i *s3Info) Mode() os.FileMode {
	if i.dir {
		return os.ModeDir | 0o755
	}
	return 0o644
}
func (i *s3Info) ModTime() time.Time { return i.mod }
func (i *s3Info) IsDir() bool        { return i.dir }

// Sys gives the owner facts (LIST's owner and group, MLSD's unix.owner and
// unix.group) the account ftpsd runs as, as for what it writes to disk:
// the objects are the server's, whoever uploaded them.
func (i *s3Info) Sys() any {
	return &syscall.Stat_t{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), Size: i.size, Mode: uint32(i.Mode().Perm())}
}

func base(k string) string {
	return path.Base("/" + strings.TrimSuffix(k, "/"))
}

// Stat finds a file (an object) or a directory (a marker or keys under it).
// An object and a prefix of the same name: the object wins.
func (s *S3Fs) Stat(name string) (os.FileInfo, error) {
	k, err := s.key(name)
	if err != nil {
		return nil, err
	}
	return s.stat(k)
}

func (s *S3Fs) stat(k string) (*s3Info, error) {
	if k == "" {
		return &s3Info{name: "/", dir: true, mod: dirTime}, nil
	}
	c, cancel := ctx()
	defer cancel()
	oi, err := s.c.core.StatObject(c, s.bucket, k, minio.StatObjectOptions{})
	if err == nil {
		return &s3Info{name: base(k), size: oi.Size, mod: oi.LastModified, etag: oi.ETag}, nil
	}
	if !notFound(err) {
		return nil, s.fail("stat", k, err)
	}
	ok, err := s.dirExists(k)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &publicError{"no such file or directory", fs.ErrNotExist}
	}
	return &s3Info{name: base(k), dir: true, mod: dirTime}, nil
}

// dirTime is the time every directory shows: a prefix has none, and a
// marker's would differ from what the listing of its parent shows.
var dirTime = time.Unix(0, 0).UTC()

// dirExists reports whether anything has the prefix k+"/".
func (s *S3Fs) dirExists(k string) (bool, error) {
	c, cancel := ctx()
	defer cancel()
	for oi := range s.c.core.Client.ListObjects(c, s.bucket, minio.ListObjectsOptions{Prefix: s.dirKey(k), MaxKeys: 1}) {
		if oi.Err != nil {
			return false, s.fail("list", k, oi.Err)
		}
		return true, nil
	}
	return false, nil
}

// parentExists checks the directory a new entry goes into, as a file
// system would: object storage alone would create any prefix.
func (s *S3Fs) parentExists(k string) error {
	parent := path.Dir("/" + strings.TrimPrefix(k, s.prefix))
	if parent == "/" {
		return nil
	}
	fi, err := s.stat(s.prefix + parent[1:])
	switch {
	case err != nil:
		return err
	case !fi.dir:
		return errNotDir
	}
	return nil
}

// ReadDir lists a directory, page by page (ListObjects follows the
// continuation tokens). Keys that no FTP name can address (empty
// segments, "." or "..") are left out.
func (s *S3Fs) ReadDir(name string) ([]os.FileInfo, error) {
	k, err := s.key(name)
	if err != nil {
		return nil, err
	}
	if k != "" {
		fi, err := s.stat(k)
		if err != nil {
			return nil, err
		}
		if !fi.dir {
			return nil, errNotDir
		}
	}
	prefix := s.dirKey(k)
	c, progress, stop := stallCtx()
	defer stop()
	var out []os.FileInfo
	for oi := range s.c.core.Client.ListObjects(c, s.bucket, minio.ListObjectsOptions{Prefix: prefix, MaxKeys: s.opts.ListPage}) {
		progress()
		if oi.Err != nil {
			return nil, s.fail("list", prefix, oi.Err)
		}
		rest := strings.TrimPrefix(oi.Key, prefix)
		dir := strings.HasSuffix(rest, "/")
		rest = strings.TrimSuffix(rest, "/")
		if rest == "" || rest == "." || rest == ".." || strings.Contains(rest, "/") || strings.ContainsRune(rest, '\\') {
			continue
		}
		fi := &s3Info{name: rest, size: oi.Size, mod: oi.LastModified, dir: dir, etag: oi.ETag}
		if dir {
			fi.size, fi.mod = 0, dirTime
		}
		out = append(out, fi)
	}
	return out, nil
}

// Mkdir writes the directory's marker object.
func (s *S3Fs) Mkdir(name string, _ os.FileMode) error {
	k, err := s.key(name)
	if err != nil {
		return err
	}
	if k == "" {
		return &publicError{"file exists", fs.ErrExist}
	}
	if err := s.parentExists(k); err != nil {
		return err
	}
	if _, err := s.stat(k); err == nil {
		return &publicError{"file exists", fs.ErrExist}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return s.putMarker(k)
}

func (s *S3Fs) putMarker(k string) error {
	c, cancel := ctx()
	defer cancel()
	_, err := s.c.core.PutObject(c, s.bucket, k+"/", strings.NewReader(""), 0, "", "", minio.PutObjectOptions{})
	return s.fail("mkdir", k, err)
}

// MkdirAll writes the markers of the directory and its missing parents.
func (s *S3Fs) MkdirAll(name string, _ os.FileMode) error {
	k, err := s.key(name)
	if err != nil || k == "" {
		return err
	}
	rel := strings.TrimPrefix(k, s.prefix)
	segs := strings.Split(rel, "/")
	for i := range segs {
		p := s.prefix + strings.Join(segs[:i+1], "/")
		fi, err := s.stat(p)
		switch {
		case err == nil && !fi.dir:
			return errNotDir
		case err == nil:
			continue
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		if err := s.putMarker(p); err != nil {
			return err
		}
	}
	return nil
}

// Create opens a new object for writing.
func (s *S3Fs) Create(name string) (afero.File, error) {
	return s.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

// Open opens a file or directory for reading.
func (s *S3Fs) Open(name string) (afero.File, error) {
	return s.OpenFile(name, os.O_RDONLY, 0)
}

// OpenFile opens for reading, or for writing a whole new object (O_TRUNC or
// a name that does not exist yet). Objects cannot be changed in place, so
// O_APPEND and writes into an existing object without O_TRUNC are refused.
func (s *S3Fs) OpenFile(name string, flag int, _ os.FileMode) (afero.File, error) {
	k, err := s.key(name)
	if err != nil {
		return nil, err
	}
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_APPEND|os.O_TRUNC|os.O_CREATE) == 0 {
		fi, err := s.stat(k)
		if err != nil {
			return nil, err
		}
		return &s3File{fs: s, name: name, key: k, info: fi}, nil
	}
	if flag&os.O_APPEND != 0 {
		return nil, &publicError{"appending is not supported on object storage", errors.ErrUnsupported}
	}
	if k == "" {
		return nil, errIsDir
	}
	if err := s.parentExists(k); err != nil {
		return nil, err
	}
	fi, err := s.stat(k)
	switch {
	case err == nil && fi.dir:
		return nil, errIsDir
	case err == nil && flag&os.O_EXCL != 0:
		return nil, &publicError{"file exists", fs.ErrExist}
	case err == nil && flag&os.O_TRUNC == 0:
		return nil, &publicError{"changing part of a file is not supported on object storage", errors.ErrUnsupported}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, err
	case err != nil && flag&os.O_CREATE == 0:
		return nil, err
	}
	return &s3File{fs: s, name: name, key: k, info: &s3Info{name: base(k), mod: time.Now()}, w: s.newWriter(k)}, nil
}

// Remove deletes a file, or an empty directory's marker.
func (s *S3Fs) Remove(name string) error {
	k, err := s.entryKey(name)
	if err != nil {
		return err
	}
	fi, err := s.stat(k)
	if err != nil {
		return err
	}
	if fi.dir {
		return s.removeDir(k)
	}
	return s.remove(k)
}

func (s *S3Fs) remove(k string) error {
	c, cancel := ctx()
	defer cancel()
	return s.fail("delete", k, s.c.core.RemoveObject(c, s.bucket, k, minio.RemoveObjectOptions{}))
}

// removeDir deletes a directory's marker if nothing else is under it.
func (s *S3Fs) removeDir(k string) error {
	c, cancel := ctx()
	defer cancel()
	marker := k + "/"
	for oi := range s.c.core.Client.ListObjects(c, s.bucket, minio.ListObjectsOptions{Prefix: marker, MaxKeys: 2}) {
		if oi.Err != nil {
			return s.fail("list", k, oi.Err)
		}
		if oi.Key != marker {
			return &publicError{"directory not empty", syscall.ENOTEMPTY}
		}
	}
	return s.remove(marker)
}

// RemoveAll deletes a file or a directory and every key under it.
func (s *S3Fs) RemoveAll(name string) error {
	k, err := s.entryKey(name)
	if err != nil {
		return err
	}
	c, progress, stop := stallCtx()
	defer stop()
	keys := make(chan minio.ObjectInfo)
	go func() {
		defer close(keys)
		for oi := range s.c.core.Client.ListObjects(c, s.bucket, minio.ListObjectsOptions{Prefix: k + "/", Recursive: true}) {
			if oi.Err != nil {
				return
			}
			select {
			case keys <- oi:
			case <-c.Done():
				return
			}
		}
	}()
	for re := range s.c.core.RemoveObjects(c, s.bucket, keys, minio.RemoveObjectsOptions{}) {
		progress()
		if re.Err != nil {
			return s.fail("delete", re.ObjectName, re.Err)
		}
	}
	if _, err := s.stat(k); err == nil {
		return s.remove(k)
	}
	return nil
}

// Rename copies a file on the server (ComposeObject: a plain copy up to
// 5 GiB, a multipart copy beyond) and then deletes the original. It is
// not atomic: for a moment both names exist, and a failed delete leaves
// both. Directories are refused: their rename would copy every key.
func (s *S3Fs) Rename(oldname, newname string) error {
	o, err := s.entryKey(oldname)
	if err != nil {
		return err
	}
	n, err := s.entryKey(newname)
	if err != nil {
		return err
	}
	fi, err := s.stat(o)
	if err != nil {
		return err
	}
	if fi.dir {
		return errDirRename
	}
	if o == n {
		return nil
	}
	if err := s.parentExists(n); err != nil {
		return err
	}
	if dst, err := s.stat(n); err == nil && dst.dir {
		return errIsDir
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	_, err = s.c.core.ComposeObject(c, minio.CopyDestOptions{Bucket: s.bucket, Object: n},
		minio.CopySrcOptions{Bucket: s.bucket, Object: o})
	if err != nil {
		return s.fail("copy", o, err)
	}
	return s.remove(o)
}

// Chmod is refused: objects have no permission bits.
func (s *S3Fs) Chmod(string, os.FileMode) error { return errUnsupported }

// Chown is refused: objects have no owners.
func (s *S3Fs) Chown(string, int, int) error { return errUnsupported }

// Chtimes is refused: an object's time is when it was written.
func (s *S3Fs) Chtimes(string, time.Time, time.Time) error { return errUnsupported }

// SweepUploads aborts the incomplete multipart uploads under the prefix
// that were started before before: those of a server that died mid-upload.
// Live uploads of other nodes sharing the bucket are younger than any
// sensible cut-off, which the caller chooses accordingly.
func (s *S3Fs) SweepUploads(before time.Time) (int, error) {
	c, cancel := ctx()
	defer cancel()
	n := 0
	for u := range s.c.core.ListIncompleteUploads(c, s.bucket, s.prefix, true) {
		if u.Err != nil {
			return n, s.fail("list uploads", s.prefix, u.Err)
		}
		if !u.Initiated.Before(before) {
			continue
		}
		if err := s.c.core.AbortMultipartUpload(c, s.bucket, u.Key, u.UploadID); err != nil && !notFound(err) &&
			minio.ToErrorResponse(err).Code != "NoSuchUpload" {
			return n, s.fail("abort upload", u.Key, err)
		}
		n++
	}
	return n, nil
}
