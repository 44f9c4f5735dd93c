package config

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Named option codes, in the order they are rendered (after option 1).
// This order is a contract with the fast path, which copies the bytes.
const (
	optSubnetMask   = 1
	optRouters      = 3
	optDNS          = 6
	optDomainName   = 15
	optDomainSearch = 119
	optNTP          = 42
	optMTU          = 26
	optBroadcast    = 28
	optRoutes       = 121
)

// managed are codes the server sets itself; a custom option may not use
// them. Leasequery's own options (RFC 4388, RFC 6926) are among them: a
// subnet's block also answers a leasequery's parameter request list, where
// they would repeat or contradict what the server reports. Option 60 is
// not: it is the client's vendor class, but a PXE server sends its own
// ("PXEClient"), so it stays configurable, and leasequery replies leave
// the configured one out in favour of the client's.
var managed = map[int]string{
	0: "pad", 1: "subnet mask (derived from the subnet)", 50: "requested address", 51: "lease time (use lease-time)",
	52: "overload", 53: "message type", 54: "server identifier (use server-id)", 55: "parameter request list",
	56: "message", 57: "maximum message size", 58: "T1 (use t1)", 59: "T2 (use t2)", 61: "client identifier",
	82: "relay agent information", 91: "client last transaction time (leasequery)", 92: "associated IP addresses (leasequery)",
	151: "status code (bulk leasequery)", 152: "base time (bulk leasequery)", 153: "start time of state (bulk leasequery)",
	154: "query start time (bulk leasequery)", 155: "query end time (bulk leasequery)", 156: "DHCP state (bulk leasequery)",
	157: "data source (bulk leasequery)", 255: "end",
}

func (v *validator) options(path string, o *rawOptions, pfx netip.Prefix) []Option {
	var out []Option
	addOpt := func(code uint8, b []byte) {
		if len(b) > 0 {
			out = append(out, Option{code, b})
		}
	}
	if pfx.IsValid() {
		m := uint32(0xffffffff) << (32 - pfx.Bits())
		addOpt(optSubnetMask, binary.BigEndian.AppendUint32(nil, m))
	}
	addOpt(optRouters, v.addrList(path+".routers", o.Routers))
	addOpt(optDNS, v.addrList(path+".dns-servers", o.DNSServers))
	if o.DomainName != "" {
		if _, err := encodeName(o.DomainName); err != nil {
			v.add(path+".domain-name", "%v", err)
		} else if strings.ContainsAny(o.DomainName, " \t,;") {
			v.add(path+".domain-name", "%q is not one domain name (a list of domains goes in domain-search)", o.DomainName)
		} else {
			addOpt(optDomainName, []byte(o.DomainName))
		}
	}
	if len(o.DomainSearch) > 0 {
		var b []byte
		for i, d := range o.DomainSearch {
			enc, err := encodeName(d)
			if err != nil {
				v.add(fmt.Sprintf("%s.domain-search[%d]", path, i), "%v", err)
				continue
			}
			b = append(b, enc...)
		}
		addOpt(optDomainSearch, b)
	}
	addOpt(optNTP, v.addrList(path+".ntp-servers", o.NTPServers))
	if o.MTU != nil {
		if *o.MTU < 68 || *o.MTU > 65535 {
			v.add(path+".mtu", "%d is outside 68..65535", *o.MTU)
		} else {
			addOpt(optMTU, binary.BigEndian.AppendUint16(nil, uint16(*o.MTU)))
		}
	}
	if o.Broadcast != "" {
		if a := v.addr(path+".broadcast", o.Broadcast); a.IsValid() {
			addOpt(optBroadcast, a.AsSlice())
		}
	}
	if len(o.ClasslessStaticRoutes) > 0 {
		var b []byte
		for i, r := range o.ClasslessStaticRoutes {
			p := fmt.Sprintf("%s.classless-static-routes[%d]", path, i)
			dst, err := netip.ParsePrefix(r.Destination)
			if err != nil || !dst.Addr().Is4() {
				v.add(p+".destination", "%q is not an IPv4 prefix", r.Destination)
				continue
			}
			gw := v.addr(p+".router", r.Router)
			if !gw.IsValid() {
				continue
			}
			// RFC 3442: width, then only the significant octets.
			dst = dst.Masked()
			a := dst.Addr().As4()
			b = append(b, byte(dst.Bits()))
			b = append(b, a[:(dst.Bits()+7)/8]...)
			b = append(b, gw.AsSlice()...)
		}
		addOpt(optRoutes, b)
	}
	named := map[int]bool{optRouters: len(o.Routers) > 0, optDNS: len(o.DNSServers) > 0, optDomainName: o.DomainName != "",
		optDomainSearch: len(o.DomainSearch) > 0, optNTP: len(o.NTPServers) > 0, optMTU: o.MTU != nil,
		optBroadcast: o.Broadcast != "", optRoutes: len(o.ClasslessStaticRoutes) > 0}
	seen := map[int]bool{}
	for i, c := range o.Custom {
		p := fmt.Sprintf("%s.custom[%d]", path, i)
		switch {
		case c.Code < 1 || c.Code > 254:
			v.add(p+".code", "%d is not an option code (1..254)", c.Code)
			continue
		case managed[c.Code] != "":
			v.add(p+".code", "option %d (%s) is set by the server", c.Code, managed[c.Code])
			continue
		case named[c.Code]:
			v.add(p+".code", "option %d is already set by a named option", c.Code)
			continue
		case seen[c.Code]:
			v.add(p+".code", "option %d given twice", c.Code)
			continue
		}
		seen[c.Code] = true
		b, err := encodeTyped(c.Type, &c.Value)
		if err != nil {
			v.add(p+".value", "%v", err)
			continue
		}
		out = append(out, Option{uint8(c.Code), b})
	}
	return out
}

func (v *validator) addrList(path string, ss []string) []byte {
	var b []byte
	for _, a := range v.addrs(path, ss) {
		b = append(b, a.AsSlice()...)
	}
	return b
}

// encodeName writes a domain name as RFC 1035 labels (RFC 3397 allows
// compression; plain labels are always valid).
func encodeName(d string) ([]byte, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return nil, fmt.Errorf("%q is not a domain name", d)
	}
	var b []byte
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return nil, fmt.Errorf("%q has an empty or over-long label", d)
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0), nil
}

// encodeTyped encodes a custom option's value.
func encodeTyped(typ string, n *yaml.Node) ([]byte, error) {
	scalars := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		if typ != "ips" {
			return nil, fmt.Errorf("type %s takes a single value, not a list", typ)
		}
		scalars = n.Content
	}
	if n.Kind == 0 {
		return nil, fmt.Errorf("missing value")
	}
	var b []byte
	for _, s := range scalars {
		if s.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("value must be a scalar")
		}
		val := s.Value
		switch typ {
		case "ip", "ips":
			a, err := netip.ParseAddr(val)
			if err != nil || !a.Is4() {
				return nil, fmt.Errorf("%q is not an IPv4 address", val)
			}
			b = append(b, a.AsSlice()...)
		case "uint8", "uint16", "uint32":
			bits, _ := strconv.Atoi(strings.TrimPrefix(typ, "uint"))
			x, err := strconv.ParseUint(val, 0, bits)
			if err != nil {
				return nil, fmt.Errorf("%q is not a %s", val, typ)
			}
			b = binary.BigEndian.AppendUint64(nil, x)[8-bits/8:]
		case "int32":
			x, err := strconv.ParseInt(val, 0, 32)
			if err != nil {
				return nil, fmt.Errorf("%q is not an int32", val)
			}
			b = binary.BigEndian.AppendUint32(nil, uint32(int32(x)))
		case "bool":
			x, err := strconv.ParseBool(val)
			if err != nil {
				return nil, fmt.Errorf("%q is not a bool", val)
			}
			b = []byte{0}
			if x {
				b[0] = 1
			}
		case "string":
			if val == "" {
				return nil, fmt.Errorf("empty string")
			}
			b = []byte(val)
		case "hex":
			x, err := parseHex(val)
			if err != nil {
				return nil, fmt.Errorf("%q: %v", val, err)
			}
			b = x
		default:
			return nil, fmt.Errorf("unknown type %q (ip, ips, uint8, uint16, uint32, int32, bool, string, hex)", typ)
		}
	}
	if typ == "ips" && len(b) == 0 {
		return nil, fmt.Errorf("empty address list")
	}
	return b, nil
}
