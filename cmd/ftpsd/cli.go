package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// commandHelp is what `ftpsd COMMAND -h` prints, on standard output.
var commandHelp = map[string]string{
	"serve": `usage: ftpsd serve [-c FILE]

Run the server in the foreground until SIGTERM or SIGINT (Ctrl-C); SIGHUP
reloads users and the certificate. Without -c it uses ./ftpsd.toml if
present, else the built-in default (port 2121, files in ./ftpsd-data/files).

  -c FILE   config file (TOML)
`,
	"check": `usage: ftpsd check [-c FILE]

Validate a config file; errors name the file, line and key. Exit 1 on error.

  -c FILE   config file (TOML)
`,
	"passwd": `usage: ftpsd passwd

Read a password (prompted twice on a terminal, else the first line of
standard input) and print its bcrypt hash for password_hash.
`,
	"firewall": `usage: ftpsd firewall status [-c FILE]
       ftpsd firewall reset [-c FILE] [--force]

status   show ftpsd's nftables table: its owner and restores, the drop
         counter and the open pinholes
reset    delete ftpsd's own nftables table, and nothing else
`,
	"firewall status": `usage: ftpsd firewall status [-c FILE]

Show ftpsd's nftables table: the server that owns it (pid, since when) and
how often it restored the table, the drop counter, and the open pinholes
(client, port, label, expires in).

  -c FILE   config file (TOML)
`,
	"firewall reset": `usage: ftpsd firewall reset [-c FILE] [--force]

Delete ftpsd's own nftables table, and nothing else. While a running ftpsd
owns the table this is refused, since that server would put it back at
once; --force deletes it anyway (for a server that no longer answers).

  -c FILE   config file (TOML)
  --force   delete the table even while a running ftpsd owns it
`,
	"ban": banUsage,
	"version": `usage: ftpsd version   (or: ftpsd --version)

Print the version.
`,
}

// helpRequest is returned by a command asked for -h/--help: the caller
// prints the command's help and exits 0.
type helpRequest struct{ command string }

func (h *helpRequest) Error() string { return "help requested for " + h.command }

// isHelpFlag reports whether arg asks for help.
func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help"
}

// newFlagSet makes a flag set that reports -h as a helpRequest and never
// prints by itself, so that help goes to standard output and errors to
// standard error, once.
func newFlagSet(command string) *flag.FlagSet {
	fs := flag.NewFlagSet("ftpsd "+command, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args and turns flag.ErrHelp into a helpRequest.
func parseFlags(fs *flag.FlagSet, command string, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &helpRequest{command}
		}
		return fmt.Errorf("%s: %w (see: ftpsd %s -h)", command, err, command)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q (see: ftpsd %s -h)", command, fs.Arg(0), command)
	}
	return nil
}

// printHelp writes a command's help, or the general usage.
func printHelp(w io.Writer, command string) {
	if h, ok := commandHelp[command]; ok {
		fmt.Fprint(w, h)
		return
	}
	fmt.Fprint(w, usage)
}

// buildVersion is the stamped version (-ldflags "-X main.version=..."), else
// the module version `go install pkg@version` records, else "dev".
func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return strings.TrimPrefix(bi.Main.Version, "v")
	}
	return version
}
