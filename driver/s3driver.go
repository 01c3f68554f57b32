package driver

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/spf13/afero"
)

// Where a user on object storage differs from one on disk:
//   - uploads are multipart uploads that become the object only when the
//     transfer completed (s3file.go), instead of a hidden part file renamed
//     into place; REST+STOR and APPE are refused (an object cannot be
//     changed in place);
//   - SITE CHMOD, SITE UMASK and MFMT are refused: objects have no modes
//     and their time is when they were written;
//   - renaming a directory is refused, and a file rename is a copy and a
//     delete (S3Fs.Rename).
// Everything else (read-only refusal, name checks, transfer logs and
// records, HASH, listings and their facts) is the same code as on disk.

// NewS3 serves the files of fsys: the user's root is a prefix of a bucket.
func NewS3(fsys *S3Fs, opts Options) *FS {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &FS{s3: fsys, opts: opts, umask: opts.Umask & 0o777}
}

// lstat is Lstat on disk; object storage has no links.
func (f *FS) lstat(r string) (os.FileInfo, error) {
	if f.s3 != nil {
		return f.s3.Stat(r)
	}
	return f.root.Lstat(r)
}

// open opens a file for reading, on either backend.
func (f *FS) open(r string) (afero.File, error) {
	if f.s3 != nil {
		return f.s3.Open(r)
	}
	return f.root.Open(r)
}

func (f *FS) siteS3(cmd string) *ftpserver.AnswerCommand {
	switch strings.ToUpper(cmd) {
	case "CHMOD", "UMASK":
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusActionNotTaken,
			Message: "SITE " + strings.ToUpper(cmd) + ": files on object storage have no permission bits"}
	case "HELP":
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusHelpMessage, Message: "HELP (CHMOD and UMASK do not apply to object storage)"}
	}
	return &ftpserver.AnswerCommand{Code: ftpserver.StatusSyntaxErrorNotRecognised, Message: "Unknown SITE command (try SITE HELP)."}
}

var errNoResume = &publicError{"resuming an upload (REST+STOR, APPE) is not supported on object storage; upload the whole file",
	errors.ErrUnsupported}

// s3Handle opens a transfer on object storage.
func (f *FS) s3Handle(name string, flags int, offset int64) (ftpserver.FileTransfer, error) {
	t := &s3Transfer{xfer: xfer{fs: f, path: name, offset: offset, start: time.Now()}}
	if flags&(os.O_WRONLY|os.O_RDWR) == 0 {
		r, err := rel(name)
		if err != nil {
			return nil, err
		}
		file, err := f.s3.Open(r)
		if err != nil {
			return nil, err
		}
		if fi, _ := file.Stat(); fi.IsDir() {
			file.Close()
			return nil, errIsDir
		}
		t.file, t.dir = file.(*s3File), "download"
	} else {
		r, err := f.creatable(name)
		if err != nil {
			return nil, err
		}
		if flags&os.O_APPEND != 0 || offset > 0 {
			return nil, errNoResume
		}
		file, err := f.s3.OpenFile(r, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
		if err != nil {
			return nil, err
		}
		t.file, t.dir = file.(*s3File), "upload"
	}
	f.hold()
	return t, nil
}

// s3Transfer is one RETR or STOR on object storage: it counts bytes and, at
// Close, stores a complete upload or aborts an incomplete one.
type s3Transfer struct {
	xfer
	file *s3File
}

var _ ftpserver.FileTransferError = (*s3Transfer)(nil)

func (t *s3Transfer) Read(p []byte) (int, error) {
	n, err := t.file.Read(p)
	t.bytes += int64(n)
	return n, err
}

func (t *s3Transfer) Write(p []byte) (int, error) {
	n, err := t.file.Write(p)
	t.bytes += int64(n)
	return n, err
}

// ReadFrom fills the part buffer straight from the data connection.
func (t *s3Transfer) ReadFrom(r io.Reader) (int64, error) {
	n, err := t.file.ReadFrom(r)
	t.bytes += n
	return n, ioError(err)
}

// Seek is RETR's restart offset: the next read is a range request.
func (t *s3Transfer) Seek(offset int64, whence int) (int64, error) {
	return t.file.Seek(offset, whence)
}

// Close completes an upload only if the stream ended cleanly (and, for a
// TLS stream, with close_notify: Options.UploadComplete); otherwise the
// multipart upload is aborted and the previous object stays.
func (t *s3Transfer) Close() error {
	defer t.fs.drop()
	var err error
	if !t.settle() && t.dir == "upload" {
		t.file.Abort()
	} else if err = t.file.Close(); errors.Is(err, fs.ErrClosed) {
		err = nil
	}
	return t.end(err, t.dir == "upload")
}
