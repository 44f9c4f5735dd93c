package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Partner is what the other side of a failover relationship declares, read
// from its xdhcpd configuration or its ISC dhcpd.conf, for
// `xdhcpd check-config --partner FILE`.
type Partner struct {
	Source string // "xdhcpd" or "dhcpd"
	Name   string
	Role   string
	Listen netip.AddrPort
	Peer   netip.AddrPort
	TLS    bool // failover.tls is set (xdhcpd only)
	// Pools are the ranges served under the relationship.
	Pools []Pool
}

// LoadPartner reads path as an xdhcpd configuration, or else as a
// dhcpd.conf.
func LoadPartner(path string) (*Partner, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if c, yerr := Parse(path, data); yerr == nil {
		if !c.Failover.Enabled() {
			return nil, fmt.Errorf("%s: no failover: section", path)
		}
		p := &Partner{Source: "xdhcpd", Name: c.Failover.Name, Role: c.Failover.Role, Listen: c.Failover.Listen, Peer: c.Failover.Peer, TLS: c.Failover.TLS != nil}
		for _, s := range c.Subnets {
			p.Pools = append(p.Pools, s.Pools...)
		}
		return p, nil
	} else if looksLikeYAML(data) {
		return nil, yerr
	}
	return parseDhcpdPartner(path, string(data))
}

// looksLikeYAML: a dhcpd.conf's statements end in semicolons.
func looksLikeYAML(data []byte) bool {
	return !strings.Contains(string(data), ";")
}

// dhcpdTokens splits a dhcpd.conf into words, quoted strings, braces and
// semicolons, without comments.
func dhcpdTokens(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		inQuote := false
		cur := ""
		flush := func() {
			if cur != "" {
				out = append(out, cur)
				cur = ""
			}
		}
	scan:
		for _, r := range line {
			switch {
			case inQuote:
				cur += string(r)
				if r == '"' {
					inQuote = false
					flush()
				}
			case r == '#':
				break scan
			case r == '"':
				flush()
				cur, inQuote = `"`, true
			case r == '{' || r == '}' || r == ';':
				flush()
				out = append(out, string(r))
			case r == ' ' || r == '\t' || r == '\r':
				flush()
			default:
				cur += string(r)
			}
		}
		flush()
	}
	return out
}

// parseDhcpdPartner reads the failover peer block and the ranges of the
// pools that name it: the subset of dhcpd.conf a relationship needs.
func parseDhcpdPartner(path, text string) (*Partner, error) {
	toks := dhcpdTokens(text)
	p := &Partner{Source: "dhcpd"}
	port, peerPort := 647, 647
	var listen, peer netip.Addr
	type block struct {
		kind     string
		failover string
		ranges   [][2]string
	}
	var stack []*block
	var stmt []string
	for _, t := range toks {
		switch t {
		case "{":
			b := &block{kind: strings.Join(stmt, " ")}
			if len(stmt) >= 3 && stmt[0] == "failover" && stmt[1] == "peer" {
				b.kind = "failover"
				if p.Name != "" {
					return nil, fmt.Errorf("%s: more than one failover peer block (one relationship is checked)", path)
				}
				p.Name = strings.Trim(stmt[2], `"`)
			}
			stack = append(stack, b)
			stmt = nil
		case "}":
			if len(stack) == 0 {
				return nil, fmt.Errorf("%s: unbalanced }", path)
			}
			b := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if b.kind == "pool" && b.failover != "" {
				for _, r := range b.ranges {
					s, e := netip.ParseAddr(r[0])
					end, e2 := netip.ParseAddr(r[1])
					if e != nil || e2 != nil {
						return nil, fmt.Errorf("%s: range %s %s", path, r[0], r[1])
					}
					p.Pools = append(p.Pools, Pool{Start: s, End: end})
				}
			}
			stmt = nil
		case ";":
			if len(stack) > 0 {
				b := stack[len(stack)-1]
				switch {
				case b.kind == "failover":
					if err := dhcpdFailoverStmt(p, stmt, &listen, &peer, &port, &peerPort); err != nil {
						return nil, fmt.Errorf("%s: failover peer %q: %w", path, p.Name, err)
					}
				case len(stmt) == 3 && stmt[0] == "failover" && stmt[1] == "peer":
					b.failover = strings.Trim(stmt[2], `"`)
				case len(stmt) >= 2 && stmt[0] == "range":
					r := [2]string{stmt[len(stmt)-1], stmt[len(stmt)-1]}
					if len(stmt) == 3 {
						r[0] = stmt[1]
					}
					b.ranges = append(b.ranges, r)
				}
			}
			stmt = nil
		default:
			stmt = append(stmt, t)
		}
	}
	if p.Name == "" {
		return nil, fmt.Errorf("%s: no failover peer block", path)
	}
	if listen.IsValid() {
		p.Listen = netip.AddrPortFrom(listen, uint16(port))
	}
	if peer.IsValid() {
		p.Peer = netip.AddrPortFrom(peer, uint16(peerPort))
	}
	return p, nil
}

func dhcpdFailoverStmt(p *Partner, stmt []string, listen, peer *netip.Addr, port, peerPort *int) error {
	addr := func(s string) (netip.Addr, error) { return netip.ParseAddr(s) }
	var err error
	switch {
	case len(stmt) == 1 && (stmt[0] == "primary" || stmt[0] == "secondary"):
		p.Role = stmt[0]
	case len(stmt) == 2 && stmt[0] == "address":
		*listen, err = addr(stmt[1])
	case len(stmt) == 3 && stmt[0] == "peer" && stmt[1] == "address":
		*peer, err = addr(stmt[2])
	case len(stmt) == 2 && stmt[0] == "port":
		*port, err = strconv.Atoi(stmt[1])
	case len(stmt) == 3 && stmt[0] == "peer" && stmt[1] == "port":
		*peerPort, err = strconv.Atoi(stmt[2])
	}
	if err != nil {
		return fmt.Errorf("%q: %w", strings.Join(stmt, " "), err)
	}
	return nil
}

// CheckPartner lists what keeps c and the partner from forming the
// relationship: its name, the roles, each side's address for the other,
// and the pools (each range on one side only is named). Nil means they
// match.
func (c *Config) CheckPartner(p *Partner) error {
	f := c.Failover
	var probs []string
	if !f.Enabled() {
		return errors.New("this configuration has no failover: section")
	}
	if p.Source == "dhcpd" && f.TLS != nil {
		probs = append(probs, "tls is set here, and ISC dhcpd speaks only plain TCP: remove failover.tls")
	}
	if p.Source == "xdhcpd" && (f.TLS == nil) != !p.TLS {
		probs = append(probs, fmt.Sprintf("tls: set on one side only (here %v, on the partner %v)", f.TLS != nil, p.TLS))
	}
	if p.Name != f.Name {
		probs = append(probs, fmt.Sprintf("relationship name: %q here, %q on the partner", f.Name, p.Name))
	}
	if p.Role == f.Role || p.Role == "" {
		probs = append(probs, fmt.Sprintf("roles: %s here, %q on the partner (one primary, one secondary)", f.Role, p.Role))
	}
	if p.Peer.IsValid() && p.Peer != f.Listen {
		probs = append(probs, fmt.Sprintf("the partner connects to %s, this server listens on %s", p.Peer, f.Listen))
	}
	if p.Listen.IsValid() && p.Listen != f.Peer {
		probs = append(probs, fmt.Sprintf("this server connects to %s, the partner listens on %s", f.Peer, p.Listen))
	}
	// The allocation mode is part of a pool's identity: both sides must
	// split an independent pool the same way.
	key := func(q Pool) string {
		k := q.Start.String() + "-" + q.End.String()
		if q.Independent {
			k += " (failover-allocation: independent)"
		}
		return k
	}
	here, there := map[string]bool{}, map[string]bool{}
	for _, s := range c.Subnets {
		for _, q := range s.Pools {
			here[key(q)] = true
			if q.Independent && p.Source == "dhcpd" {
				probs = append(probs, fmt.Sprintf("pool %s-%s: failover-allocation independent needs an xdhcpd partner (dhcpd balances every pool)", q.Start, q.End))
			}
		}
	}
	for _, q := range p.Pools {
		there[key(q)] = true
	}
	var only []string
	for k := range here {
		if !there[k] {
			only = append(only, fmt.Sprintf("pool %s is on this side only", k))
		}
	}
	for k := range there {
		if !here[k] {
			only = append(only, fmt.Sprintf("pool %s is on the partner's side only", k))
		}
	}
	slices.Sort(only)
	probs = append(probs, only...)
	if len(probs) > 0 {
		return fmt.Errorf("the partner's configuration (%s) does not match:\n  %s", p.Source, strings.Join(probs, "\n  "))
	}
	return nil
}
