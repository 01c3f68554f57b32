package config

import "net/netip"

// proxyProtocol reads [server] proxy_protocol: the balancers trusted to
// send a PROXY protocol header, as addresses or CIDRs, stored masked
// ("10.0.0.7/8" means 10.0.0.0/8). Absent or empty leaves PROXY protocol
// off.
func (d *decoder) proxyProtocol(t *table, s *Server) {
	var list []string
	if !t.strs(&list, "proxy_protocol") {
		return
	}
	s.ProxyProtocol = make([]netip.Prefix, 0, len(list))
	for _, a := range list {
		p, err := ParsePrefix(a)
		if err != nil {
			d.errorf(t.key("proxy_protocol"), "%q is not an address or CIDR such as \"10.0.0.0/8\", \"192.0.2.7\" or \"2001:db8::/48\" (the balancers that send the PROXY header)", a)
			continue
		}
		if p.Bits() == 0 {
			// Every source could then claim any client address: take
			// another's pinholes, dodge its own bans, get others banned.
			d.errorf(t.key("proxy_protocol"), "%q trusts every address to name its client (anyone could pose as any client); list the balancers' addresses", a)
			continue
		}
		s.ProxyProtocol = append(s.ProxyProtocol, p)
	}
}
