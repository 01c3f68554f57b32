package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ftpsd/ftpsd/config"
	"github.com/ftpsd/ftpsd/internal/privdrop"
)

// dropPrivileges is the last start-up step, once the listeners are bound
// and the firewall table is set up with its netlink connection open. What
// ftpsd still needs afterwards is CAP_NET_ADMIN, for pinholes and for
// restoring its table (which may open a new netlink socket). Nothing binds
// a port below 1024 after start (passive ports are 1024 and up; reload does
// not rebind), so CAP_NET_BIND_SERVICE is never kept.
//
// own lists files ftpsd made as root that the account must still use
// (state_dir and its self-signed pair, the xferlog).
func dropPrivileges(cfg *config.Config, log *slog.Logger, own ...string) error {
	var keep []privdrop.Cap
	if cfg.Firewall.Mode != "off" {
		keep = append(keep, unix.CAP_NET_ADMIN)
	}
	runAs := cfg.Server.RunAs
	if runAs == "" {
		if os.Geteuid() == 0 {
			log.Info("running as root: set [server] run_as to switch to an unprivileged account after start")
			return nil
		}
		return limitCapabilities(keep, log)
	}
	acct, err := privdrop.Lookup(runAs)
	if err != nil {
		return fmt.Errorf("run_as: %w", err)
	}
	if os.Geteuid() != 0 {
		if os.Geteuid() != acct.UID {
			return fmt.Errorf("run_as = %q, but ftpsd was started as uid %d, which cannot switch accounts: start it as root or as %s", runAs, os.Geteuid(), runAs)
		}
		return limitCapabilities(keep, log)
	}
	if cfg.TLS.CertFile == "" {
		own = append(own, cfg.Storage.StateDir,
			filepath.Join(cfg.Storage.StateDir, "cert.pem"), filepath.Join(cfg.Storage.StateDir, "key.pem"))
	}
	if err := privdrop.Chown(acct, own...); err != nil {
		return fmt.Errorf("run_as: %w", err)
	}
	if err := privdrop.SwitchTo(acct, keep); err != nil {
		return fmt.Errorf("run_as %s: %w", runAs, err)
	}
	log.Info("switched account", "user", runAs, "uid", acct.UID, "gid", acct.GID, "capabilities", privdrop.Names(keep))
	return nil
}

// limitCapabilities sheds what an unprivileged start was given beyond keep
// (systemd's AmbientCapabilities include CAP_NET_BIND_SERVICE for port 21).
func limitCapabilities(keep []privdrop.Cap, log *slog.Logger) error {
	have, err := privdrop.Current()
	if err != nil {
		return err
	}
	var want uint64
	for _, c := range keep {
		want |= 1 << c
	}
	if have&^want == 0 {
		return nil
	}
	if !privdrop.Supported() {
		log.Warn("capabilities beyond what ftpsd needs are kept", "reason", privdrop.ErrCgo.Error())
		return nil
	}
	if err := privdrop.Limit(keep); err != nil {
		return err
	}
	log.Info("capabilities limited", "capabilities", privdrop.Names(keep))
	return nil
}

// bindHint explains a refused bind of a port below 1024.
func bindHint(err error) error {
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%w\nports below 1024 need CAP_NET_BIND_SERVICE: run ftpsd as root (with [server] run_as), "+
			"from the systemd unit, or after: setcap cap_net_admin,cap_net_bind_service+ep $(command -v ftpsd)", err)
	}
	return err
}
