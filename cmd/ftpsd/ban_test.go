package main

import (
	"net/netip"
	"testing"
)

// ftpsd ban reads prefixes as the config does (IPv4-mapped ones become
// IPv4), and a bare IPv6 address stands for its client prefix.
func TestParseBanPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.9":            "203.0.113.9/32",
		"203.0.113.9/24":         "203.0.113.0/24",
		"::ffff:203.0.113.9":     "203.0.113.9/32",
		"::ffff:203.0.113.0/120": "203.0.113.0/24",
		"2001:db8::1":            "2001:db8::/64",
		"fe80::1%eth0":           "fe80::/64",
		"2001:db8:1:2:3::/48":    "2001:db8:1::/48",
	} {
		got, err := parseBanPrefix(in, 64)
		if err != nil || got != netip.MustParsePrefix(want) {
			t.Errorf("parseBanPrefix(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "host.example", "10.0.0.0/33", "::ffff:1.2.3.4/90"} {
		if p, err := parseBanPrefix(bad, 64); err == nil {
			t.Errorf("parseBanPrefix(%q) = %v, want an error", bad, p)
		}
	}
}
