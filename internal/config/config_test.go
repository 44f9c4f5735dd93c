package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const base = `server:
  interfaces: [veth-srv]
  state-dir: /var/lib/xdhcp
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.0.199]
    lease-time: 1h
`

func TestExampleLoads(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "examples", "xdhcpd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Subnets) != 2 || c.Subnets[1].PoolSize() != 65279 || c.Subnets[0].Reservations[0].IP != netip.MustParseAddr("10.77.0.42") {
		t.Fatalf("example: %+v", c.Subnets)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("x.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Subnets[0]
	if s.T1 != 30*time.Minute || s.T2 != 52*time.Minute+30*time.Second {
		t.Fatalf("T1/T2 %v %v", s.T1, s.T2)
	}
	if !c.Server.Authoritative || c.Server.ControlSocket != "/run/xdhcp/xdhcpd.sock" || c.Server.MetricsListen != "127.0.0.1:9467" ||
		c.Server.OfferHold != 10*time.Second || c.Fastpath.Mode != "auto" || c.Fastpath.MinGrant != time.Minute || c.Fastpath.Horizon != 4*time.Hour {
		t.Fatalf("defaults: %+v %+v", c.Server, c.Fastpath)
	}
	if c.Server.OfferPoolShare != 0.5 || c.Server.OfferPerCircuit != 8 {
		t.Fatalf("offer bounds by default: share %v, per circuit %d", c.Server.OfferPoolShare, c.Server.OfferPerCircuit)
	}
	if len(s.Options) != 1 || s.Options[0].Code != 1 || !bytes.Equal(s.Options[0].Data, []byte{255, 255, 255, 0}) {
		t.Fatalf("subnet mask: %+v", s.Options)
	}
}

func TestOptionRenderingOrderAndEncoding(t *testing.T) {
	c, err := Parse("x.yaml", []byte(base+`    options:
      custom:
        - {code: 66, type: string, value: tftp}
        - {code: 150, type: ips, value: [10.0.0.1, 10.0.0.2]}
        - {code: 23, type: uint8, value: 64}
        - {code: 24, type: uint32, value: 600}
        - {code: 19, type: bool, value: true}
        - {code: 43, type: hex, value: "01:02:ff"}
      classless-static-routes:
        - {destination: 10.0.0.0/8, router: 10.77.0.1}
        - {destination: 0.0.0.0/0, router: 10.77.0.2}
        - {destination: 10.17.0.0/16, router: 10.77.0.1}
      mtu: 1400
      ntp-servers: [10.77.0.9]
      domain-search: [example.net, a.example.net]
      domain-name: example.net
      dns-servers: [10.77.0.1, 10.77.0.2]
      routers: [10.77.0.1]
`))
	if err != nil {
		t.Fatal(err)
	}
	var codes []uint8
	got := map[uint8][]byte{}
	for _, o := range c.Subnets[0].Options {
		codes = append(codes, o.Code)
		got[o.Code] = o.Data
	}
	// Named options in the contract order whatever the file order, then custom in file order.
	if want := []uint8{1, 3, 6, 15, 119, 42, 26, 121, 66, 150, 23, 24, 19, 43}; !bytes.Equal(codes, want) {
		t.Fatalf("order %v, want %v", codes, want)
	}
	for code, want := range map[uint8][]byte{
		6:   {10, 77, 0, 1, 10, 77, 0, 2},
		119: append([]byte("\x07example\x03net\x00"), []byte("\x01a\x07example\x03net\x00")...),
		26:  {0x05, 0x78},
		// RFC 3442 §3: 10/8 → 8 10, default → 0, 10.17/16 → 16 10 17.
		121: {8, 10, 10, 77, 0, 1, 0, 10, 77, 0, 2, 16, 10, 17, 10, 77, 0, 1},
		150: {10, 0, 0, 1, 10, 0, 0, 2},
		23:  {64},
		24:  {0, 0, 2, 88},
		19:  {1},
		43:  {1, 2, 255},
	} {
		if !bytes.Equal(got[code], want) {
			t.Errorf("option %d = %v, want %v", code, got[code], want)
		}
	}
}

func TestProblems(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // each must appear in some "FILE:LINE: field: reason" line
	}{
		{"unknown key", strings.Replace(base, "  state-dir:", "  statedir: x\n  state-dir:", 1), []string{"x.yaml:3: server.statedir: unknown key (did you mean \"state-dir\"?)"}},
		{"unknown nested key", base + "    lease-tme: 1h\n", []string{"x.yaml:8: subnets[0].lease-tme: unknown key"}},
		{"wrong type", strings.Replace(base, "interfaces: [veth-srv]", "interfaces: {a: b}", 1), []string{"x.yaml:2:"}},
		{"missing state-dir", strings.Replace(base, "  state-dir: /var/lib/xdhcp\n", "", 1), []string{"server.state-dir: required"}},
		{"bad duration", strings.Replace(base, "lease-time: 1h", "lease-time: 1 hour", 1), []string{"x.yaml:7: subnets[0].lease-time: \"1 hour\" is not a duration"}},
		{"t1 >= t2", base + "    t1: 50m\n    t2: 40m\n", []string{"subnets[0].t1: T1 (50m0s) must be positive and shorter than T2"}},
		{"t2 >= lease", base + "    t2: 2h\n", []string{"subnets[0].t2: T2 (2h0m0s) must be shorter than the lease time"}},
		{"bad prefix", strings.Replace(base, "10.77.0.0/24", "10.77.0.0/33", 1), []string{"x.yaml:5: subnets[0].subnet:"}},
		{"host bits", strings.Replace(base, "10.77.0.0/24", "10.77.0.1/24", 1), []string{"did you mean 10.77.0.0/24"}},
		{"pool reversed", strings.Replace(base, "10.77.0.100-10.77.0.199", "10.77.0.199-10.77.0.100", 1), []string{"x.yaml:6: subnets[0].pools[0]: range 10.77.0.199-10.77.0.100 ends before it starts"}},
		{"pool outside", strings.Replace(base, "10.77.0.100-10.77.0.199", "10.77.0.100-10.77.1.5", 1), []string{"subnets[0].pools[0]: 10.77.0.100-10.77.1.5 is outside subnet 10.77.0.0/24"}},
		{"pool with broadcast", strings.Replace(base, "10.77.0.100-10.77.0.199", "10.77.0.100-10.77.0.255", 1), []string{"network or broadcast"}},
		{"pools overlap", strings.Replace(base, "[10.77.0.100-10.77.0.199]", "[10.77.0.100-10.77.0.199, 10.77.0.150-10.77.0.160]", 1), []string{"overlaps subnets[0].pools[0]"}},
		{"hidden pool overlap", strings.Replace(base, "[10.77.0.100-10.77.0.199]", "[10.77.0.100-10.77.0.199, 10.77.0.101-10.77.0.102, 10.77.0.150-10.77.0.160]", 1), []string{"subnets[0].pools[2]: overlaps subnets[0].pools[0]"}},
		{"subnets overlap", base + "  - subnet: 10.77.0.0/16\n", []string{"x.yaml:8: subnets[1].subnet: overlaps subnets[0].subnet"}},
		{"reservation outside", base + "    reservations:\n      - {hw-address: 02:00:00:00:00:01, ip: 10.9.9.9}\n", []string{"x.yaml:9: subnets[0].reservations[0].ip: 10.9.9.9 is outside subnet"}},
		{"reservation duplicate ip", base + "    reservations:\n      - {hw-address: 02:00:00:00:00:01, ip: 10.77.0.5}\n      - {hw-address: 02:00:00:00:00:02, ip: 10.77.0.5}\n", []string{"10.77.0.5 is reserved twice"}},
		{"reservation both ids", base + "    reservations:\n      - {hw-address: 02:00:00:00:00:01, client-id: '01:02', ip: 10.77.0.5}\n", []string{"not both"}},
		{"bad mac", base + "    reservations:\n      - {hw-address: 02:00:zz, ip: 10.77.0.5}\n", []string{"reservations[0].hw-address: \"02:00:zz\" is not an Ethernet MAC address"}},
		{"managed custom option", base + "    options:\n      custom:\n        - {code: 51, type: uint32, value: 5}\n", []string{"subnets[0].options.custom[0].code: option 51 (lease time (use lease-time)) is set by the server"}},
		{"leasequery's own option", base + "    options:\n      custom:\n        - {code: 92, type: ip, value: 10.77.0.9}\n", []string{"subnets[0].options.custom[0].code: option 92 (associated IP addresses (leasequery)) is set by the server"}},
		{"custom bad value", base + "    options:\n      custom:\n        - {code: 23, type: uint8, value: 300}\n", []string{"\"300\" is not a uint8"}},
		{"mtu range", base + "    options:\n      mtu: 20\n", []string{"options.mtu: 20 is outside 68..65535"}},
		{"fastpath mode", base + "fastpath:\n  mode: turbo\n", []string{"x.yaml:9: fastpath.mode: \"turbo\" is not one of auto, native, generic"}},
		{"min-grant too long", base + "fastpath:\n  enabled: true\n  min-grant: 2h\n", []string{"fastpath.min-grant: 2h0m0s is longer than the shortest lease time"}},
		{"requesters", base + "leasequery:\n  enabled: true\n  requesters: [banana]\n", []string{"leasequery.requesters[0]: \"banana\" is not an IPv4 prefix"}},
		{"metrics listen", strings.Replace(base, "  state-dir:", "  metrics-listen: nowhere\n  state-dir:", 1), []string{"server.metrics-listen: \"nowhere\" is not host:port"}},
		{"duplicate interface", strings.Replace(base, "[veth-srv]", "[veth-srv, veth-srv]", 1), []string{"server.interfaces[1]: interface \"veth-srv\" listed twice"}},
		{"reservation on broadcast", base + "    reservations:\n      - {hw-address: 02:00:00:00:00:01, ip: 10.77.0.255}\n", []string{"reservations[0].ip: 10.77.0.255 is the network or broadcast address of 10.77.0.0/24"}},
		{"reservation on server-id", base + "    server-id: 10.77.0.1\n    reservations:\n      - {hw-address: 02:00:00:00:00:01, ip: 10.77.0.1}\n", []string{"reservations[0].ip: 10.77.0.1 is the subnet's server-id"}},
		{"relay in two subnets", base + "    relays: [10.78.0.1]\n  - subnet: 10.78.0.0/16\n    relays: [10.78.0.1]\n", []string{"subnets[1].relays[0]: 10.78.0.1 is already a relay of subnets[0]"}},
		{"offer-hold zero", strings.Replace(base, "  state-dir:", "  offer-hold: 0s\n  state-dir:", 1), []string{"x.yaml:3: server.offer-hold: 0s is too short"}},
		{"decline-hold zero", strings.Replace(base, "  state-dir:", "  decline-hold: 0s\n  state-dir:", 1), []string{"server.decline-hold: 0s is too short"}},
		{"offer-pool-share above 1", strings.Replace(base, "  state-dir:", "  offer-pool-share: 1.5\n  state-dir:", 1), []string{"x.yaml:3: server.offer-pool-share: 1.5 is outside 0..1"}},
		{"offer-per-circuit negative", strings.Replace(base, "  state-dir:", "  offer-per-circuit: -1\n  state-dir:", 1), []string{"x.yaml:3: server.offer-per-circuit: -1 is outside 0..65535"}},
		{"domain-name list", base + "    options:\n      domain-name: example.net example.org\n", []string{"options.domain-name: \"example.net example.org\" is not one domain name"}},
		{"domain-name empty label", base + "    options:\n      domain-name: example..net\n", []string{"options.domain-name: \"example..net\" has an empty or over-long label"}},
		{"empty", "", []string{"empty configuration"}},
		{"yaml syntax", "server: [\n", []string{"x.yaml:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.yaml))
			var ce *Errors
			if !errors.As(err, &ce) {
				t.Fatalf("want *Errors, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%s", w, err)
				}
			}
		})
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	_, err := Parse("x.yaml", []byte(`server:
  interfaces: []
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.1.0-10.77.1.5]
    lease-time: soon
`))
	if err == nil || len(err.(*Errors).Problems) < 4 {
		t.Fatalf("want at least 4 problems, got %v", err)
	}
}

func TestUnknownKeyDoesNotHideOtherProblems(t *testing.T) {
	_, err := Parse("x.yaml", []byte(base+"    lease-tim: 1h\n    t1: 2h\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	want := "x.yaml:8: subnets[0].lease-tim: unknown key (did you mean \"lease-time\"?)\nx.yaml:9: subnets[0].t1: T1 (2h0m0s) must be positive and shorter than T2"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("want both problems, in line order:\n%s\ngot:\n%s", want, err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml:0: (file):") {
		t.Fatalf("got %v", err)
	}
}

// FuzzParse holds Parse to its promises for any file (checkParse).
func FuzzParse(f *testing.F) {
	ex, _ := os.ReadFile(filepath.Join("..", "..", "examples", "xdhcpd.yaml"))
	f.Add(ex)
	f.Add([]byte(base))
	f.Fuzz(func(t *testing.T, b []byte) { checkParse(t, b) })
}

// TestSyntaxErrorLines: a YAML syntax error is reported at the line it is
// on, for each broken file under testdata/syntax (each says on its first
// line, "# want: line N", where the fault is). yaml.v3's own message names
// the line where the enclosing block began, off by one.
func TestSyntaxErrorLines(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "syntax", "*.yaml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("broken files: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var want int
		if _, err := fmt.Sscanf(string(b), "# want: line %d", &want); err != nil {
			t.Fatalf("%s: no \"# want: line N\" header: %v", f, err)
		}
		_, err = Load(f)
		var e *Errors
		if !errors.As(err, &e) || len(e.Problems) != 1 {
			t.Fatalf("%s: %v, want one syntax problem", f, err)
		}
		p := e.Problems[0]
		if p.Line != want || p.File != f || p.Field != "(file)" || !strings.HasPrefix(p.Reason, "YAML syntax: ") || strings.Contains(p.Reason, "line ") {
			t.Errorf("%s: %q, want line %d, and no other line named in the reason", f, p.String(), want)
		}
	}
}
