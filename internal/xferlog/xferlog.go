// Package xferlog writes the transfer log in the xferlog format of wu-ftpd
// and vsftpd (xferlog_std_format=YES), so that existing analysers read it.
//
// One line per transfer, fields separated by single spaces:
//
//	current-time transfer-time remote-host file-size filename transfer-type
//	special-action-flag direction access-mode username service-name
//	authentication-method authenticated-user-id completion-status
//
// e.g. "Sun Nov 29 06:40:01 2026 1 192.0.2.7 1048576 /up/f.bin b _ i r alice ftp 0 * c".
package xferlog

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Record is one ended transfer.
type Record struct {
	End      time.Time
	Duration time.Duration
	Client   netip.Addr
	Bytes    int64
	Path     string
	Upload   bool
	User     string
	Complete bool
}

// TimeLayout is current-time, in UTC as vsftpd writes it by default.
const TimeLayout = "Mon Jan _2 15:04:05 2006"

// Format renders r as one line, newline included.
func Format(r Record) string {
	secs := int64(r.Duration.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1 // as vsftpd: analysers divide by it
	}
	dir, status := 'o', 'i'
	if r.Upload {
		dir = 'i'
	}
	if r.Complete {
		status = 'c'
	}
	return fmt.Sprintf("%s %d %s %d %s b _ %c r %s ftp 0 * %c\n",
		r.End.UTC().Format(TimeLayout), secs, r.Client.Unmap().String(), r.Bytes,
		field(r.Path), dir, field(r.User), status)
}

// field keeps a value one field: the format has no quoting, so spaces and
// control characters (a file may be named with them) become '_'.
func field(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return '_'
		}
		return r
	}, s)
}

// Writer appends records to a file. Safe for concurrent use.
type Writer struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

// Open opens (creating if needed, mode 0640) path for appending.
func Open(path string) (*Writer, error) {
	f, err := open(path)
	if err != nil {
		return nil, err
	}
	return &Writer{path: path, f: f}, nil
}

func open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("xferlog: %w", err)
	}
	return f, nil
}

// Path is the file written to.
func (w *Writer) Path() string { return w.path }

// Write appends one record in a single write, so concurrent lines never mix.
func (w *Writer) Write(r Record) error {
	line := Format(r)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.f.WriteString(line); err != nil {
		return fmt.Errorf("xferlog: %w", err)
	}
	return nil
}

// Reopen starts a new file at path (after logrotate moved the old one).
// On failure the old file is kept.
func (w *Writer) Reopen() error {
	f, err := open(w.path)
	if err != nil {
		return err
	}
	w.mu.Lock()
	old := w.f
	w.f = f
	w.mu.Unlock()
	return old.Close()
}

// Close closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Close()
}
