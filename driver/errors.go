package driver

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// publicError is what a client may see of a failure: a short reason, never a
// server path or the name of a system call. It unwraps to the cause's kind
// (fs.ErrNotExist, ftpserver.ErrStorageExceeded, ...) so that callers, and
// ftpserverlib's reply-code mapping, can still tell what happened.
type publicError struct {
	msg  string
	kind error
}

func (e *publicError) Error() string { return e.msg }
func (e *publicError) Unwrap() error { return e.kind }

// Errors a client can be given as they are.
var (
	// ErrNoSpace is a full disk or an exhausted quota. ftpserverlib answers it
	// with 552; the session turns that into 452 (insufficient storage).
	ErrNoSpace = &publicError{"insufficient storage space", ftpserver.ErrStorageExceeded}
	// ErrBadName is a name with control characters or invalid UTF-8 (553).
	ErrBadName = &publicError{"file name not allowed (control characters or invalid UTF-8)", ftpserver.ErrFileNameNotAllowed}
	errIsDir   = &publicError{"is a directory", syscall.EISDIR}
	errNotDir  = &publicError{"not a directory", syscall.ENOTDIR}
)

// public turns any error from the file system into a publicError; nil stays nil.
func public(err error) error {
	if err == nil {
		return nil
	}
	var pe *publicError
	if errors.As(err, &pe) {
		return pe
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
			return ErrNoSpace
		case syscall.ENOTEMPTY:
			return &publicError{"directory not empty", errno}
		case syscall.EISDIR:
			return errIsDir
		case syscall.ENOTDIR:
			return errNotDir
		case syscall.ENAMETOOLONG:
			return &publicError{"file name too long", ftpserver.ErrFileNameNotAllowed}
		case syscall.EROFS:
			return &publicError{"read-only file system", fs.ErrPermission}
		}
	}
	switch {
	case errors.Is(err, ErrReadOnly):
		return &publicError{"read-only account", fs.ErrPermission}
	case errors.Is(err, fs.ErrNotExist):
		return &publicError{"no such file or directory", fs.ErrNotExist}
	case errors.Is(err, fs.ErrExist):
		return &publicError{"file exists", fs.ErrExist}
	case errors.Is(err, fs.ErrPermission):
		return &publicError{"permission denied", fs.ErrPermission}
	}
	if strings.Contains(err.Error(), "path escapes from parent") {
		// os.Root refused a symlink that leads out of the user's root.
		return &publicError{"permission denied", fs.ErrPermission}
	}
	return &publicError{"operation failed", err}
}

// ValidName reports whether an FTP path may be created: valid UTF-8 and no
// control characters (a CR or LF in a name would also forge reply lines).
func ValidName(name string) bool {
	if !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
