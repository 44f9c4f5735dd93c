package config

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/xdhcp/xdhcp/failover/hba"
)

// Failover is the failover: section (issue 17): one relationship with a
// partner, xdhcpd or ISC dhcpd 4.4. Name is empty when failover is off.
// Every setting is taken at start: the relationship's connection and state
// outlive a reload.
type Failover struct {
	Name string `yaml:"name" reload:"restart"`
	// Role is "primary" or "secondary".
	Role string `yaml:"role" reload:"restart"`
	// Peer is where the partner listens; Listen where this server does
	// (port 647 when not given).
	Peer   netip.AddrPort `yaml:"peer" reload:"restart"`
	Listen netip.AddrPort `yaml:"listen" reload:"restart"`
	// MCLT is the maximum client lead time; the primary's is the pair's.
	MCLT time.Duration `yaml:"mclt" reload:"restart"`
	// HBA is the hash bucket assignment (from split or hba; primary
	// only): a set bit is the primary's bucket, as in dhcpd.
	HBA                hba.Assignment `yaml:"hba" reload:"restart"`
	MaxResponseDelay   time.Duration  `yaml:"max-response-delay" reload:"restart"`
	MaxUnackedUpdates  int            `yaml:"max-unacked-updates" reload:"restart"`
	LoadBalanceMaxSecs int            `yaml:"load-balance-max-seconds" reload:"restart"`
	AutoPartnerDown    time.Duration  `yaml:"auto-partner-down" reload:"restart"`
	MaxLeaseMisbalance int            `yaml:"max-lease-misbalance" reload:"restart"`
	MaxLeaseOwnership  int            `yaml:"max-lease-ownership" reload:"restart"`
	MinBalance         time.Duration  `yaml:"min-balance" reload:"restart"`
	MaxBalance         time.Duration  `yaml:"max-balance" reload:"restart"`
	MaxSkew            time.Duration  `yaml:"max-skew" reload:"restart"`
	// TLS is mutual TLS with an xdhcpd partner; nil is plain TCP (the
	// only choice with ISC dhcpd).
	TLS *FailoverTLS `yaml:"tls" reload:"restart"`
}

// FailoverTLS is failover.tls: this server's certificate and key, the CA
// the partner's certificate must chain to, and the name it must carry
// (the peer's address, as an IP SAN, when PeerName is empty). The files
// are read again at every connection.
type FailoverTLS struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	CA       string `yaml:"ca"`
	PeerName string `yaml:"peer-name"`
}

// Enabled reports whether a failover relationship is configured.
func (f *Failover) Enabled() bool { return f.Name != "" }

type rawFailover struct {
	Name               string       `yaml:"name"`
	Role               string       `yaml:"role"`
	Peer               string       `yaml:"peer"`
	Listen             string       `yaml:"listen"`
	MCLT               string       `yaml:"mclt"`
	Split              *int         `yaml:"split"`
	HBA                string       `yaml:"hba"`
	MaxResponseDelay   string       `yaml:"max-response-delay"`
	MaxUnackedUpdates  *int         `yaml:"max-unacked-updates"`
	LoadBalanceMaxSecs *int         `yaml:"load-balance-max-seconds"`
	AutoPartnerDown    string       `yaml:"auto-partner-down"`
	MaxLeaseMisbalance *int         `yaml:"max-lease-misbalance"`
	MaxLeaseOwnership  *int         `yaml:"max-lease-ownership"`
	MinBalance         string       `yaml:"min-balance"`
	MaxBalance         string       `yaml:"max-balance"`
	MaxSkew            string       `yaml:"max-skew"`
	TLS                *FailoverTLS `yaml:"tls"`
}

// failoverPort is the draft's port, used when an address has none.
const failoverPort = 647

func (v *validator) addrPort(path, s string) netip.AddrPort {
	if s == "" {
		v.add(path, "required (ADDR or ADDR:PORT)")
		return netip.AddrPort{}
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return netip.AddrPortFrom(a, failoverPort)
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
		v.add(path, "%q is not an IPv4 ADDR or ADDR:PORT", s)
		return netip.AddrPort{}
	}
	return ap
}

// failover checks the failover: section; dhcpd's defaults except where
// they are its known pains (load balancing off, a 90 s reconnect).
func (v *validator) failover(r *rawFailover) Failover {
	var f Failover
	if r == nil {
		return f
	}
	const p = "failover"
	if f.Name = r.Name; f.Name == "" {
		v.add(p+".name", "required: the relationship's name, the same on both servers (dhcpd's failover peer \"NAME\")")
	}
	switch f.Role = r.Role; f.Role {
	case "primary", "secondary":
	default:
		v.add(p+".role", "%q is not primary or secondary", r.Role)
	}
	f.Peer = v.addrPort(p+".peer", r.Peer)
	f.Listen = v.addrPort(p+".listen", r.Listen)
	if f.Peer.IsValid() && f.Peer == f.Listen {
		v.add(p+".peer", "%s is this server's own listen address", f.Peer)
	}
	primary := f.Role == "primary"
	f.MCLT = v.duration(p+".mclt", r.MCLT, time.Hour)
	switch {
	case !primary && r.MCLT != "":
		v.warn(p+".mclt", "ignored on the secondary: it takes the primary's MCLT when they connect")
	case f.MCLT < 10*time.Second || f.MCLT > 24*time.Hour:
		v.add(p+".mclt", "%v is outside 10s..24h (dhcpd suggests 1h)", f.MCLT)
	}
	switch {
	case r.Split != nil && r.HBA != "":
		v.add(p+".split", "give split or hba, not both")
	case !primary && (r.Split != nil || r.HBA != ""):
		v.warn(p+".split", "ignored on the secondary: it takes the primary's hash bucket assignment when they connect")
	case r.HBA != "":
		a, err := hba.Parse(r.HBA)
		if err != nil {
			v.add(p+".hba", "%v", err)
		}
		f.HBA = a
	case r.Split != nil:
		if *r.Split < 0 || *r.Split > 256 {
			v.add(p+".split", "%d is outside 0..256", *r.Split)
		}
		f.HBA = hba.Split(*r.Split)
	default:
		f.HBA = hba.Split(128)
	}
	f.MaxResponseDelay = v.duration(p+".max-response-delay", r.MaxResponseDelay, 20*time.Second)
	if f.MaxResponseDelay < 3*time.Second {
		v.add(p+".max-response-delay", "%v is too short (minimum 3s): keepalives go every third of it", f.MaxResponseDelay)
	}
	f.MaxUnackedUpdates = intOr(r.MaxUnackedUpdates, 100)
	if f.MaxUnackedUpdates < 1 || f.MaxUnackedUpdates > 65535 {
		v.add(p+".max-unacked-updates", "%d is outside 1..65535", f.MaxUnackedUpdates)
	}
	f.LoadBalanceMaxSecs = intOr(r.LoadBalanceMaxSecs, 3)
	if f.LoadBalanceMaxSecs < 0 || f.LoadBalanceMaxSecs > 65535 {
		v.add(p+".load-balance-max-seconds", "%d is outside 0..65535 (0 turns load balancing off)", f.LoadBalanceMaxSecs)
	}
	f.AutoPartnerDown = v.duration(p+".auto-partner-down", r.AutoPartnerDown, 0)
	if f.Name != "" && f.AutoPartnerDown == 0 {
		v.warn(p+".auto-partner-down", "off: if the partner dies, its clients are served only after `xdhcpctl failover partner-down` (set it to the time after which a silent partner is taken as down)")
	}
	f.MaxLeaseMisbalance = intOr(r.MaxLeaseMisbalance, 15)
	f.MaxLeaseOwnership = intOr(r.MaxLeaseOwnership, 10)
	for _, x := range []struct {
		k string
		n int
	}{{"max-lease-misbalance", f.MaxLeaseMisbalance}, {"max-lease-ownership", f.MaxLeaseOwnership}} {
		if x.n < 0 || x.n > 100 {
			v.add(p+"."+x.k, "%d is outside 0..100 (percent)", x.n)
		}
	}
	if r.MaxLeaseOwnership != nil {
		// dhcpd lets an active lease change owner at a renewal when one
		// server owns more than its share; xdhcpd balances FREE and
		// BACKUP only (max-lease-misbalance).
		v.warn(p+".max-lease-ownership", "has no effect in xdhcpd (accepted as dhcpd's knob): active leases do not change owner at renewal; pool balance follows max-lease-misbalance")
	}
	f.MinBalance = v.duration(p+".min-balance", r.MinBalance, time.Minute)
	f.MaxBalance = v.duration(p+".max-balance", r.MaxBalance, time.Hour)
	if f.MaxBalance < f.MinBalance {
		v.add(p+".max-balance", "%v is shorter than min-balance %v", f.MaxBalance, f.MinBalance)
	} else if r.MaxBalance != "" {
		v.warn(p+".max-balance", "bounds nothing in xdhcpd: the primary checks pool balance every min-balance (%v), which is never longer", f.MinBalance)
	}
	f.MaxSkew = v.duration(p+".max-skew", r.MaxSkew, time.Minute)
	if f.MaxSkew < time.Second {
		v.add(p+".max-skew", "%v is too short (minimum 1s)", f.MaxSkew)
	}
	f.TLS = v.failoverTLS(p+".tls", r.TLS)
	return f
}

// failoverTLS checks failover.tls. Whether the files hold what they
// should is checked by check-config and at start (failover.TLS.Check).
func (v *validator) failoverTLS(p string, t *FailoverTLS) *FailoverTLS {
	if t == nil {
		v.warn(p, "not set: the failover connection is plain TCP, unauthenticated; that is the only choice with an ISC dhcpd partner, on a link you trust. Between two xdhcpd set cert, key and ca")
		return nil
	}
	for _, f := range []struct{ k, v string }{{"cert", t.Cert}, {"key", t.Key}, {"ca", t.CA}} {
		if f.v == "" {
			v.add(p+"."+f.k, "required with tls (a PEM file)")
		}
	}
	c := *t
	return &c
}

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// String names the relationship for logs.
func (f *Failover) String() string {
	return fmt.Sprintf("%s %q listen %s peer %s", f.Role, f.Name, f.Listen, f.Peer)
}
