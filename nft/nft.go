// Package nft is the only part of ftpsd that talks to the kernel's packet
// filter. It owns one nftables table (DESIGN.md §3) whose guard chain drops
// new TCP connections into the passive port range unless the exact
// (client IP, port) pair has been admitted as a pinhole.
package nft

import (
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultTable is the table name used when Config.Table is empty.
const DefaultTable = "ftpsd"

// DefaultTimeout is the pinhole timeout used when Config.Timeout is zero; it
// matches the default pinhole_timeout so no element can ever live forever.
const DefaultTimeout = 30 * time.Second

// MaxLabel is the longest Label the kernel keeps; nft refuses longer
// element comments, so longer labels are cut to this many bytes.
const MaxLabel = 128

// Pinhole is one admitted (client, port) pair.
type Pinhole struct {
	// Client is the session's remote IP; IPv4-mapped IPv6 is treated as
	// IPv4 and a zone is ignored, as in the packets the kernel sees.
	Client netip.Addr
	// Port is the passive port handed to that client.
	Port uint16
	// Label is free text stored as the set element's comment, e.g.
	// "user=alice session=7", so `nft list` and `ftpsd firewall status`
	// show whose hole it is. Cut to MaxLabel bytes.
	Label string
	// Expires is filled by List: time left before the kernel drops the
	// element by itself.
	Expires time.Duration
}

// Stats are the guard chain's counters.
type Stats struct {
	// DroppedPackets and DroppedBytes count new connections into the
	// passive range that matched no pinhole.
	DroppedPackets, DroppedBytes uint64
}

// Firewall is what the rest of ftpsd sees of the packet filter. Safe for
// concurrent use.
type Firewall interface {
	// Open adds {client . port} with the configured timeout. It is
	// synchronous: the kernel has the element when Open returns, so the
	// reply naming the port may be sent right after.
	Open(p Pinhole) error
	// Close deletes the element; one that is already gone (expired) is
	// not an error, since the goal "no hole" is reached either way.
	Close(client netip.Addr, port uint16) error
	// List returns the pinholes currently in the kernel.
	List() ([]Pinhole, error)
	// Stats returns the drop counter.
	Stats() (Stats, error)
	// Release closes the netlink connection; the table stays, so the
	// passive range remains guarded after ftpsd exits (fail closed).
	Release() error
}

// Config selects the table, the range it guards and how long holes live.
type Config struct {
	// Table is the name of ftpsd's own inet table; default DefaultTable.
	Table string
	// PortMin and PortMax bound the passive range to guard (inclusive).
	PortMin, PortMax uint16
	// Timeout is each element's lifetime (pinhole_timeout); default
	// DefaultTimeout. It bounds how long a hole can outlive a crash.
	Timeout time.Duration
	// ListenPorts are ftpsd's control ports: banned sources may not open
	// connections to them (nor to the passive range).
	ListenPorts []uint16
	// NetNSFd is 0 for the current network namespace, else an fd of the
	// namespace to work in (tests).
	NetNSFd int
	// Mark, when MarkMask is non-zero, is set (within MarkMask) on every
	// new connection the guard admits through a pinhole, so that a host
	// ruleset can accept exactly the marked ones and stay closed while
	// ftpsd's table is absent (README, "fail-closed recipe").
	Mark, MarkMask uint32
	// CheckInterval is how often the table is verified even without a
	// netlink event (the backstop for a missed event); default
	// DefaultCheckInterval.
	CheckInterval time.Duration
	// OnRestore, if set, is called after each restore of the table (from
	// the watcher goroutine; it must not block for long).
	OnRestore func(Restore)
	// Logger receives restore and watcher messages; default slog.Default().
	Logger *slog.Logger

	// noEvents leaves only the periodic check (tests of the backstop).
	noEvents bool
}

// DefaultCheckInterval is the backstop period of the table watcher.
const DefaultCheckInterval = 2 * time.Second

// Restore describes one re-creation of the table after something else
// removed or changed it.
type Restore struct {
	// At is when the restore was committed.
	At time.Time
	// Missing says what was found missing or altered, e.g. "table" or
	// "rules of chain guard".
	Missing string
	// Took is the time from noticing the damage to the commit.
	Took time.Duration
	// Pinholes is how many live pinholes were put back.
	Pinholes int
	// Bans is how many bans were put back.
	Bans int
}

// Restores counts the restores since Setup, with the last one.
type Restores struct {
	Count int
	Last  Restore
}

// ErrPermission is wrapped by errors caused by a missing CAP_NET_ADMIN.
var ErrPermission = errors.New("nftables needs CAP_NET_ADMIN (run as root or `setcap cap_net_admin+ep` on the ftpsd binary)")

// ErrUnsupported is wrapped by errors caused by a kernel without the
// nf_tables features ftpsd uses.
var ErrUnsupported = errors.New("the kernel lacks nf_tables support (needs CONFIG_NF_TABLES, CONFIG_NF_TABLES_INET and CONFIG_NFT_CT; try `modprobe nf_tables`)")

// ErrNoTable is wrapped by Attach when ftpsd's table does not exist.
var ErrNoTable = errors.New("table does not exist")

// ErrReleased is returned by methods called after Release.
var ErrReleased = errors.New("nftables firewall already released")

// Off is the explicit "no firewall" implementation ([firewall] mode = "off"):
// every method succeeds and does nothing.
type Off struct{}

var (
	_ Firewall = Off{}
	_ Firewall = (*NFTables)(nil)
)

// Open does nothing.
func (Off) Open(Pinhole) error { return nil }

// Close does nothing.
func (Off) Close(netip.Addr, uint16) error { return nil }

// List returns nil: there is no table to read.
func (Off) List() ([]Pinhole, error) { return nil, nil }

// Stats returns zero counters.
func (Off) Stats() (Stats, error) { return Stats{}, nil }

// Release does nothing.
func (Off) Release() error { return nil }

// withDefaults fills defaults and rejects configs that would leave holes
// open forever or guard nothing.
func (c Config) withDefaults(needRange bool) (Config, error) {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if len(c.Table) > 255 || strings.ContainsRune(c.Table, 0) {
		return c, errors.New("nftables table name must be 1-255 bytes without NUL")
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Timeout < time.Millisecond {
		// The kernel counts element timeouts in milliseconds; 0 would
		// mean "never expires".
		return c, errors.New("pinhole timeout must be at least 1ms")
	}
	if needRange && (c.PortMin == 0 || c.PortMax < c.PortMin) {
		return c, errors.New("passive port range must be 1-65535 with min <= max")
	}
	if c.Mark&^c.MarkMask != 0 || (c.MarkMask != 0 && c.Mark == 0) {
		return c, errors.New("packet mark must be non-zero and lie within its mask")
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = DefaultCheckInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// cleanLabel makes a label safe to store as an element comment: at most
// MaxLabel bytes, cut on a rune boundary, with no control characters or
// double quotes, which would break `nft list` output and re-parsing.
func cleanLabel(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == utf8.RuneError {
			return '_'
		}
		return r
	}, s)
	if len(s) <= MaxLabel {
		return s
	}
	cut := MaxLabel
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// canonical returns the address as the kernel sees the packet's source:
// IPv4-mapped IPv6 (from dual-stack listeners) is IPv4 on the wire, and a
// zone never appears in a packet.
func canonical(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}
