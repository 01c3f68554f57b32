package driver

import (
	"crypto/md5"  //nolint:gosec // HASH MD5 is what the client asked for
	"crypto/sha1" //nolint:gosec // likewise SHA-1
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// Site answers every SITE command itself (ftpserverlib falls back to its own
// CHOWN, SYMLINK, MKDIR and RMDIR for a nil answer; ftpsd offers none of them).
func (f *FS) Site(param string) *ftpserver.AnswerCommand {
	cmd, arg, _ := strings.Cut(strings.TrimSpace(param), " ")
	arg = strings.TrimSpace(arg)
	if f.s3 != nil {
		return f.siteS3(cmd)
	}
	switch strings.ToUpper(cmd) {
	case "CHMOD":
		return f.siteChmod(arg)
	case "UMASK":
		return f.siteUmask(arg)
	case "HELP":
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusHelpMessage, Message: "CHMOD UMASK HELP"}
	}
	return &ftpserver.AnswerCommand{Code: ftpserver.StatusSyntaxErrorNotRecognised, Message: "Unknown SITE command (try SITE HELP)."}
}

func parseMode(s string) (os.FileMode, bool) {
	m, err := strconv.ParseUint(s, 8, 32)
	return os.FileMode(m), err == nil
}

func (f *FS) siteChmod(arg string) *ftpserver.AnswerCommand {
	modeArg, name, ok := strings.Cut(arg, " ")
	mode, valid := parseMode(modeArg)
	if !ok || !valid || name == "" {
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusSyntaxErrorParameters, Message: "Usage: SITE CHMOD <octal mode> <path>"}
	}
	if !path.IsAbs(name) && f.opts.Cwd != nil {
		name = path.Join(f.opts.Cwd(), name)
	}
	if mode > 0o777 {
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusActionNotTaken,
			Message: "SITE CHMOD: only permission bits (0-777) may be set"}
	}
	if err := f.Chmod(name, mode); err != nil {
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusActionNotTaken, Message: "SITE CHMOD failed: " + err.Error()}
	}
	return &ftpserver.AnswerCommand{Code: ftpserver.StatusOK, Message: "SITE CHMOD command ok."}
}

func (f *FS) siteUmask(arg string) *ftpserver.AnswerCommand {
	if arg == "" {
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusOK, Message: fmt.Sprintf("Your current UMASK is %03o", f.Umask())}
	}
	m, ok := parseMode(arg)
	if !ok || m > 0o777 {
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusSyntaxErrorParameters, Message: "Usage: SITE UMASK <octal 0-777>"}
	}
	f.SetUmask(m)
	return &ftpserver.AnswerCommand{Code: ftpserver.StatusOK, Message: fmt.Sprintf("UMASK set to %03o", m)}
}

// ComputeHash digests bytes [start, end) of a file (HASH). ftpserverlib's
// own HASH would open the file through GetHandle, so every HASH would be
// logged and counted as a download (xferlog, OnTransfer).
func (f *FS) ComputeHash(name string, algo ftpserver.HASHAlgo, start, end int64) (string, error) {
	var h hash.Hash
	switch algo {
	case ftpserver.HASHAlgoCRC32:
		h = crc32.NewIEEE()
	case ftpserver.HASHAlgoMD5:
		h = md5.New() //nolint:gosec
	case ftpserver.HASHAlgoSHA1:
		h = sha1.New() //nolint:gosec
	case ftpserver.HASHAlgoSHA256:
		h = sha256.New()
	case ftpserver.HASHAlgoSHA512:
		h = sha512.New()
	default:
		return "", fmt.Errorf("unknown hash algorithm %d", algo)
	}
	r, err := rel(name)
	if err != nil {
		return "", err
	}
	file, err := f.open(r)
	if err != nil {
		return "", public(err)
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return "", public(err)
	}
	if !fi.Mode().IsRegular() {
		return "", &publicError{"not a regular file", errIsDir}
	}
	if _, err := file.Seek(start, io.SeekStart); err != nil {
		return "", public(err)
	}
	if _, err := io.CopyN(h, file, end-start); err != nil && err != io.EOF {
		return "", public(err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
