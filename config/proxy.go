package config

import "net/netip"

// proxyProtocol reads [server] proxy_protocol: the balancers trusted to
// send a PROXY protocol header, as addresses or CIDRs, stored masked
// ("10.0.0.7/8" means 10.0.0.0/8). Absent or empty leaves PROXY protocol
// off.
func (d *decoder) proxyProtocol(t *table, s *Server) {
	list, ok := d.prefixes(t, "proxy_protocol",
		`"10.0.0.0/8", "192.0.2.7" or "2001:db8::/48" (the balancers that send the PROXY header)`,
		func(p netip.Prefix) string {
			if p.Bits() == 0 {
				// Every source could then claim any client address: take
				// another's pinholes, dodge its own bans, get others banned.
				return "trusts every address to name its client (anyone could pose as any client); list the balancers' addresses"
			}
			return ""
		})
	if ok {
		s.ProxyProtocol = list
	}
}
