package driver

import (
	"errors"
	"io/fs"
	"os"
)

// The modes of what FTP creates are decided here, not by the process umask:
// that is one per process, while every user may have its own umask.
//
// Owners need no code: what a session creates belongs to the account ftpsd
// runs as. Listings show them through the server's data-connection
// rewriters (server/listowners.go for LIST, the MLSD facts), since
// ftpserverlib v0.32.3 writes "ftp ftp" itself.

// Umask is the mask applied to files and directories created from now on.
func (f *FS) Umask() os.FileMode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.umask
}

// SetUmask changes the mask for what this session creates from now on.
func (f *FS) SetUmask(m os.FileMode) {
	f.mu.Lock()
	f.umask = m & 0o777
	f.mu.Unlock()
}

// fileMode is the mode of a new file, as `touch` would make it.
func (f *FS) fileMode() os.FileMode { return 0o666 &^ f.Umask() }

// dirMode is the mode of a new directory, as `mkdir` would make it.
func (f *FS) dirMode() os.FileMode { return 0o777 &^ f.Umask() }

// setMode gives a freshly created entry its exact mode: the kernel applied
// the process umask on creation, which may be stricter than the user's.
func (f *FS) setMode(r string, mode os.FileMode) error {
	return f.root.Chmod(r, mode)
}

// created reports whether r does not exist yet, so that a following
// O_CREATE open can be known to have made it.
func (f *FS) created(r string) bool {
	_, err := f.root.Lstat(r)
	return errors.Is(err, fs.ErrNotExist)
}
