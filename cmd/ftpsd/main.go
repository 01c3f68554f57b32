// Command ftpsd is an FTPS server that opens an nftables pinhole for exactly
// (client, port) for each passive data connection, and nothing else.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
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
  firewall reset [-c FILE]    delete ftpsd's nftables table (and nothing else)
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
	fmt.Fprintf(stdout, "%s: OK (%d users, firewall %s)\n", sourceName(cfg), len(cfg.Users), cfg.Firewall.Mode)
	return nil
}

// openFirewall never falls back to "off" by itself: an unguarded passive
// range must be the operator's explicit choice.
func openFirewall(cfg *config.Config, log *slog.Logger) (nft.Firewall, error) {
	if cfg.Firewall.Mode == "off" {
		log.Warn("firewall mode is off: ftpsd opens no pinholes and the passive range is only as closed as the host ruleset makes it",
			"passive_ports", fmt.Sprintf("%d-%d", cfg.Passive.PortMin, cfg.Passive.PortMax))
		return nft.Off{}, nil
	}
	fw, err := nft.Setup(nftConfig(cfg))
	if err != nil {
		where := "the config file"
		if cfg.Source == "" {
			where = "a config file (ftpsd serve -c FILE)"
		}
		return nil, fmt.Errorf("firewall: %w\n"+
			"ftpsd guards the passive ports with nftables and will not start without it. Either:\n"+
			"  - run it with CAP_NET_ADMIN (as root, or: setcap cap_net_admin+ep $(command -v ftpsd)), or\n"+
			"  - set [firewall] mode = \"off\" in %s to run without pinholes, knowingly", err, where)
	}
	log.Info("firewall ready", "table", "inet "+cfg.Firewall.Table,
		"passive_ports", fmt.Sprintf("%d-%d", cfg.Passive.PortMin, cfg.Passive.PortMax),
		"pinhole_timeout", cfg.Firewall.PinholeTimeout)
	return fw, nil
}

func nftConfig(cfg *config.Config) nft.Config {
	return nft.Config{
		Table:   cfg.Firewall.Table,
		PortMin: cfg.Passive.PortMin,
		PortMax: cfg.Passive.PortMax,
		Timeout: cfg.Firewall.PinholeTimeout,
	}
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

	fw, err := openFirewall(cfg, log)
	if err != nil {
		return err
	}
	defer fw.Release()

	srv, generated, err := server.New(cfg, svc.firewall(fw), log)
	if err != nil {
		return err
	}
	for _, g := range generated {
		// Shown once, on standard output, never in the log.
		fmt.Fprintf(stdout, "user %s password: %s\n", g.User, g.Password)
	}
	if err := srv.Listen(); err != nil {
		return bindHint(err)
	}
	if err := svc.attach(cfg, srv, fw); err != nil {
		return err
	}
	if err := dropPrivileges(cfg, log, svc.owned()...); err != nil {
		return err
	}
	svc.ready(srv)

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
	cfg, _, err := loadConfig("firewall "+args[0], args[1:])
	if err != nil {
		return err
	}
	switch args[0] {
	case "status":
		return firewallStatus(cfg, stdout)
	case "reset":
		if err := nft.Reset(nftConfig(cfg)); err != nil {
			return fmt.Errorf("firewall reset: %w", err)
		}
		fmt.Fprintf(stdout, "table inet %s removed\n", cfg.Firewall.Table)
		return nil
	}
	return fmt.Errorf("firewall: unknown subcommand %q (status, reset)", args[0])
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
