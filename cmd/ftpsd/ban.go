package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ftpsd/ftpsd/config"
	"github.com/ftpsd/ftpsd/nft"
)

const banUsage = `usage: ftpsd ban list [-c FILE]
       ftpsd ban add ADDR[/LEN] [DURATION] [-c FILE]
       ftpsd ban remove ADDR[/LEN] [-c FILE]

  ftpsd ban list [-c FILE]                        banned prefixes, with time left and reason
  ftpsd ban add ADDR[/LEN] [DURATION] [-c FILE]   ban a source (IPv6 without /LEN: its [ban] ipv6_prefix)
  ftpsd ban remove ADDR[/LEN] [-c FILE]           lift a ban

Bans live in ftpsd's nftables table: they act at once on the running server
(new connections to its control ports and passive range are dropped), last
across restarts, and expire by themselves.
`

// banFlags parses -c (and -h) wherever it stands among the positional
// arguments, so that `ban add 192.0.2.7 2h -c FILE` reads naturally.
func banFlags(name string, args []string) (string, []string, error) {
	fs := flag.NewFlagSet("ftpsd ban "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("c", "", "config file (TOML)")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", nil, err
		}
		if fs.NArg() == 0 {
			return *path, pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// parseBanPrefix reads ADDR or ADDR/LEN; a bare IPv6 address stands for its
// /v6Bits prefix, as the server counts IPv6 clients.
func parseBanPrefix(s string, v6Bits int) (netip.Prefix, error) {
	p, err := config.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or ADDR/LEN prefix", s)
	}
	if !strings.Contains(s, "/") && p.Addr().Is6() {
		return netip.PrefixFrom(p.Addr().WithZone(""), v6Bits).Masked(), nil
	}
	return p, nil
}

func cmdBan(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("ban: expected list, add or remove (see: ftpsd ban -h)")
	}
	if isHelpFlag(args[0]) || args[0] == "help" {
		return &helpRequest{"ban"}
	}
	sub := args[0]
	path, pos, err := banFlags(sub, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return &helpRequest{"ban"}
	}
	if err != nil {
		return fmt.Errorf("ban %s: %w", sub, err)
	}
	want := map[string][2]int{"list": {0, 0}, "add": {1, 2}, "remove": {1, 1}}
	n, ok := want[sub]
	if !ok {
		return fmt.Errorf("ban: unknown subcommand %q (list, add, remove)", sub)
	}
	if len(pos) < n[0] || len(pos) > n[1] {
		return fmt.Errorf("ban %s: wrong number of arguments\n\n%s", sub, banUsage)
	}
	cfg, err := config.Resolve(path)
	if err != nil {
		return err
	}
	if cfg.Firewall.Mode == "off" {
		return fmt.Errorf("ban %s: [firewall] mode is off, so there is no table to hold bans", sub)
	}
	fw, err := nft.Attach(nftConfig(cfg))
	if err != nil {
		return fmt.Errorf("ban %s: %w", sub, err)
	}
	defer fw.Release()
	switch sub {
	case "list":
		return banList(fw, stdout)
	case "add":
		p, err := parseBanPrefix(pos[0], cfg.Ban.IPv6Prefix)
		if err != nil {
			return fmt.Errorf("ban add: %w", err)
		}
		d := cfg.Ban.Duration
		if len(pos) == 2 {
			if d, err = time.ParseDuration(pos[1]); err != nil || d < time.Second {
				return fmt.Errorf("ban add: duration %q: want a Go duration of at least 1s, such as 90m or 24h", pos[1])
			}
		}
		if err := fw.Ban(p, d, "ftpsd ban add"); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "banned %s for %s\n", p, d)
		return nil
	default: // remove
		p, err := parseBanPrefix(pos[0], cfg.Ban.IPv6Prefix)
		if err != nil {
			return fmt.Errorf("ban remove: %w", err)
		}
		bans, err := fw.Bans()
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(bans, func(b nft.Ban) bool { return b.Prefix == p }) {
			return fmt.Errorf("ban remove: %s is not banned (see ftpsd ban list)", p)
		}
		if err := fw.Unban(p); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "ban on %s lifted\n", p)
		return nil
	}
}

func banList(fw *nft.NFTables, stdout io.Writer) error {
	bans, err := fw.Bans()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "banned: %d\n", len(bans))
	if len(bans) > 0 {
		fmt.Fprintf(stdout, "%-43s %-12s %s\n", "PREFIX", "EXPIRES IN", "REASON")
	}
	for _, b := range bans {
		fmt.Fprintf(stdout, "%-43s %-12s %s\n", b.Prefix, b.Expires.Round(time.Second), b.Reason)
	}
	return nil
}
