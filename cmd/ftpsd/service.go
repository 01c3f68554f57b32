package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/ftpsd/ftpsd/config"
	"github.com/ftpsd/ftpsd/internal/metrics"
	"github.com/ftpsd/ftpsd/internal/privdrop"
	"github.com/ftpsd/ftpsd/internal/sdnotify"
	"github.com/ftpsd/ftpsd/internal/xferlog"
	"github.com/ftpsd/ftpsd/nft"
	"github.com/ftpsd/ftpsd/server"
)

// newLogger writes ftpsd's log to w in the configured format.
func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// service is what `serve` runs around the server for the system: systemd
// notifications, the transfer log and the metrics endpoint.
type service struct {
	log       *slog.Logger
	notify    *sdnotify.Notifier
	xfer      *xferlog.Writer
	metrics   *metrics.Metrics
	metricsLn net.Listener
	stop      context.CancelFunc
}

// startService opens what must be opened while ftpsd may still be root:
// the notification socket and the transfer log.
func startService(cfg *config.Config, log *slog.Logger) (*service, error) {
	if cfg.Server.RunAs != "" && os.Geteuid() == 0 && !privdrop.Supported() {
		// Refused before anything is set up, rather than after.
		return nil, fmt.Errorf("run_as: %w", privdrop.ErrCgo)
	}
	s := &service{log: log, stop: func() {}}
	n, err := sdnotify.New()
	if err != nil {
		log.Warn("systemd notifications off", "err", err)
	}
	s.notify = n
	if cfg.Log.Xferlog != "" {
		if s.xfer, err = xferlog.Open(cfg.Log.Xferlog); err != nil {
			return nil, err
		}
	}
	if cfg.Metrics.Listen != "" {
		s.metrics = metrics.New()
	}
	return s, nil
}

// firewall wraps fw for the metrics, if any.
func (s *service) firewall(fw nft.Firewall) nft.Firewall { return s.metrics.Firewall(fw) }

// attach connects the server and binds the metrics endpoint.
func (s *service) attach(cfg *config.Config, srv *server.Server, fw nft.Firewall) error {
	srv.SetObserver(s)
	if s.metrics == nil {
		return nil
	}
	// The pool exists once the server serves, which is after attach.
	free := func() int {
		if p := srv.Ports(); p != nil {
			return p.Free()
		}
		return 0
	}
	src := metrics.Sources{Sessions: srv.Sessions, FreePorts: free, Log: s.log}
	if cfg.Firewall.Mode != "off" {
		src.Firewall = fw
		if nf, ok := fw.(*nft.NFTables); ok {
			src.Restores = func() int { return nf.Restores().Count }
		}
	}
	s.metrics.Observe(src)
	ln, err := metrics.Listen(cfg.Metrics.Listen)
	if err != nil {
		return err
	}
	s.metricsLn = ln
	return nil
}

// owned lists files the service created that the run_as account must keep using.
func (s *service) owned() []string {
	if s.xfer == nil {
		return nil
	}
	return []string{s.xfer.Path()}
}

// ready starts serving metrics and tells systemd the server is up.
func (s *service) ready(srv *server.Server) {
	if s.metricsLn != nil {
		s.log.Info("metrics endpoint", "address", "http://"+s.metricsLn.Addr().String()+"/metrics")
		go s.metrics.Serve(s.metricsLn, s.log)
	}
	addrs := make([]string, 0, 2)
	for _, a := range srv.Addrs() {
		addrs = append(addrs, a.String())
	}
	s.send(s.notify.Ready("listening on " + strings.Join(addrs, ", ")))
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go s.notify.Watchdog(ctx, nil)
}

// reloading and reloaded bracket a SIGHUP; the transfer log is reopened
// then, for logrotate.
func (s *service) reloading() { s.send(s.notify.Reloading()) }

func (s *service) reloaded(err error) {
	if s.xfer != nil {
		if rerr := s.xfer.Reopen(); rerr != nil {
			s.log.Warn("xferlog: reopen failed, still writing the old file", "err", rerr)
		}
	}
	status := "reloaded"
	if err != nil {
		status = "reload refused: " + firstLine(err.Error())
	}
	s.send(s.notify.Send("READY=1", "STATUS="+status))
}

// stopping tells systemd shutdown has begun.
func (s *service) stopping() {
	s.stop()
	s.send(s.notify.Stopping())
}

func (s *service) close() {
	s.stop()
	if s.metricsLn != nil {
		s.metricsLn.Close()
	}
	if s.xfer != nil {
		s.xfer.Close()
	}
	s.notify.Close()
}

func (s *service) send(err error) {
	if err != nil {
		s.log.Warn("systemd notification failed", "err", err)
	}
}

// Login counts a login attempt (server.Observer).
func (s *service) Login(_ string, _ netip.Addr, ok bool) { s.metrics.Login(ok) }

// TLSFailure counts a failed handshake (server.Observer).
func (s *service) TLSFailure(conn string) { s.metrics.TLSFailure(conn) }

// Transfer counts a transfer and writes its xferlog line (server.Observer).
func (s *service) Transfer(t server.Transfer) {
	s.metrics.Transfer(t.Direction, t.Bytes, t.Err == nil)
	if s.xfer == nil {
		return
	}
	err := s.xfer.Write(xferlog.Record{
		End: t.Start.Add(t.Duration), Duration: t.Duration, Client: t.Client, Bytes: t.Bytes,
		Path: t.Path, Upload: t.Direction == "upload", User: t.User, Complete: t.Err == nil,
	})
	if err != nil {
		s.log.Error("xferlog", "err", err)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

var _ server.Observer = (*service)(nil)

// logReloadRefused logs each problem of a refused config as its own line
// with file, line and key, so they can be found and filtered.
func logReloadRefused(log *slog.Logger, err error) {
	log.Error("reload refused: config has errors, keeping the running one")
	var es config.Errors
	if !errors.As(err, &es) {
		log.Error("reload refused", "err", err)
		return
	}
	for _, e := range es {
		log.Error("reload refused: config error", "file", e.File, "line", e.Line, "key", e.Key, "err", e.Msg)
	}
}
