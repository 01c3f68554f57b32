package driver

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"syscall"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// GetHandle opens a file for RETR (O_RDONLY), STOR (O_CREATE|O_TRUNC), REST+STOR
// (offset > 0) or APPE (O_APPEND). ftpserverlib seeks to offset itself.
//
// A fresh STOR writes to a hidden temporary name in the same directory and
// renames it over the target only when the transfer completed, so an aborted
// upload never damages the previous file. Resumed uploads (REST, APPE) write in
// place: their point is to keep what already arrived.
func (f *FS) GetHandle(name string, flags int, offset int64) (ftpserver.FileTransfer, error) {
	if offset < 0 {
		return nil, &publicError{"negative restart offset", fs.ErrInvalid}
	}
	var (
		t   *transfer
		err error
	)
	if f.s3 != nil {
		return f.s3Handle(name, flags, offset)
	}
	if flags&(os.O_WRONLY|os.O_RDWR) == 0 {
		t, err = f.download(name, offset)
	} else {
		t, err = f.upload(name, flags, offset)
	}
	if err != nil {
		return nil, err
	}
	f.hold()
	return t, nil
}

func (f *FS) upload(name string, flags int, offset int64) (*transfer, error) {
	r, err := f.creatable(name)
	if err != nil {
		return nil, err
	}
	if r == "." {
		return nil, errIsDir
	}
	if flags&os.O_APPEND != 0 || offset > 0 {
		return f.resume(name, r, flags, offset)
	}
	return f.replace(name, r)
}

func (f *FS) download(name string, offset int64) (*transfer, error) {
	r, err := rel(name)
	if err != nil {
		return nil, err
	}
	file, err := f.root.Open(r)
	if err != nil {
		return nil, public(err)
	}
	if fi, err := file.Stat(); err != nil || fi.IsDir() {
		file.Close()
		if err == nil {
			return nil, errIsDir
		}
		return nil, public(err)
	}
	return &transfer{File: file, xfer: xfer{fs: f, path: name, dir: "download", offset: offset, start: time.Now()}, truncateAt: -1}, nil
}

func (f *FS) resume(name, r string, flags int, offset int64) (*transfer, error) {
	open := flags & (os.O_WRONLY | os.O_APPEND | os.O_CREATE)
	if flags&os.O_APPEND == 0 {
		// Check the offset before opening, so that a refused REST+STOR
		// creates nothing.
		var size int64
		fi, err := f.root.Stat(r)
		switch {
		case err == nil && fi.IsDir():
			return nil, errIsDir
		case err == nil:
			size = fi.Size()
		case !errors.Is(err, fs.ErrNotExist):
			return nil, public(err)
		}
		if offset > size {
			return nil, &publicError{fmt.Sprintf("restart offset %d is past the end of the file (%d bytes)", offset, size), fs.ErrInvalid}
		}
		open &^= os.O_CREATE
	}
	isNew := open&os.O_CREATE != 0 && f.created(r)
	file, err := f.root.OpenFile(r, open, f.fileMode())
	if err != nil {
		return nil, public(err)
	}
	if isNew {
		if err := file.Chmod(f.fileMode()); err != nil {
			file.Close()
			return nil, public(err)
		}
	}
	t := &transfer{File: file, xfer: xfer{fs: f, path: name, dir: "upload", offset: offset, start: time.Now()}, truncateAt: -1}
	if flags&os.O_APPEND == 0 {
		// The resumed part replaces whatever followed offset, but only
		// once data arrives: a client that never connects changes nothing.
		t.truncateAt = offset
	}
	return t, nil
}

func (f *FS) replace(name, r string) (*transfer, error) {
	mode := f.fileMode()
	if fi, err := f.root.Stat(r); err == nil {
		if fi.IsDir() {
			return nil, errIsDir
		}
		mode = fi.Mode().Perm()
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	// Fixed length, so that any name that fits the file system can be uploaded.
	tmp := path.Join(path.Dir(r), PartPrefix+hex.EncodeToString(rnd[:]))
	file, err := f.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return nil, public(err)
	}
	// A replaced file keeps its mode; a new one gets the user's umask
	// exactly, past the process umask (see mode.go).
	if err := file.Chmod(mode); err != nil {
		file.Close()
		f.root.Remove(tmp)
		return nil, public(err)
	}
	return &transfer{File: file, xfer: xfer{fs: f, path: name, dir: "upload", start: time.Now()}, tmp: tmp, final: r, truncateAt: -1}, nil
}

// syncFile flushes a completed upload before its rename; a variable so that
// tests can count the flushes.
var syncFile = (*os.File).Sync

// xfer is what a transfer on disk and one on object storage share: the
// facts of its TransferRecord and whether its stream ended cleanly.
type xfer struct {
	fs     *FS
	path   string
	dir    string
	offset int64
	start  time.Time
	bytes  int64
	failed error
}

// TransferError records that the data stream did not end cleanly.
func (x *xfer) TransferError(err error) {
	if x.failed == nil {
		x.failed = err
	}
}

// settle runs at Close and reports whether the upload may be kept: the
// stream ended cleanly and, for a TLS stream, with close_notify
// (Options.UploadComplete). Downloads are always clean here.
func (x *xfer) settle() bool {
	if x.dir == "upload" && x.failed == nil && x.fs.opts.UploadComplete != nil {
		x.failed = x.fs.opts.UploadComplete()
	}
	return x.failed == nil
}

// end hands the ended transfer to FS.finish.
func (x *xfer) end(err error, kept bool) error {
	return x.fs.finish(TransferRecord{Path: x.path, Direction: x.dir, Offset: x.offset, Bytes: x.bytes, Start: x.start},
		x.failed, err, kept)
}

// transfer is one open RETR/STOR/APPE handle; it counts bytes, decides the
// fate of a replacing upload at Close, and logs the transfer.
type transfer struct {
	*os.File
	xfer
	// tmp and final are set for replacing uploads.
	tmp, final string
	// truncateAt is where a REST+STOR cuts the file, -1 once done or for
	// other transfers.
	truncateAt int64
}

var _ ftpserver.FileTransferError = (*transfer)(nil)

// Telling is an error whose text is written for the client (such as the
// server's refusal of a data connection that does not resume its session),
// so replies may carry it as it is.
type Telling interface {
	error
	ClientText() string
}

// ioError hides paths and system call names in an error ftpserverlib will
// put into a reply. EOF stays EOF, and errors already worded for the client
// (the object store's; a 451 is recognised by its text) stay as they are;
// errors that are not the file's come from the data connection.
func ioError(err error) error {
	var worded *publicError
	if err == nil || err == io.EOF || errors.As(err, &worded) {
		return err
	}
	var pe *fs.PathError
	var errno syscall.Errno
	if errors.As(err, &pe) || errors.As(err, &errno) {
		return public(err)
	}
	var told Telling
	if errors.As(err, &told) {
		return &publicError{told.ClientText(), err}
	}
	return &publicError{"data connection failed", err}
}

// logText is an error as the operator's log shows it: what the client was
// told, and behind it the cause the client was not shown.
func logText(err error) string {
	var pe *publicError
	if errors.As(err, &pe) && pe.kind != nil && pe.kind.Error() != pe.msg {
		return pe.msg + ": " + pe.kind.Error()
	}
	return err.Error()
}

func (t *transfer) Read(p []byte) (int, error) {
	n, err := t.File.Read(p)
	t.bytes += int64(n)
	return n, ioError(err)
}

// Seek is RETR's and REST+STOR's restart offset.
func (t *transfer) Seek(offset int64, whence int) (int64, error) {
	n, err := t.File.Seek(offset, whence)
	return n, public(err)
}

// cut applies a pending REST+STOR truncation before the first byte lands.
func (t *transfer) cut() error {
	if t.truncateAt < 0 {
		return nil
	}
	at := t.truncateAt
	t.truncateAt = -1
	if err := t.File.Truncate(at); err != nil {
		return public(err)
	}
	return nil
}

func (t *transfer) Write(p []byte) (int, error) {
	if err := t.cut(); err != nil {
		return 0, err
	}
	n, err := t.File.Write(p)
	t.bytes += int64(n)
	return n, ioError(err)
}

// ReadFrom and WriteTo keep *os.File's fast paths (io.Copy prefers them) while counting.
func (t *transfer) ReadFrom(r io.Reader) (int64, error) {
	if err := t.cut(); err != nil {
		return 0, err
	}
	n, err := t.File.ReadFrom(r)
	t.bytes += n
	return n, ioError(err)
}

func (t *transfer) WriteTo(w io.Writer) (int64, error) {
	n, err := t.File.WriteTo(w)
	t.bytes += n
	return n, ioError(err)
}

// Close finishes the transfer: a replacing upload is synced and renamed into
// place only if nothing went wrong, otherwise removed.
func (t *transfer) Close() error {
	defer t.fs.drop()
	var err error
	if t.settle() {
		// A complete but empty REST+STOR still cuts the file at the offset.
		err = t.cut()
	}
	if t.tmp != "" && t.failed == nil && err == nil && !t.fs.opts.SkipSync {
		err = syncFile(t.File)
	}
	if cerr := t.File.Close(); err == nil {
		err = cerr
	}
	if t.tmp != "" {
		if t.failed == nil && err == nil {
			err = t.fs.root.Rename(t.tmp, t.final)
		}
		if t.failed != nil || err != nil {
			if rerr := t.fs.root.Remove(t.tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				t.fs.opts.Logger.Warn("remove aborted upload", "tmp", t.tmp, "err", rerr)
			}
		}
	}
	return t.end(err, t.tmp != "")
}

// finish logs an ended transfer, tells OnTransfer, and words the error
// ftpserverlib replies with. failed is a stream that did not end cleanly,
// err a failure to store or close; kept says an aborted upload left the
// previous file in place.
func (f *FS) finish(rec TransferRecord, failed, err error, kept bool) error {
	rec.Duration = time.Since(rec.Start)
	result := "ok"
	switch {
	case failed != nil:
		result = "aborted: " + logText(failed)
	case err != nil:
		result = "failed: " + logText(err)
	}
	f.opts.Logger.Info("transfer",
		slog.String("direction", rec.Direction),
		slog.String("path", rec.Path),
		slog.Int64("offset", rec.Offset),
		slog.Int64("bytes", rec.Bytes),
		slog.Duration("duration", rec.Duration),
		slog.String("result", result))
	if f.opts.OnTransfer != nil {
		rec.Err = failed
		if rec.Err == nil {
			rec.Err = err
		}
		f.opts.OnTransfer(rec)
	}
	if failed != nil && rec.Direction == "upload" {
		if kept {
			return fmt.Errorf("upload of %s incomplete, previous file kept: %w", rec.Path, failed)
		}
		return fmt.Errorf("upload of %s incomplete: %w", rec.Path, failed)
	}
	if err != nil {
		return fmt.Errorf("%s of %s not completed: %w", rec.Direction, rec.Path, public(err))
	}
	return nil
}
