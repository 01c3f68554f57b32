// Command ftpsd is an FTPS server that opens an nftables pinhole for exactly
// (client, port) for each passive data connection, and nothing else.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/ftpsd/ftpsd/config"
	"github.com/ftpsd/ftpsd/nft"
	"github.com/ftpsd/ftpsd/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// shutdownGrace is how long running transfers may continue after SIGTERM.
const shutdownGrace = 30 * time.Second

const usage = `usage: ftpsd <command> [flags]

commands:
  serve [-c FILE]             run the server (default config: ./ftpsd.toml, else built-in)
  check [-c FILE]             validate a config file
  passwd                      read a password on standard input, print a bcrypt hash
  firewall status [-c FILE]   show open pinholes and the drop counter
  firewall reset [-c FILE] [--force]
                              delete ftpsd's nftables table (and nothing else)
  ban list|add|remove ...     list, add or lift bans in the running table (ftpsd ban -h)
  version                     print the version (also: ftpsd --version)

Every command takes -h/--help.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(args[1:], stdout, stderr)
	case "check":
		err = cmdCheck(args[1:], stdout)
	case "passwd":
		err = cmdPasswd(args[1:], stdin, stdout, stderr)
	case "firewall":
		err = cmdFirewall(args[1:], stdout)
	case "ban":
		err = cmdBan(args[1:], stdout, stderr)
	case "version", "--version":
		err = cmdVersion(args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "ftpsd: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var help *helpRequest
	if errors.As(err, &help) {
		printHelp(stdout, help.command)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ftpsd: %v\n", err)
		return 1
	}
	return 0
}

func configFlag(name string, args []string) (string, error) {
	fs := newFlagSet(name)
	path := fs.String("c", "", "config file (TOML)")
	if err := parseFlags(fs, name, args); err != nil {
		return "", err
	}
	return *path, nil
}

func cmdVersion(args []string, stdout io.Writer) error {
	if err := parseFlags(newFlagSet("version"), "version", args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, versionString())
	return nil
}

// loadConfig parses the -c flag of a subcommand and resolves its config.
func loadConfig(name string, args []string) (*config.Config, string, error) {
	path, err := configFlag(name, args)
	if err != nil {
		return nil, "", err
	}
	cfg, err := config.Resolve(path)
	return cfg, path, err
}

// sourceName says where a config came from, for humans.
func sourceName(cfg *config.Config) string {
	if cfg.Source == "" {
		return "built-in default"
	}
	return cfg.Source
}

func versionString() string {
	lib := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/fclairamb/ftpserverlib" {
				lib = d.Version
			}
		}
	}
	return fmt.Sprintf("ftpsd %s (ftpserverlib %s)", buildVersion(), lib)
}

func cmdCheck(args []string, stdout io.Writer) error {
	cfg, _, err := loadConfig("check", args)
	if err != nil {
		return err
	}
	if cfg.Storage.S3 != nil {
		// As serve does at start: the file must be readable now.
		if _, err := cfg.Storage.S3.Credentials(); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s: OK (%d users, firewall %s)\n", sourceName(cfg), len(cfg.Users), cfg.Firewall.Mode)
	return nil
}

// openFirewall never falls back to "off" by itself: an unguarded passive
// range must be the operator's explicit choice. The caller must hold the
// table's claim.
func openFirewall(cfg *config.Config, log *slog.Logger) (nft.Firewall, error) {
	if cfg.Firewall.Mode == "off" {
		log.Warn("firewall mode is off: ftpsd opens no pinholes and the passive range is only as closed as the host ruleset makes it",
			"passive_ports", fmt.Sprintf("%d-%d", cfg.Passive.PortMin, cfg.Passive.PortMax))
		return nft.Off{}, nil
	}
	nc := nftConfig(cfg)
	nc.Logger = log
	fw, err := nft.Setup(nc)
	if err != nil {
		where := "the config file"
		if cfg.Source == "" {
			where = "a config file (ftpsd serve -c FILE)"
		}
		return nil, fmt.Errorf("firewall: %w\n"+
			"ftpsd guards the passive ports with nftables and will not start without it. Either:\n"+
			"  - run it with CAP_NET_ADMIN (as root, or: setcap cap_net_admin,cap_net_bind_service+ep $(command -v ftpsd)), or\n"+
			"  - set [firewall] mode = \"off\" in %s to run without pinholes, knowingly", err, where)
	}
	attrs := []any{"table", "inet " + cfg.Firewall.Table,
		"passive_ports", fmt.Sprintf("%d-%d", cfg.Passive.PortMin, cfg.Passive.PortMax),
		"pinhole_timeout", cfg.Firewall.PinholeTimeout}
	if cfg.Firewall.MarkMask != 0 {
		attrs = append(attrs, "mark", fmt.Sprintf("0x%x/0x%x", cfg.Firewall.Mark, cfg.Firewall.MarkMask))
	}
	log.Info("firewall ready", attrs...)
	return fw, nil
}

func nftConfig(cfg *config.Config) nft.Config {
	var ports []uint16
	for _, a := range append(slices.Clone(cfg.Server.Listen), cfg.Server.ImplicitListen...) {
		if _, p, err := net.SplitHostPort(a); err == nil {
			if n, err := strconv.ParseUint(p, 10, 16); err == nil {
				ports = append(ports, uint16(n))
			}
		}
	}
	return nft.Config{
		Table:       cfg.Firewall.Table,
		PortMin:     cfg.Passive.PortMin,
		PortMax:     cfg.Passive.PortMax,
		Timeout:     cfg.Firewall.PinholeTimeout,
		Mark:        cfg.Firewall.Mark,
		MarkMask:    cfg.Firewall.MarkMask,
		ListenPorts: ports,
	}
}

// start brings the server up in the order that keeps a failed start from
// changing the host: everything that can fail on its own first (config,
// certificate, users), then ownership of the table, then the listeners,
// and only then the firewall, in one transaction. Privileges are dropped
// once every socket is open and before the first session is accepted. The
// returned stop function undoes what start did, except the table, which
// stays (fail closed).
func start(cfg *config.Config, log *slog.Logger, stdout io.Writer, svc *service) (*server.Server, func(), error) {
	srv, generated, err := server.New(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	var claim *nft.Claim
	if cfg.Firewall.Mode != "off" {
		// Before binding: a second copy with the same config should be
		// told who owns the table, not just that the port is taken.
		if claim, err = nft.ClaimTable(cfg.Firewall.Table); err != nil {
			return nil, nil, fmt.Errorf("firewall: %w", err)
		}
	}
	var undo []func()
	fail := func(err error) (*server.Server, func(), error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, nil, err
	}
	if claim != nil {
		undo = append(undo, claim.Release)
	}
	lns, err := server.Bind(cfg)
	if err != nil {
		return fail(bindHint(err))
	}
	served := false
	undo = append(undo, func() {
		if !served {
			lns.Close()
		}
	})
	fw, err := openFirewall(cfg, log)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { fw.Release() })
	if nf, ok := fw.(*nft.NFTables); ok {
		claim.Report(nf.Restores)
	}
	if err := svc.attach(cfg, srv, fw); err != nil {
		return fail(err)
	}
	if err := dropPrivileges(cfg, log, svc.owned()...); err != nil {
		return fail(err)
	}
	if err := srv.Serve(lns, svc.firewall(fw)); err != nil {
		return fail(err)
	}
	served = true
	for _, g := range generated {
		// Shown once, on standard output, never in the log.
		fmt.Fprintf(stdout, "user %s password: %s\n", g.User, g.Password)
	}
	svc.ready(srv)
	return srv, func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}, nil
}

func cmdServe(args []string, stdout, stderr io.Writer) error {
	cfg, path, err := loadConfig("serve", args)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log.Format, stderr)
	log.Info("starting", "version", buildVersion(), "config", sourceName(cfg))
	// Registered before the slow start-up steps, so that an early SIGHUP
	// does not kill the process and an early SIGTERM still stops it cleanly.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	svc, err := startService(cfg, log) // see service.go
	if err != nil {
		return err
	}
	defer svc.close()

	srv, stop, err := start(cfg, log, stdout, svc)
	if err != nil {
		return err
	}
	defer stop()

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			svc.reloading()
			next, err := config.Resolve(path)
			if err != nil {
				logReloadRefused(log, err)
			} else if err = srv.Reload(next); err != nil {
				log.Error("reload failed, keeping the running config", "err", err)
			}
			svc.reloaded(err)
			continue
		}
		log.Info("shutting down", "signal", sig.String(), "grace", shutdownGrace)
		svc.stopping()
		break
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("grace period over, sessions closed", "err", err)
	}
	log.Info("stopped")
	return nil
}

func cmdFirewall(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("firewall: expected \"status\" or \"reset\" (see: ftpsd firewall -h)")
	}
	if isHelpFlag(args[0]) || args[0] == "help" {
		return &helpRequest{"firewall"}
	}
	if args[0] != "status" && args[0] != "reset" {
		return fmt.Errorf("firewall: unknown subcommand %q (status, reset)", args[0])
	}
	switch args[0] {
	case "status":
		cfg, _, err := loadConfig("firewall status", args[1:])
		if err != nil {
			return err
		}
		return firewallStatus(cfg, stdout)
	case "reset":
		return firewallReset(args[1:], stdout)
	}
	return fmt.Errorf("firewall: unknown subcommand %q (status, reset)", args[0])
}

// firewallReset deletes ftpsd's table, but not one a running server owns
// unless forced: that server would put it back at once anyway, so without
// --force the command would only look as if it worked.
func firewallReset(args []string, stdout io.Writer) error {
	fs := newFlagSet("firewall reset")
	path := fs.String("c", "", "config file (TOML)")
	force := fs.Bool("force", false, "delete the table even while a running ftpsd owns it")
	if err := parseFlags(fs, "firewall reset", args); err != nil {
		return err
	}
	cfg, err := config.Resolve(*path)
	if err != nil {
		return err
	}
	table := "inet " + cfg.Firewall.Table
	if owner, qerr := nft.QueryOwner(cfg.Firewall.Table); owner != nil || qerr != nil {
		pid := 0
		if owner != nil {
			pid = owner.PID
		}
		if !*force {
			return fmt.Errorf("firewall reset: table %s is owned by a running ftpsd (pid %d), which would restore it at once; "+
				"stop that server first, or use --force", table, pid)
		}
		fmt.Fprintf(stdout, "warning: table %s is owned by a running ftpsd (pid %d); deleting it anyway (--force)\n", table, pid)
	}
	removed, err := nft.Reset(nftConfig(cfg))
	if err != nil {
		return fmt.Errorf("firewall reset: %w", err)
	}
	if !removed {
		fmt.Fprintf(stdout, "table %s does not exist; nothing to remove\n", table)
		return nil
	}
	fmt.Fprintf(stdout, "table %s removed\n", table)
	return nil
}

func firewallStatus(cfg *config.Config, stdout io.Writer) error {
	if cfg.Firewall.Mode == "off" {
		fmt.Fprintln(stdout, "firewall mode is off: ftpsd manages no nftables table")
		return nil
	}
	fw, err := nft.Attach(nftConfig(cfg))
	if err != nil {
		return fmt.Errorf("firewall status: %w", err)
	}
	defer fw.Release()
	holes, err := fw.List()
	if err != nil {
		return fmt.Errorf("firewall status: %w", err)
	}
	stats, err := fw.Stats()
	if err != nil {
		return fmt.Errorf("firewall status: %w", err)
	}
	fmt.Fprintf(stdout, "table inet %s guards tcp ports %d-%d\n", cfg.Firewall.Table, cfg.Passive.PortMin, cfg.Passive.PortMax)
	owner, err := nft.QueryOwner(cfg.Firewall.Table)
	switch {
	case err != nil:
		fmt.Fprintf(stdout, "owner: %v\n", err)
	case owner == nil:
		fmt.Fprintln(stdout, "owner: none (no ftpsd serves this table; it stays as a fail-closed guard)")
	default:
		fmt.Fprintf(stdout, "owner: ftpsd pid %d, since %s\n", owner.PID, owner.Since.Format(time.RFC3339))
		r := owner.Restores
		if r.Count == 0 {
			fmt.Fprintln(stdout, "restores: 0")
		} else {
			fmt.Fprintf(stdout, "restores: %d, last at %s (missing: %s; restored in %s with %d pinholes)\n",
				r.Count, r.Last.At.Format(time.RFC3339), r.Last.Missing, r.Last.Took.Round(time.Microsecond), r.Last.Pinholes)
		}
	}
	fmt.Fprintf(stdout, "dropped: %d packets, %d bytes\n", stats.DroppedPackets, stats.DroppedBytes)
	fmt.Fprintf(stdout, "open pinholes: %d\n", len(holes))
	if len(holes) > 0 {
		fmt.Fprintf(stdout, "%-40s %6s %-24s %s\n", "CLIENT", "PORT", "LABEL", "EXPIRES IN")
	}
	for _, h := range holes {
		fmt.Fprintf(stdout, "%-40s %6d %-24s %s\n", h.Client, h.Port, h.Label, h.Expires.Round(time.Millisecond))
	}
	return nil
}
