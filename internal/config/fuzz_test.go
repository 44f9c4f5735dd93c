package config

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// checkParse holds Parse to its promises for any file: the same bytes give
// the same result; a refusal is an *Errors whose every problem names this
// file, a line inside it, a field and a reason, in line order; and an
// accepted configuration satisfies every rule the server relies on without
// checking again (subnets and pools that do not overlap, pools and
// reservations inside their subnet and off its network and broadcast
// addresses, T1 < T2 < lease time, options the server may send).
func checkParse(t *testing.T, b []byte) {
	t.Helper()
	c, err := Parse("f.yaml", b)
	c2, err2 := Parse("f.yaml", bytes.Clone(b))
	if !reflect.DeepEqual(c, c2) || (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
		t.Fatalf("two parses of the same file differ:\n%v %v\n%v %v", c, err, c2, err2)
	}
	if err != nil {
		var e *Errors
		if !errors.As(err, &e) || len(e.Problems) == 0 {
			t.Fatalf("refusal is not a list of problems: %T %v", err, err)
		}
		// YAML breaks lines at CR LF, LF and a lone CR (YAML 1.2 §5.4).
		lines := bytes.Count(bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n")), []byte("\n")) + 1
		for i, p := range e.Problems {
			if p.File != "f.yaml" || p.Line < 1 || p.Line > lines || p.Field == "" || p.Reason == "" {
				t.Fatalf("problem %d is not FILE:LINE: field: reason within a %d-line file: %q", i, lines, p.String())
			}
			if i > 0 && p.Line < e.Problems[i-1].Line {
				t.Fatalf("problems out of line order: %q after %q", p.String(), e.Problems[i-1].String())
			}
		}
		return
	}
	if c == nil || len(c.Subnets) == 0 {
		t.Fatal("accepted a configuration without subnets")
	}
	type span struct{ lo, hi netip.Addr }
	var nets, pools []span
	for i, s := range c.Subnets {
		if !s.Prefix.IsValid() || !s.Prefix.Addr().Is4() || s.Prefix != s.Prefix.Masked() {
			t.Fatalf("subnets[%d]: accepted prefix %s", i, s.Prefix)
		}
		first, last := s.Prefix.Addr(), lastAddr(s.Prefix)
		nets = append(nets, span{first, last})
		usable := func(a netip.Addr) bool {
			return s.Prefix.Contains(a) && (s.Prefix.Bits() >= 31 || (a != first && a != last))
		}
		if s.LeaseTime <= 0 || s.T1 < 0 || s.T2 < 0 || (s.T2 > 0 && s.T2 >= s.LeaseTime) || (s.T1 > 0 && s.T2 > 0 && s.T1 >= s.T2) ||
			(s.T1 > 0 && s.T1 >= s.LeaseTime) || s.LeaseTime.Seconds() > 0xffffffff {
			t.Fatalf("subnets[%d]: accepted lease time %v, T1 %v, T2 %v", i, s.LeaseTime, s.T1, s.T2)
		}
		for j, p := range s.Pools {
			if p.End.Less(p.Start) || !usable(p.Start) || !usable(p.End) {
				t.Fatalf("subnets[%d].pools[%d]: accepted %s-%s in %s", i, j, p.Start, p.End, s.Prefix)
			}
			pools = append(pools, span{p.Start, p.End})
		}
		ips := map[netip.Addr]bool{}
		for j, r := range s.Reservations {
			if !usable(r.IP) || ips[r.IP] || (len(r.HWAddr) == 0) == (len(r.ClientID) == 0) || r.IP == s.ServerID {
				t.Fatalf("subnets[%d].reservations[%d]: accepted %+v", i, j, r)
			}
			ips[r.IP] = true
		}
		codes := map[uint8]bool{}
		for j, o := range s.Options {
			// The server writes these itself; leasequery's own too.
			if slices.Contains([]uint8{0, 255, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 61, 82, 91, 92, 151, 152, 153, 154, 155, 156, 157}, o.Code) {
				t.Fatalf("subnets[%d].options[%d]: accepted option %d, which the server writes itself", i, j, o.Code)
			}
			if codes[o.Code] {
				t.Fatalf("subnets[%d]: option %d rendered twice", i, o.Code)
			}
			codes[o.Code] = true
		}
	}
	for _, list := range [][]span{nets, pools} {
		for i := range list {
			for j := range i {
				if !list[i].hi.Less(list[j].lo) && !list[j].hi.Less(list[i].lo) {
					t.Fatalf("accepted overlapping ranges %v and %v", list[i], list[j])
				}
			}
		}
	}
}
