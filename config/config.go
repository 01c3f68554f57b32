// Package config reads and validates ftpsd's TOML configuration (DESIGN.md
// §5). It is the only package that knows TOML: everything else receives a
// Config whose values are already checked, defaulted and made absolute.
package config

import (
	"crypto/tls"
	"errors"
	"io/fs"
	"net/netip"
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
	Log      Log
	Metrics  Metrics
	Ban      Ban
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
	RunAs           string        // account to switch to after start-up; "" = stay as started
	Umask           os.FileMode   // for files and directories created over FTP; default 022
	// ProxyProtocol lists the balancers trusted to send a PROXY protocol
	// header (masked prefixes); empty = PROXY protocol off (the default).
	ProxyProtocol []netip.Prefix
}

// TLS says where the certificate comes from and how strict the server is.
type TLS struct {
	CertFile, KeyFile string // both empty = self-signed kept in state_dir; otherwise absolute, existing files
	MinVersion        uint16 // tls.VersionTLS12 (default) or tls.VersionTLS13
	Require           bool   // default true
	// RequireSessionReuse makes a TLS data connection resume the TLS
	// session of its own control connection (default true; [[user]] may opt out).
	RequireSessionReuse bool
}

// Passive is the port range the firewall guards and the allocator hands out.
type Passive struct {
	PortMin, PortMax uint16 // from ports = "A-B" (default "50000-50999"), 1024 <= A <= B
	// MaxPerIP bounds the concurrent leases of one client address (IPv6:
	// one ban.ipv6_prefix); 0 = a fifth of the range, at least 1.
	MaxPerIP int
}

// Ban says when a source address is banned for failed logins.
type Ban struct {
	MaxFailures int            // failures within Window that ban a source; default 5, >= 1
	Window      time.Duration  // default 10m, > 0
	Duration    time.Duration  // how long a ban lasts; default 1h, > 0
	Allow       []netip.Prefix // sources never banned (masked); default none
	IPv6Prefix  int            // IPv6 clients are counted per prefix of this length; default 64, 1..128
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
	// S3 is the [storage.s3] table, nil without one (s3.go).
	S3 *S3
}

// User is one account; Root is absolute and, for a file config, an existing
// directory.
type User struct {
	Name         string      // non-empty, no whitespace or control characters, unique
	PasswordHash string      // bcrypt; empty only in Default, where the server generates a password
	Root         string      // absolute, so sessions do not depend on the working directory; or s3://bucket/prefix
	S3           *S3Root     // set when Root is s3://...; then Root is not a local path
	ReadOnly     bool        // refuse every command that changes files
	Umask        os.FileMode // [[user]] umask, else [server] umask
	// RequireSessionReuse is tls.require_session_reuse unless the user sets it.
	RequireSessionReuse bool
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
	defaultUmask          = 0o022
	defaultLogFormat      = "text"
	defaultMaxFailures    = 5
	defaultBanWindow      = 10 * time.Minute
	defaultBanDuration    = time.Hour
	defaultIPv6Prefix     = 64
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
			Umask:           defaultUmask,
		},
		TLS:      TLS{MinVersion: tls.VersionTLS12, Require: true, RequireSessionReuse: true},
		Passive:  Passive{PortMin: defaultPortMin, PortMax: defaultPortMax},
		Firewall: Firewall{Mode: defaultFirewallMode, Table: defaultFirewallTable, PinholeTimeout: defaultPinholeTimeout},
		Storage:  Storage{StateDir: defaultStateDir},
		Log:      Log{Format: defaultLogFormat},
		Ban: Ban{MaxFailures: defaultMaxFailures, Window: defaultBanWindow, Duration: defaultBanDuration,
			Allow: []netip.Prefix{}, IPv6Prefix: defaultIPv6Prefix},
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
	cfg.Users = []User{{Name: "ftp", Root: filepath.Join(stateDir, "files"), Umask: cfg.Server.Umask, RequireSessionReuse: true}}
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
