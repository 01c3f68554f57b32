// Package driver serves one user's files to ftpserverlib through an afero.Fs
// confined to an os.Root, with uploads that replace a file only once they complete.
package driver

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/spf13/afero"
)

// ErrReadOnly is returned for every change attempted by a read-only user.
var ErrReadOnly = fmt.Errorf("read-only account: %w", fs.ErrPermission)

// PartPrefix starts the name an upload is written under until it completes;
// such names are hidden from listings and cannot be addressed.
const PartPrefix = ".ftpsd-part-"

// Options tune one user's file system.
type Options struct {
	// ReadOnly refuses uploads, deletes, renames and mkdir.
	ReadOnly bool
	// UploadComplete, if set, is asked when an upload's data stream ended without
	// an error ftpserverlib could see; a non-nil answer discards the upload.
	// It lets the session report what only the data connection knows (a TLS
	// stream that ended without close_notify is a truncated upload).
	UploadComplete func() error
	// SkipSync renames a completed upload into place without flushing it to
	// disk first ([storage] fsync = "never").
	SkipSync bool
	// Logger receives one line per transfer.
	Logger *slog.Logger
}

// FS is an afero.Fs (and ftpserverlib ClientDriver) confined to one directory.
type FS struct {
	root   *os.Root
	shared *sharedRoot // root's owner, shared with the user's other sessions (roots.go)
	opts   Options

	// ftpserverlib ends a session before its last transfer has closed its
	// file, so the root stays open until the last handle is done with it.
	mu       sync.Mutex
	handles  int
	closing  bool
	released bool
}

var (
	_ ftpserver.ClientDriver                      = (*FS)(nil)
	_ ftpserver.ClientDriverExtentionFileTransfer = (*FS)(nil)
	_ ftpserver.ClientDriverExtensionFileList     = (*FS)(nil)
	_ ftpserver.ClientDriverExtensionRemoveDir    = (*FS)(nil)
)

// New opens dir as the root of a confined file system. Close releases it.
func New(dir string, opts Options) (*FS, error) {
	shared, err := openRoot(dir)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &FS{root: shared.root, shared: shared, opts: opts}, nil
}

// Close releases the root directory handle.
func (f *FS) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closing = true
	if f.handles > 0 {
		return nil
	}
	return f.releaseLocked()
}

// releaseLocked gives the shared root back, once: a second Close must not
// take a reference another session holds.
func (f *FS) releaseLocked() error {
	if f.released {
		return nil
	}
	f.released = true
	return f.shared.release()
}

// hold and drop count transfer handles; see Close.
func (f *FS) hold() {
	f.mu.Lock()
	f.handles++
	f.mu.Unlock()
}

func (f *FS) drop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.handles--; f.handles == 0 && f.closing {
		f.releaseLocked()
	}
}

// rel turns an FTP path (absolute, slash-separated, relative to the user's
// root) into a name for os.Root, which itself refuses anything that leaves the root.
func rel(name string) (string, error) {
	clean := path.Clean("/" + strings.ReplaceAll(name, "\\", "/"))
	if strings.HasPrefix(path.Base(clean), PartPrefix) {
		return "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if clean == "/" {
		return ".", nil
	}
	return clean[1:], nil
}

func (f *FS) writable(op, name string) (string, error) {
	if f.opts.ReadOnly {
		return "", &fs.PathError{Op: op, Path: name, Err: ErrReadOnly}
	}
	return rel(name)
}

// Name identifies this file system in ftpserverlib's logs.
func (f *FS) Name() string { return "ftpsd-root" }

// Create is OpenFile with O_CREATE|O_TRUNC.
func (f *FS) Create(name string) (afero.File, error) {
	return f.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

// Mkdir creates one directory.
func (f *FS) Mkdir(name string, perm os.FileMode) error {
	r, err := f.writable("mkdir", name)
	if err != nil {
		return err
	}
	return f.root.Mkdir(r, perm&0o777|0o700)
}

// MkdirAll creates a directory and its parents.
func (f *FS) MkdirAll(name string, perm os.FileMode) error {
	r, err := f.writable("mkdir", name)
	if err != nil {
		return err
	}
	return f.root.MkdirAll(r, perm&0o777|0o700)
}

// Open opens a file or directory for reading.
func (f *FS) Open(name string) (afero.File, error) {
	return f.OpenFile(name, os.O_RDONLY, 0)
}

// OpenFile opens a file inside the root; writes go straight to the file (transfers use GetHandle).
func (f *FS) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	var (
		r   string
		err error
	)
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0 {
		r, err = f.writable("open", name)
	} else {
		r, err = rel(name)
	}
	if err != nil {
		return nil, err
	}
	file, err := f.root.OpenFile(r, flag, perm&0o777)
	if err != nil {
		return nil, err
	}
	return file, nil
}

// Remove deletes a file (DELE); directories need RemoveDir (RMD).
func (f *FS) Remove(name string) error {
	r, err := f.writable("remove", name)
	if err != nil {
		return err
	}
	fi, err := f.root.Lstat(r)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return &fs.PathError{Op: "remove", Path: name, Err: errors.New("is a directory (use RMD)")}
	}
	return f.root.Remove(r)
}

// RemoveDir deletes an empty directory (RMD).
func (f *FS) RemoveDir(name string) error {
	r, err := f.writable("rmdir", name)
	if err != nil {
		return err
	}
	if r == "." {
		return &fs.PathError{Op: "rmdir", Path: name, Err: fs.ErrPermission}
	}
	fi, err := f.root.Lstat(r)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "rmdir", Path: name, Err: errors.New("not a directory")}
	}
	return f.root.Remove(r)
}

// RemoveAll deletes a tree.
func (f *FS) RemoveAll(name string) error {
	r, err := f.writable("remove", name)
	if err != nil {
		return err
	}
	if r == "." {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrPermission}
	}
	return f.root.RemoveAll(r)
}

// Rename moves a file or directory within the root.
func (f *FS) Rename(oldname, newname string) error {
	o, err := f.writable("rename", oldname)
	if err != nil {
		return err
	}
	n, err := f.writable("rename", newname)
	if err != nil {
		return err
	}
	if o == "." || n == "." {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrPermission}
	}
	return f.root.Rename(o, n)
}

// Stat follows symlinks, which os.Root keeps inside the root.
func (f *FS) Stat(name string) (os.FileInfo, error) {
	r, err := rel(name)
	if err != nil {
		return nil, err
	}
	return f.root.Stat(r)
}

// Chmod changes permission bits (SITE CHMOD is disabled; kept for afero completeness).
func (f *FS) Chmod(name string, mode os.FileMode) error {
	r, err := f.writable("chmod", name)
	if err != nil {
		return err
	}
	return f.root.Chmod(r, mode&0o777)
}

// Chown is refused: FTP users do not own Unix accounts.
func (f *FS) Chown(name string, _, _ int) error {
	return &fs.PathError{Op: "chown", Path: name, Err: fs.ErrPermission}
}

// Chtimes sets times (MFMT).
func (f *FS) Chtimes(name string, atime, mtime time.Time) error {
	r, err := f.writable("chtimes", name)
	if err != nil {
		return err
	}
	return f.root.Chtimes(r, atime, mtime)
}

// ReadDir lists a directory, hiding uploads in progress.
func (f *FS) ReadDir(name string) ([]os.FileInfo, error) {
	r, err := rel(name)
	if err != nil {
		return nil, err
	}
	dir, err := f.root.Open(r)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	infos, err := dir.Readdir(-1)
	if err != nil {
		return nil, err
	}
	out := infos[:0]
	for _, fi := range infos {
		if !strings.HasPrefix(fi.Name(), PartPrefix) {
			out = append(out, fi)
		}
	}
	return out, nil
}
