// Package driver serves one user's files to ftpserverlib through an afero.Fs
// confined to an os.Root, with uploads that replace a file only once they complete.
package driver

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
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
	// Cwd, if set, returns the session's working directory, against which
	// SITE resolves relative paths.
	Cwd func() string
	// OnTransfer, if set, is told about every ended transfer.
	OnTransfer func(TransferRecord)
	// Umask applies to files and directories created over FTP
	// ([server] umask or the user's own).
	Umask os.FileMode
}

// FS is an afero.Fs (and ftpserverlib ClientDriver) confined to one
// directory, or to one prefix of a bucket on object storage (s3; see
// s3driver.go for where the two differ).
type FS struct {
	root   *os.Root
	shared *sharedRoot // root's owner, shared with the user's other sessions (roots.go)
	s3     *S3Fs       // instead of root, for a user on object storage
	opts   Options

	// ftpserverlib ends a session before its last transfer has closed its
	// file, so the root stays open until the last handle is done with it.
	mu       sync.Mutex
	handles  int
	closing  bool
	released bool
	umask    os.FileMode
	// listed is the last ReadDir result by name, for MLSD facts.
	listed map[string]os.FileInfo
}

var (
	_ ftpserver.ClientDriver                      = (*FS)(nil)
	_ ftpserver.ClientDriverExtentionFileTransfer = (*FS)(nil)
	_ ftpserver.ClientDriverExtensionFileList     = (*FS)(nil)
	_ ftpserver.ClientDriverExtensionRemoveDir    = (*FS)(nil)
	_ ftpserver.ClientDriverExtensionSite         = (*FS)(nil)
	_ ftpserver.ClientDriverExtensionHasher       = (*FS)(nil)
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
	return &FS{root: shared.root, shared: shared, opts: opts, umask: opts.Umask & 0o777}, nil
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
	if f.released || f.shared == nil {
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
// A backslash is an ordinary character in a Unix name, as on vsftpd.
func rel(name string) (string, error) {
	clean := path.Clean("/" + name)
	if strings.HasPrefix(path.Base(clean), PartPrefix) {
		return "", public(fs.ErrNotExist)
	}
	if clean == "/" {
		return ".", nil
	}
	return clean[1:], nil
}

// writable resolves a name the user wants to change.
func (f *FS) writable(name string) (string, error) {
	if f.opts.ReadOnly {
		return "", public(ErrReadOnly)
	}
	return rel(name)
}

// creatable resolves a name the user wants to create: existing odd names
// may still be read, renamed and deleted, but no new ones are made.
func (f *FS) creatable(name string) (string, error) {
	if f.opts.ReadOnly {
		return "", public(ErrReadOnly)
	}
	if !ValidName(name) {
		return "", ErrBadName
	}
	return rel(name)
}

// Name identifies this file system in ftpserverlib's logs.
func (f *FS) Name() string { return "ftpsd-root" }

// Create is OpenFile with O_CREATE|O_TRUNC.
func (f *FS) Create(name string) (afero.File, error) {
	return f.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

// Mkdir creates one directory with the umask's mode (perm is ftpserverlib's
// fixed 0755 and says nothing about the user's wish).
func (f *FS) Mkdir(name string, _ os.FileMode) error {
	r, err := f.creatable(name)
	if err != nil {
		return err
	}
	if f.s3 != nil {
		return f.s3.Mkdir(r, 0)
	}
	mode := f.dirMode()
	if err := f.root.Mkdir(r, mode); err != nil {
		return public(err)
	}
	return public(f.setMode(r, mode))
}

// MkdirAll creates a directory and its parents with the umask's mode.
func (f *FS) MkdirAll(name string, _ os.FileMode) error {
	r, err := f.creatable(name)
	if err != nil {
		return err
	}
	if f.s3 != nil {
		return f.s3.MkdirAll(r, 0)
	}
	mode := f.dirMode()
	if err := f.root.MkdirAll(r, mode); err != nil {
		return public(err)
	}
	return public(f.setMode(r, mode))
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
	switch {
	case flag&os.O_CREATE != 0:
		r, err = f.creatable(name)
	case flag&(os.O_WRONLY|os.O_RDWR|os.O_TRUNC|os.O_APPEND) != 0:
		r, err = f.writable(name)
	default:
		r, err = rel(name)
	}
	if err != nil {
		return nil, err
	}
	if f.s3 != nil {
		return f.s3.OpenFile(r, flag, perm)
	}
	isNew := flag&os.O_CREATE != 0 && f.created(r)
	mode := perm & 0o777 &^ f.Umask()
	file, err := f.root.OpenFile(r, flag, mode)
	if err != nil {
		return nil, public(err)
	}
	if isNew {
		if err := file.Chmod(mode); err != nil {
			file.Close()
			return nil, err
		}
	}
	return file, nil
}

// Remove deletes a file (DELE); directories need RemoveDir (RMD).
func (f *FS) Remove(name string) error {
	r, err := f.writable(name)
	if err != nil {
		return err
	}
	fi, err := f.lstat(r)
	if err != nil {
		return public(err)
	}
	if fi.IsDir() {
		return &publicError{"is a directory (use RMD)", syscall.EISDIR}
	}
	if f.s3 != nil {
		return f.s3.Remove(r)
	}
	return public(f.root.Remove(r))
}

// RemoveDir deletes an empty directory (RMD).
func (f *FS) RemoveDir(name string) error {
	r, err := f.writable(name)
	if err != nil {
		return err
	}
	if r == "." {
		return public(fs.ErrPermission)
	}
	fi, err := f.lstat(r)
	if err != nil {
		return public(err)
	}
	if !fi.IsDir() {
		return errNotDir
	}
	if f.s3 != nil {
		return f.s3.Remove(r)
	}
	return public(f.root.Remove(r))
}

// RemoveAll deletes a tree.
func (f *FS) RemoveAll(name string) error {
	r, err := f.writable(name)
	if err != nil {
		return err
	}
	if r == "." {
		return public(fs.ErrPermission)
	}
	if f.s3 != nil {
		return f.s3.RemoveAll(r)
	}
	return public(f.root.RemoveAll(r))
}

// Rename moves a file or directory within the root.
func (f *FS) Rename(oldname, newname string) error {
	o, err := f.writable(oldname)
	if err != nil {
		return err
	}
	n, err := f.creatable(newname)
	if err != nil {
		return err
	}
	if o == "." || n == "." {
		return public(fs.ErrPermission)
	}
	if f.s3 != nil {
		return f.s3.Rename(o, n)
	}
	return public(f.root.Rename(o, n))
}

// Stat follows symlinks, which os.Root keeps inside the root.
func (f *FS) Stat(name string) (os.FileInfo, error) {
	r, err := rel(name)
	if err != nil {
		return nil, err
	}
	if f.s3 != nil {
		return f.s3.Stat(r)
	}
	fi, err := f.root.Stat(r)
	return fi, public(err)
}

// Chmod changes permission bits (SITE CHMOD); setuid, setgid and sticky are refused.
func (f *FS) Chmod(name string, mode os.FileMode) error {
	if mode&^os.ModePerm != 0 {
		return &publicError{"only permission bits (0-777) may be set", fs.ErrPermission}
	}
	r, err := f.writable(name)
	if err != nil {
		return err
	}
	if r == "." {
		return public(fs.ErrPermission)
	}
	if f.s3 != nil {
		return f.s3.Chmod(r, mode)
	}
	return public(f.root.Chmod(r, mode))
}

// Chown is refused: FTP users do not own Unix accounts.
func (f *FS) Chown(string, int, int) error {
	return public(fs.ErrPermission)
}

// Chtimes sets times (MFMT).
func (f *FS) Chtimes(name string, atime, mtime time.Time) error {
	r, err := f.writable(name)
	if err != nil {
		return err
	}
	if f.s3 != nil {
		return f.s3.Chtimes(r, atime, mtime)
	}
	return public(f.root.Chtimes(r, atime, mtime))
}

// ReadDir lists a directory (LIST, NLST, MLSD), hiding uploads in progress.
// It remembers the entries for MLSDFacts.
func (f *FS) ReadDir(name string) ([]os.FileInfo, error) {
	infos, err := f.List(name)
	if err != nil {
		return nil, err
	}
	listed := make(map[string]os.FileInfo, len(infos))
	for _, fi := range infos {
		listed[fi.Name()] = fi
	}
	f.mu.Lock()
	f.listed = listed
	f.mu.Unlock()
	return infos, nil
}

// List lists a directory, hiding uploads in progress.
func (f *FS) List(name string) ([]os.FileInfo, error) {
	r, err := rel(name)
	if err != nil {
		return nil, err
	}
	if f.s3 != nil {
		return f.s3.ReadDir(r)
	}
	dir, err := f.root.Open(r)
	if err != nil {
		return nil, public(err)
	}
	defer dir.Close()
	infos, err := dir.Readdir(-1)
	if err != nil {
		return nil, public(err)
	}
	out := infos[:0]
	for _, fi := range infos {
		if !strings.HasPrefix(fi.Name(), PartPrefix) {
			out = append(out, fi)
		}
	}
	return out, nil
}

// Listed returns an entry of the last ReadDir.
func (f *FS) Listed(name string) (os.FileInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, ok := f.listed[name]
	return fi, ok
}

// ReadOnly reports whether the account may change anything.
func (f *FS) ReadOnly() bool { return f.opts.ReadOnly }
