// Package config reads and validates ftpsd's TOML configuration (DESIGN.md
// §5). It is the only package that knows TOML: everything else receives a
// Config whose values are already checked, defaulted and made absolute.
package config

import (
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Config is a validated ftpsd configuration.
type Config struct {
	Server   Server
	TLS      TLS
	Passive  Passive
	Firewall Firewall
	Storage  Storage
	Users    []User // at least one
	Source   string // file it was read from; "" for the embedded default
}

// Server holds the control-connection side: listeners and the limits the
// accept loop enforces.
type Server struct {
	Listen          []string      // explicit FTPS control listeners, host:port (default ["0.0.0.0:21"])
	ImplicitListen  []string      // implicit FTPS listeners (default none)
	PublicHost      string        // IPv4 literal or "": PASV replies can only carry IPv4
	MaxClients      int           // default 2000, >= 1
	MaxClientsPerIP int           // default 20, 1..MaxClients
	IdleTimeout     time.Duration // default 5m, > 0
	DataTimeout     time.Duration // data connection arrival and transfer stall limit; default 30s, > 0
}

// TLS says where the certificate comes from and how strict the server is.
type TLS struct {
	CertFile, KeyFile string // both empty = self-signed kept in state_dir; otherwise absolute, existing files
	MinVersion        uint16 // tls.VersionTLS12 (default) or tls.VersionTLS13
	Require           bool   // default true
}

// Passive is the port range the firewall guards and the allocator hands out.
type Passive struct {
	PortMin, PortMax uint16 // from ports = "A-B" (default "50000-50999"), 1024 <= A <= B
}

// Firewall selects the pinhole implementation; "off" must be asked for
// explicitly because it leaves the passive range unguarded.
type Firewall struct {
	Mode           string        // "nftables" (default) or "off"
	Table          string        // default "ftpsd"; [A-Za-z0-9_-], 1..64 chars
	PinholeTimeout time.Duration // default 30s, > 0
	// Mark and MarkMask: the packet mark the guard sets (within MarkMask)
	// on connections it admits; MarkMask 0 = no mark (the default).
	Mark, MarkMask uint32
}

// Storage is where ftpsd keeps its own files (self-signed certificate), and
// how uploads reach the disk.
type Storage struct {
	StateDir string // absolute; default "/var/lib/ftpsd"
	// SkipFsync is fsync = "never": uploads are renamed into place without
	// being flushed to disk first (default "always": flushed, then renamed).
	SkipFsync bool
}

// User is one account; Root is absolute and, for a file config, an existing
// directory.
type User struct {
	Name         string // non-empty, no whitespace or control characters, unique
	PasswordHash string // bcrypt; empty only in Default, where the server generates a password
	Root         string // absolute, so sessions do not depend on the working directory
	ReadOnly     bool   // refuse every command that changes files
}

// Default file values, shared by Parse and Default.
const (
	defaultListen         = "0.0.0.0:21"
	defaultMaxClients     = 2000
	defaultMaxClientsIP   = 20
	defaultIdleTimeout    = 5 * time.Minute
	defaultDataTimeout    = 30 * time.Second
	defaultPortMin        = 50000
	defaultPortMax        = 50999
	defaultFirewallMode   = "nftables"
	defaultFirewallTable  = "ftpsd"
	defaultPinholeTimeout = 30 * time.Second
	defaultStateDir       = "/var/lib/ftpsd"
)

// fileDefaults is what a file that sets nothing gets (users aside).
func fileDefaults() *Config {
	return &Config{
		Server: Server{
			Listen:          []string{defaultListen},
			MaxClients:      defaultMaxClients,
			MaxClientsPerIP: defaultMaxClientsIP,
			IdleTimeout:     defaultIdleTimeout,
			DataTimeout:     defaultDataTimeout,
		},
		TLS:      TLS{MinVersion: tls.VersionTLS12, Require: true},
		Passive:  Passive{PortMin: defaultPortMin, PortMax: defaultPortMax},
		Firewall: Firewall{Mode: defaultFirewallMode, Table: defaultFirewallTable, PinholeTimeout: defaultPinholeTimeout},
		Storage:  Storage{StateDir: defaultStateDir},
	}
}

// Load reads, decodes and validates one file. On problems it returns Errors
// (all of them, not just the first).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = "cannot read: " + pe.Err.Error() // the path is already in File
		}
		return nil, Errors{{File: path, Msg: msg, err: err}}
	}
	return Parse(data, path)
}

// Parse does what Load does for bytes already read. name is used in messages
// and, being the file's path, as the base for relative paths in it (the
// working directory if name has no directory part).
func Parse(data []byte, name string) (*Config, error) {
	base, err := filepath.Abs(filepath.Dir(name))
	if err != nil {
		return nil, Errors{{File: name, Msg: "cannot resolve the config file's directory: " + err.Error(), err: err}}
	}
	d := &decoder{file: name, base: base}
	cfg := d.decode(string(data))
	if len(d.errs) > 0 {
		d.errs.sortByLine()
		return nil, d.errs
	}
	cfg.Source = name
	return cfg, nil
}

// Default is the embedded configuration used when no file is given and
// ./ftpsd.toml does not exist: enough to try ftpsd without writing a file.
func Default() (*Config, error) {
	stateDir, err := filepath.Abs("ftpsd-data")
	if err != nil {
		return nil, err
	}
	cfg := fileDefaults()
	cfg.Server.Listen = []string{":2121"}
	cfg.Passive = Passive{PortMin: 50000, PortMax: 50099}
	cfg.Storage.StateDir = stateDir
	// Empty PasswordHash: the server generates a password and prints it.
	// The root need not exist yet: the server creates it.
	cfg.Users = []User{{Name: "ftp", Root: filepath.Join(stateDir, "files")}}
	return cfg, nil
}

// defaultFile is the file `ftpsd serve` uses without -c, when it exists.
const defaultFile = "ftpsd.toml"

// Resolve picks the config the way `ftpsd serve [-c FILE]` does: path if
// non-empty, else ./ftpsd.toml if it exists, else Default().
func Resolve(path string) (*Config, error) {
	if path != "" {
		return Load(path)
	}
	// Any answer other than "does not exist" (permissions, a directory)
	// goes to Load, which reports it: falling back to the default would
	// hide that the operator's file was ignored.
	if _, err := os.Stat(defaultFile); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return Load(defaultFile)
	}
	return Default()
}
