package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// raw* mirror the file. Addresses and durations stay strings here so that
// a bad one is reported with its field rather than as a YAML error.
type rawConfig struct {
	Server     rawServer     `yaml:"server"`
	Fastpath   rawFastpath   `yaml:"fastpath"`
	Leasequery rawLeasequery `yaml:"leasequery"`
	Subnets    []rawSubnet   `yaml:"subnets"`
	Failover   *rawFailover  `yaml:"failover"`
}

type rawServer struct {
	Interfaces     []string `yaml:"interfaces"`
	StateDir       string   `yaml:"state-dir"`
	ControlSocket  *string  `yaml:"control-socket"`
	MetricsListen  *string  `yaml:"metrics-listen"`
	LogLevel       string   `yaml:"log-level"`
	Authoritative  *bool    `yaml:"authoritative"`
	OfferHold      string   `yaml:"offer-hold"`
	DeclineHold    string   `yaml:"decline-hold"`
	CommitMaxDelay string   `yaml:"commit-max-delay"`
	CommitMaxBatch int      `yaml:"commit-max-batch"`
	FoldEvery      string   `yaml:"journal-fold-every"`
	JournalMax     int      `yaml:"journal-max"`
	// Bounds on pending offers (issue 14 §4: a flood of DISCOVERs).
	OfferPoolShare  *float64 `yaml:"offer-pool-share"`
	OfferPerCircuit *int     `yaml:"offer-per-circuit"`
	// Bounds on how long a request may wait (issue 19: overload).
	Pprof           bool   `yaml:"pprof"`
	GCPercent       *int   `yaml:"gc-percent"`
	MaxWait         string `yaml:"max-wait"`
	QueueTarget     string `yaml:"queue-target"`
	QueueInterval   string `yaml:"queue-interval"`
	DiscoverHoldoff string `yaml:"discover-holdoff"`
	RequestHoldoff  string `yaml:"request-holdoff"`
	RenewalAck      string `yaml:"renewal-ack"`
}

type rawFastpath struct {
	Enabled   bool   `yaml:"enabled"`
	Mode      string `yaml:"mode"`
	MinGrant  string `yaml:"min-grant"`
	PuntRate  *int   `yaml:"punt-rate"`
	PuntBurst *int   `yaml:"punt-burst"`
	Horizon   string `yaml:"horizon"`
	PinDir    string `yaml:"pin-dir"`
	MaxLeases *int   `yaml:"max-leases"`
}

type rawLeasequery struct {
	Enabled              bool     `yaml:"enabled"`
	Requesters           []string `yaml:"requesters"`
	TCPListen            *string  `yaml:"tcp-listen"`
	MaxConnsPerRequester int      `yaml:"max-conns-per-requester"`
	IdleTimeout          string   `yaml:"idle-timeout"`
}

type rawSubnet struct {
	Subnet       string           `yaml:"subnet"`
	Pools        []rawPool        `yaml:"pools"`
	ForceRenew   rawForceRenew    `yaml:"forcerenew"`
	LeaseTime    string           `yaml:"lease-time"`
	T1           string           `yaml:"t1"`
	T2           string           `yaml:"t2"`
	Relays       []string         `yaml:"relays"`
	ServerID     string           `yaml:"server-id"`
	Options      rawOptions       `yaml:"options"`
	Reservations []rawReservation `yaml:"reservations"`
}

// rawPool is one entry of pools: "A-B" (or a prefix), or
// {range: A-B, drain: true} for a pool being emptied for renumbering.
type rawPool struct {
	Range              string `yaml:"range"`
	Drain              bool   `yaml:"drain"`
	FailoverAllocation string `yaml:"failover-allocation"`
}

// UnmarshalYAML takes the plain string form as the range.

// DefaultGCPercent is server.gc-percent's default, below Go's 100: the
// lease table is most of the daemon's heap (2 GB at ten million leases),
// and at 100 the heap grows to twice that before a collection, under
// churn, a bulk leasequery or start-up's bulk work (a peak RSS of 4.4 GB
// of heap at ten million, measured). Each collection marks the table's
// records, so a lower setting costs CPU in proportion to what is
// allocated (README: sizing).
const DefaultGCPercent = 50

// DefaultQueueTarget is server.queue-target's default. It was 20 ms
// from 2026-12-05: at 10 ms, service stalls pushed requests the server
// would have answered past the target, and they were dropped (seven runs
// of xdhcp-bench overload: 83 to 115% of the ceiling answered at 120%
// offered, against 97 to 117% at 20 ms). The longest of those stalls
// were the server's own: the expiry heap grew with every renewal, and
// copying it under the lock held every request for 27 to 38 ms. Without
// them (2026-12-06), eight alternating runs at 120% and 150%: at 10 ms,
// goodput 101 to 120% and 108 to 134%, p99 24 to 66 ms (one 344 ms,
// a stall after the requests were read); at 20 ms, 102 to 117% and 103
// to 139%, p99 47 to 68 ms. At 5 ms goodput fell to 86% at 120% in one
// of three runs.
const DefaultQueueTarget = 10 * time.Millisecond

func (p *rawPool) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		p.Range = n.Value
		return nil
	}
	type plain rawPool // without this method
	return n.Decode((*plain)(p))
}

// rawForceRenew is a subnet's forcerenew: section.
type rawForceRenew struct {
	AllowUnauthenticated bool   `yaml:"allow-unauthenticated"`
	RetransmitStart      string `yaml:"retransmit-start"`
	RetransmitCount      *int   `yaml:"retransmit-count"`
}

type rawOptions struct {
	Routers               []string    `yaml:"routers"`
	DNSServers            []string    `yaml:"dns-servers"`
	DomainName            string      `yaml:"domain-name"`
	DomainSearch          []string    `yaml:"domain-search"`
	NTPServers            []string    `yaml:"ntp-servers"`
	MTU                   *int        `yaml:"mtu"`
	Broadcast             string      `yaml:"broadcast"`
	ClasslessStaticRoutes []rawRoute  `yaml:"classless-static-routes"`
	Custom                []rawCustom `yaml:"custom"`
}

type rawRoute struct {
	Destination string `yaml:"destination"`
	Router      string `yaml:"router"`
}

type rawCustom struct {
	Code  int       `yaml:"code"`
	Type  string    `yaml:"type"`
	Value yaml.Node `yaml:"value"`
}

type rawReservation struct {
	HWAddress string `yaml:"hw-address"`
	ClientID  string `yaml:"client-id"`
	IP        string `yaml:"ip"`
	Hostname  string `yaml:"hostname"`
}

func (v *validator) build(r *rawConfig) *Config {
	c := &Config{}
	s := &c.Server
	rs := r.Server
	if len(rs.Interfaces) == 0 {
		v.add("server.interfaces", "at least one interface is required")
	}
	seen := map[string]bool{}
	for i, n := range rs.Interfaces {
		p := fmt.Sprintf("server.interfaces[%d]", i)
		switch {
		case n == "" || len(n) > 15 || strings.ContainsAny(n, "/ \t"):
			v.add(p, "%q is not an interface name", n)
		case seen[n]:
			v.add(p, "interface %q listed twice", n)
		}
		seen[n] = true
	}
	s.Interfaces = rs.Interfaces
	if s.StateDir = rs.StateDir; s.StateDir == "" {
		v.add("server.state-dir", "required (the lease database lives there)")
	}
	s.ControlSocket = "/run/xdhcp/xdhcpd.sock"
	if rs.ControlSocket != nil {
		if s.ControlSocket = *rs.ControlSocket; s.ControlSocket == "" {
			v.add("server.control-socket", "must not be empty")
		}
	}
	s.MetricsListen = "127.0.0.1:9467"
	if rs.MetricsListen != nil {
		s.MetricsListen = *rs.MetricsListen
	}
	if s.MetricsListen != "" {
		v.hostPort("server.metrics-listen", s.MetricsListen)
	}
	switch rs.LogLevel {
	case "", "info":
		s.LogLevel = slog.LevelInfo
	case "debug":
		s.LogLevel = slog.LevelDebug
	case "warn":
		s.LogLevel = slog.LevelWarn
	case "error":
		s.LogLevel = slog.LevelError
	default:
		v.add("server.log-level", "%q is not one of debug, info, warn, error", rs.LogLevel)
	}
	s.Authoritative = rs.Authoritative == nil || *rs.Authoritative
	s.OfferHold = v.duration("server.offer-hold", rs.OfferHold, 10*time.Second)
	if rs.OfferHold != "" && s.OfferHold < time.Second {
		v.add("server.offer-hold", "%v is too short (minimum 1s): an address offered to one client could be offered to the next before the first asks for it", s.OfferHold)
	}
	s.DeclineHold = v.duration("server.decline-hold", rs.DeclineHold, 24*time.Hour)
	if rs.DeclineHold != "" && s.DeclineHold < time.Second {
		v.add("server.decline-hold", "%v is too short (minimum 1s): a declined address, in use by someone, would be handed out again at once", s.DeclineHold)
	}
	s.CommitMaxDelay = v.duration("server.commit-max-delay", rs.CommitMaxDelay, 2*time.Millisecond)
	if s.CommitMaxDelay > time.Second {
		v.add("server.commit-max-delay", "%v is too long: every ACK waits for it", s.CommitMaxDelay)
	}
	s.CommitMaxBatch = rs.CommitMaxBatch
	if s.CommitMaxBatch == 0 {
		s.CommitMaxBatch = 4096
	} else if s.CommitMaxBatch < 1 || s.CommitMaxBatch > 1<<20 {
		v.add("server.commit-max-batch", "%d is outside 1..1048576", s.CommitMaxBatch)
	}
	s.FoldEvery = v.duration("server.journal-fold-every", rs.FoldEvery, time.Second)
	if rs.FoldEvery != "" && (s.FoldEvery < 10*time.Millisecond || s.FoldEvery > time.Minute) {
		v.add("server.journal-fold-every", "%v is outside 10ms..1m: the journal is folded into the lease tree this often, and memory holds what waits", s.FoldEvery)
	}
	s.JournalMax = rs.JournalMax
	if s.JournalMax == 0 {
		s.JournalMax = 1 << 18
	} else if s.JournalMax < 1024 || s.JournalMax > 1<<24 {
		v.add("server.journal-max", "%d is outside 1024..16777216", s.JournalMax)
	}

	s.OfferPoolShare = 0.5
	if rs.OfferPoolShare != nil {
		s.OfferPoolShare = *rs.OfferPoolShare
		if !(s.OfferPoolShare >= 0 && s.OfferPoolShare <= 1) {
			v.add("server.offer-pool-share", "%v is outside 0..1 (0 turns the bound off)", s.OfferPoolShare)
		}
	}
	s.OfferPerCircuit = 8
	if rs.OfferPerCircuit != nil {
		s.OfferPerCircuit = *rs.OfferPerCircuit
		if s.OfferPerCircuit < 0 || s.OfferPerCircuit > 65535 {
			v.add("server.offer-per-circuit", "%d is outside 0..65535 (0 turns the bound off)", s.OfferPerCircuit)
		}
	}

	s.Pprof = rs.Pprof
	if s.Pprof {
		if s.MetricsListen == "" {
			v.add("server.pprof", "needs server.metrics-listen: the profiles are served there under /debug/pprof/")
		} else {
			v.warn("server.pprof", "on: CPU and heap profiles are served to anyone who reaches %s; keep it on a loopback or management address", s.MetricsListen)
		}
	}
	s.GCPercent = DefaultGCPercent
	if rs.GCPercent != nil {
		s.GCPercent = *rs.GCPercent
		if s.GCPercent < 10 || s.GCPercent > 1000 {
			v.add("server.gc-percent", "%d is outside 10..1000", s.GCPercent)
		}
	}
	s.MaxWait = v.duration("server.max-wait", rs.MaxWait, time.Second)
	s.QueueTarget = v.duration("server.queue-target", rs.QueueTarget, DefaultQueueTarget)
	s.QueueInterval = v.duration("server.queue-interval", rs.QueueInterval, 100*time.Millisecond)
	s.DiscoverHoldoff = v.duration("server.discover-holdoff", rs.DiscoverHoldoff, 2*time.Second)
	s.RequestHoldoff = v.duration("server.request-holdoff", rs.RequestHoldoff, 2*time.Second)
	switch {
	case s.MaxWait < 0 || s.MaxWait > time.Minute:
		v.add("server.max-wait", "%v is outside 0..1m (0 turns the bound off)", s.MaxWait)
	case s.QueueTarget < 0 || s.MaxWait > 0 && s.QueueTarget > s.MaxWait:
		v.add("server.queue-target", "%v is outside 0..max-wait (%v; 0 turns the bound off)", s.QueueTarget, s.MaxWait)
	case s.QueueTarget > 0 && (s.QueueInterval < s.QueueTarget || s.QueueInterval > time.Minute):
		v.add("server.queue-interval", "%v is outside queue-target (%v)..1m", s.QueueInterval, s.QueueTarget)
	}
	for _, h := range []struct {
		key, what string
		d         time.Duration
	}{{"server.discover-holdoff", "DISCOVER", s.DiscoverHoldoff}, {"server.request-holdoff", "REQUEST", s.RequestHoldoff}} {
		switch {
		case h.d < 0 || h.d > time.Minute:
			v.add(h.key, "%v is outside 0..1m (0 turns it off)", h.d)
		case h.d >= 3*time.Second:
			v.warn(h.key, "%v: under a %s flood, clients that retransmit after 4 s ± 1 s as RFC 2131 has it may have a retransmission dropped, and their holdoff doubled as a repeater's; below 3 s only floods are", h.d, h.what)
		}
	}

	switch s.RenewalAck = rs.RenewalAck; s.RenewalAck {
	case "":
		s.RenewalAck = RenewalAckHorizon
	case RenewalAckHorizon, RenewalAckRecord:
	default:
		v.add("server.renewal-ack", "%q is neither %q nor %q", s.RenewalAck, RenewalAckHorizon, RenewalAckRecord)
	}

	for i := range r.Subnets {
		c.Subnets = append(c.Subnets, v.subnet(fmt.Sprintf("subnets[%d]", i), &r.Subnets[i]))
	}
	if len(c.Subnets) == 0 {
		v.add("subnets", "at least one subnet is required")
	}
	v.overlaps(c.Subnets)
	v.sharedRelays(c.Subnets)

	f := &c.Fastpath
	rf := r.Fastpath
	f.Enabled = rf.Enabled
	switch f.Mode = rf.Mode; f.Mode {
	case "":
		f.Mode = "auto"
	case "auto", "native", "generic":
	default:
		v.add("fastpath.mode", "%q is not one of auto, native, generic", rf.Mode)
	}
	f.MinGrant = v.duration("fastpath.min-grant", rf.MinGrant, time.Minute)
	f.PuntRate = 20
	if rf.PuntRate != nil {
		if *rf.PuntRate < 1 || *rf.PuntRate > 1_000_000 {
			v.add("fastpath.punt-rate", "%d is outside 1..1000000", *rf.PuntRate)
		} else {
			f.PuntRate = uint32(*rf.PuntRate)
		}
	}
	f.PuntBurst = 2 * f.PuntRate
	if rf.PuntBurst != nil {
		if *rf.PuntBurst < 1 || *rf.PuntBurst > 1_000_000 {
			v.add("fastpath.punt-burst", "%d is outside 1..1000000", *rf.PuntBurst)
		} else {
			f.PuntBurst = uint32(*rf.PuntBurst)
		}
	}
	f.PinDir = rf.PinDir
	if f.PinDir == "" {
		f.PinDir = "/sys/fs/bpf/xdhcp"
	} else if !filepath.IsAbs(f.PinDir) {
		v.add("fastpath.pin-dir", "%q is not an absolute path", f.PinDir)
	}
	f.MaxLeases = 1 << 21
	if rf.MaxLeases != nil {
		if *rf.MaxLeases < 1 || *rf.MaxLeases > 1<<26 {
			v.add("fastpath.max-leases", "%d is outside 1..%d", *rf.MaxLeases, 1<<26)
		} else {
			f.MaxLeases = uint32(*rf.MaxLeases)
		}
	}
	var longest, shortest time.Duration
	for _, sn := range c.Subnets {
		longest = max(longest, sn.LeaseTime)
		if shortest == 0 || sn.LeaseTime < shortest {
			shortest = sn.LeaseTime
		}
	}
	f.Horizon = v.duration("fastpath.horizon", rf.Horizon, 4*longest)
	if f.Enabled {
		if f.MinGrant > shortest && shortest > 0 {
			v.add("fastpath.min-grant", "%v is longer than the shortest lease time (%v): those leases would never be renewed in XDP", f.MinGrant, shortest)
		}
		if f.Horizon < longest {
			v.add("fastpath.horizon", "%v is shorter than the longest lease time (%v): renewals would be cut short", f.Horizon, longest)
		}
	}
	if c.Server.RenewalAck == RenewalAckHorizon && f.Horizon < 2*longest && !(f.Enabled && f.Horizon < longest) {
		// A renewal at T1 (half the lease time) asks for a lease time from
		// then, on the horizon its last ACK moved (the fast path also
		// keeps horizons at least half of this ahead).
		v.warn("fastpath.horizon", "%v is less than twice the longest lease time (%v): with server.renewal-ack %s most renewals will wait for their record to be written", f.Horizon, longest, RenewalAckHorizon)
	}

	lq := &c.Leasequery
	rl := r.Leasequery
	lq.Enabled = rl.Enabled
	for i, s := range rl.Requesters {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil && a.Is4() {
				p, err = netip.PrefixFrom(a, 32), nil
			}
		}
		if err != nil || !p.Addr().Is4() {
			v.add(fmt.Sprintf("leasequery.requesters[%d]", i), "%q is not an IPv4 prefix", s)
			continue
		}
		lq.Requesters = append(lq.Requesters, p.Masked())
	}
	if lq.Enabled && len(lq.Requesters) == 0 {
		v.add("leasequery.requesters", "leasequery is enabled but nobody may query: list the requesters")
	}
	lq.TCPListen = ":67"
	if rl.TCPListen != nil {
		lq.TCPListen = *rl.TCPListen
	}
	if lq.TCPListen != "" {
		v.hostPort("leasequery.tcp-listen", lq.TCPListen)
	}
	if lq.MaxConnsPerRequester = rl.MaxConnsPerRequester; lq.MaxConnsPerRequester == 0 {
		lq.MaxConnsPerRequester = 4
	} else if lq.MaxConnsPerRequester < 0 {
		v.add("leasequery.max-conns-per-requester", "must be positive")
	}
	lq.IdleTimeout = v.duration("leasequery.idle-timeout", rl.IdleTimeout, time.Minute)
	c.Failover = v.failover(r.Failover)
	for i, s := range c.Subnets {
		for j, p := range s.Pools {
			if p.Independent && !c.Failover.Enabled() {
				v.warn(fmt.Sprintf("subnets[%d].pools[%d].failover-allocation", i, j), "independent: no failover section, so the whole pool is this server's")
			}
		}
	}
	return c
}

func (v *validator) hostPort(path, s string) {
	host, port, err := net.SplitHostPort(s)
	if err == nil {
		var n int
		if _, perr := fmt.Sscan(port, &n); perr != nil || n < 1 || n > 65535 {
			err = fmt.Errorf("bad port %q", port)
		}
	}
	if err == nil && host != "" {
		if _, aerr := netip.ParseAddr(host); aerr != nil && host != "localhost" {
			err = fmt.Errorf("%q is not an address", host)
		}
	}
	if err != nil {
		v.add(path, "%q is not host:port (%v)", s, err)
	}
}

func (v *validator) subnet(path string, r *rawSubnet) Subnet {
	var s Subnet
	p, err := netip.ParsePrefix(r.Subnet)
	if err != nil || !p.Addr().Is4() {
		v.add(path+".subnet", "%q is not an IPv4 prefix like 10.0.0.0/24", r.Subnet)
	} else if p.Masked() != p {
		v.add(path+".subnet", "%q has host bits set (did you mean %s?)", r.Subnet, p.Masked())
	} else {
		s.Prefix = p
	}
	s.LeaseTime = v.duration(path+".lease-time", r.LeaseTime, time.Hour)
	if r.LeaseTime != "" && s.LeaseTime < 10*time.Second {
		v.add(path+".lease-time", "%v is too short (minimum 10s)", s.LeaseTime)
	}
	if s.LeaseTime > 0xfffffffe*time.Second {
		v.add(path+".lease-time", "%v does not fit in 32 bits of seconds", s.LeaseTime)
	}
	s.T1 = v.duration(path+".t1", r.T1, s.LeaseTime/2)
	s.T2 = v.duration(path+".t2", r.T2, s.LeaseTime*7/8)
	if s.T1 <= 0 || s.T1 >= s.T2 {
		v.add(path+".t1", "T1 (%v) must be positive and shorter than T2 (%v)", s.T1, s.T2)
	}
	if s.T2 >= s.LeaseTime {
		v.add(path+".t2", "T2 (%v) must be shorter than the lease time (%v)", s.T2, s.LeaseTime)
	}
	s.Relays = v.addrs(path+".relays", r.Relays)
	if r.ServerID != "" {
		s.ServerID = v.addr(path+".server-id", r.ServerID)
	}
	for i, rp := range r.Pools {
		pp := fmt.Sprintf("%s.pools[%d]", path, i)
		ps := rp.Range
		if _, ok := v.lines[pp+".range"]; ok {
			pp += ".range"
		}
		if ps == "" {
			v.add(pp, "a pool needs a range (A-B or a prefix)")
			continue
		}
		pool, ok := v.pool(pp, ps)
		if !ok {
			continue
		}
		pool.Drain = rp.Drain
		switch rp.FailoverAllocation {
		case "", "proportional":
		case "independent":
			pool.Independent = true
		default:
			v.add(strings.TrimSuffix(pp, ".range")+".failover-allocation", "%q is not proportional or independent", rp.FailoverAllocation)
		}
		if s.Prefix.IsValid() {
			switch {
			case !s.Prefix.Contains(pool.Start) || !s.Prefix.Contains(pool.End):
				v.add(pp, "%s is outside subnet %s", ps, s.Prefix)
				continue
			case s.Prefix.Bits() < 31 && (pool.Contains(s.Prefix.Addr()) || pool.Contains(lastAddr(s.Prefix))):
				v.add(pp, "%s includes the network or broadcast address of %s", ps, s.Prefix)
				continue
			}
		}
		s.Pools = append(s.Pools, pool)
	}
	s.ForceRenew = v.forceRenew(path+".forcerenew", &r.ForceRenew)
	s.Options = v.options(path+".options", &r.Options, s.Prefix)
	s.Reservations = v.reservations(path+".reservations", r.Reservations, s.Prefix, s.ServerID)
	return s
}

// forceRenew checks a subnet's forcerenew: section and applies the
// defaults (2 s doubling, 8 tries).
func (v *validator) forceRenew(path string, r *rawForceRenew) ForceRenew {
	f := ForceRenew{AllowUnauthenticated: r.AllowUnauthenticated, RetransmitCount: 8}
	f.RetransmitStart = v.duration(path+".retransmit-start", r.RetransmitStart, 2*time.Second)
	if f.RetransmitStart <= 0 || f.RetransmitStart > time.Hour {
		v.add(path+".retransmit-start", "%v is outside 1ns..1h", f.RetransmitStart)
	}
	if r.RetransmitCount != nil {
		if f.RetransmitCount = *r.RetransmitCount; f.RetransmitCount < 1 || f.RetransmitCount > 16 {
			v.add(path+".retransmit-count", "%d is outside 1..16", f.RetransmitCount)
		}
	}
	if f.AllowUnauthenticated {
		v.warn(path+".allow-unauthenticated", "FORCERENEW without authentication: anyone on the path can forge one (RFC 3203 requires authentication); dhcpcd ignores unsigned ones by default")
	}
	return f
}

// sharedRelays refuses a relay address listed under two subnets: requests
// through it would be served from whichever subnet was read last.
func (v *validator) sharedRelays(subs []Subnet) {
	seen := map[netip.Addr]int{}
	for i, s := range subs {
		for j, a := range s.Relays {
			if k, ok := seen[a]; ok && k != i {
				v.add(fmt.Sprintf("subnets[%d].relays[%d]", i, j), "%s is already a relay of subnets[%d]", a, k)
				continue
			}
			seen[a] = i
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	v := u32(p.Addr()) | (1<<(32-p.Bits()) - 1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (v *validator) pool(path, s string) (Pool, bool) {
	if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
		p = p.Masked()
		start, end := p.Addr(), lastAddr(p)
		if p.Bits() < 31 { // leave out network and broadcast
			start, end = start.Next(), end.Prev()
		}
		return Pool{Start: start, End: end}, true
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		v.add(path, "%q is not a range A-B or a prefix", s)
		return Pool{}, false
	}
	start, end := v.addr(path, a), v.addr(path, b)
	if !start.IsValid() || !end.IsValid() {
		return Pool{}, false
	}
	if end.Less(start) {
		v.add(path, "range %s ends before it starts", s)
		return Pool{}, false
	}
	return Pool{Start: start, End: end}, true
}

// overlaps refuses overlapping subnets and overlapping pools, sorting once
// so thousands of pools stay cheap.
func (v *validator) overlaps(subs []Subnet) {
	type iv struct {
		lo, hi uint32
		what   string
	}
	var nets, pools []iv
	for i, s := range subs {
		if s.Prefix.IsValid() {
			nets = append(nets, iv{u32(s.Prefix.Addr()), u32(lastAddr(s.Prefix)), fmt.Sprintf("subnets[%d].subnet", i)})
		}
		for j, p := range s.Pools {
			pools = append(pools, iv{u32(p.Start), u32(p.End), fmt.Sprintf("subnets[%d].pools[%d]", i, j)})
		}
	}
	for _, list := range [][]iv{nets, pools} {
		sort.Slice(list, func(i, j int) bool { return list[i].lo < list[j].lo })
		// Compare with the interval reaching furthest so far, so an
		// overlap hidden behind a short interval is still found.
		for i, far := 1, 0; i < len(list); i++ {
			if list[i].lo <= list[far].hi {
				v.add(list[i].what, "overlaps %s", list[far].what)
			}
			if list[i].hi > list[far].hi {
				far = i
			}
		}
	}
}

func (v *validator) reservations(path string, rs []rawReservation, pfx netip.Prefix, serverID netip.Addr) []Reservation {
	var out []Reservation
	byIP := map[netip.Addr]bool{}
	byClient := map[string]bool{}
	for i, r := range rs {
		p := fmt.Sprintf("%s[%d]", path, i)
		var res Reservation
		switch {
		case r.HWAddress != "" && r.ClientID != "":
			v.add(p, "give hw-address or client-id, not both")
			continue
		case r.HWAddress != "":
			hw, err := net.ParseMAC(r.HWAddress)
			if err != nil || len(hw) != 6 {
				v.add(p+".hw-address", "%q is not an Ethernet MAC address", r.HWAddress)
				continue
			}
			res.HWAddr = hw
		case r.ClientID != "":
			cid, err := parseHex(r.ClientID)
			if err != nil || len(cid) < 2 {
				v.add(p+".client-id", "%q is not a client-id of at least 2 hex bytes", r.ClientID)
				continue
			}
			res.ClientID = cid
		default:
			v.add(p, "needs hw-address or client-id")
			continue
		}
		if res.IP = v.addr(p+".ip", r.IP); !res.IP.IsValid() {
			continue
		}
		if pfx.IsValid() && !pfx.Contains(res.IP) {
			v.add(p+".ip", "%s is outside subnet %s", res.IP, pfx)
			continue
		}
		if pfx.IsValid() && pfx.Bits() < 31 && (res.IP == pfx.Addr() || res.IP == lastAddr(pfx)) {
			v.add(p+".ip", "%s is the network or broadcast address of %s", res.IP, pfx)
			continue
		}
		if res.IP == serverID {
			v.add(p+".ip", "%s is the subnet's server-id", res.IP)
			continue
		}
		key := string(res.HWAddr) + "|" + string(res.ClientID)
		if byIP[res.IP] {
			v.add(p+".ip", "%s is reserved twice", res.IP)
		}
		if byClient[key] {
			v.add(p, "this client has two reservations")
		}
		byIP[res.IP], byClient[key] = true, true
		res.Hostname = r.Hostname
		out = append(out, res)
	}
	return out
}
