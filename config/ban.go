package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// ban reads [ban]. Allowed sources are stored masked, so "192.0.2.7/24"
// and "192.0.2.0/24" mean the same.
func (d *decoder) ban(t *table, b *Ban) {
	if t.integer(&b.MaxFailures, "max_failures") && b.MaxFailures < 1 {
		d.errorf(t.key("max_failures"), "must be at least 1, not %d", b.MaxFailures)
	}
	t.duration(&b.Window, "window")
	t.duration(&b.Duration, "duration")
	if allow, ok := d.prefixes(t, "allow", `"192.0.2.0/24" or "2001:db8::/48"`, nil); ok {
		b.Allow = allow
	}
	if t.integer(&b.IPv6Prefix, "ipv6_prefix") && (b.IPv6Prefix < 1 || b.IPv6Prefix > 128) {
		d.errorf(t.key("ipv6_prefix"), "must be a prefix length from 1 to 128, not %d", b.IPv6Prefix)
	}
	t.done()
}

// prefixes reads key, a list of addresses or CIDRs (ParsePrefix), and
// reports whether it was set. examples end the message for an entry that
// does not parse; refuse, if not nil, says why a parsed prefix is still
// unwanted ("" keeps it).
func (d *decoder) prefixes(t *table, key, examples string, refuse func(netip.Prefix) string) ([]netip.Prefix, bool) {
	var list []string
	if !t.strs(&list, key) {
		return nil, false
	}
	out := make([]netip.Prefix, 0, len(list))
	for _, a := range list {
		p, err := ParsePrefix(a)
		if err != nil {
			d.errorf(t.key(key), "%q is not an address or CIDR such as %s", a, examples)
			continue
		}
		if refuse != nil {
			if why := refuse(p); why != "" {
				d.errorf(t.key(key), "%q %s", a, why)
				continue
			}
		}
		out = append(out, p)
	}
	return out, true
}

// ParsePrefix reads ADDR or ADDR/LEN (IPv4-mapped IPv6 as IPv4) and returns
// it masked. A bare address is a single host.
func ParsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("IPv4-mapped prefix %q is shorter than /96", s)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}
