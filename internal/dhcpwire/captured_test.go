package dhcpwire

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// capturedDir holds the FuzzParse seeds; those named in capturedPackets
// are real packets captured with tcpdump (testdata/README.md says how).
const capturedDir = "testdata/fuzz/FuzzParse"

// syntheticSeeds are FuzzParse seeds that were built, not captured.
var syntheticSeeds = []string{"overload_options_in_file_field"}

// capture says what a captured packet is, from what its capture was of:
// which program sent it and, for a client's REQUEST, in which RFC 2131
// §4.3.2 state. The test holds the parsed packet to it, so a capture that
// is not what its name says, or a parser that misreads it, fails.
type capture struct {
	file    string
	from    string // the program that sent it
	msgType uint8
	// state of a client's REQUEST (RFC 2131 §4.3.2 table 4):
	// "selecting" (ciaddr 0, 50 and 54 present), "renewing"/"rebinding"
	// (ciaddr set, neither 50 nor 54), "" for other messages.
	state string
	// relayed: forwarded by dhcrelay, so giaddr is set, hops is at least
	// 1 and option 82 (added by dhcrelay -a) is present (RFC 3046 §2.1).
	relayed bool
}

// capturedPackets lists every captured seed in capturedDir (the test fails
// on a seed in neither list, so a new capture is checked too).
var capturedPackets = []capture{
	{"udhcpc_discover", "udhcpc", Discover, "", false},
	{"udhcpc_request_selecting", "udhcpc", Request, "selecting", false},
	{"udhcpc_request_renewing", "udhcpc", Request, "renewing", false},
	{"udhcpc_request_rebinding", "udhcpc", Request, "rebinding", false},
	{"udhcpc_release", "udhcpc", Release, "", false},
	// Unicast by udhcpc to the server past the relay (RFC 2131 §4.4.5:
	// renewals go straight to the server), so not relayed.
	{"udhcpc_relayed_request_renewing_past_relay", "udhcpc", Request, "renewing", false},
	{"udhcpc_relayed_release_past_relay", "udhcpc", Release, "", false},
	{"dhclient_discover", "dhclient", Discover, "", false},
	{"dhclient_request_selecting", "dhclient", Request, "selecting", false},
	{"dhclient_request_renewing", "dhclient", Request, "renewing", false},
	// Broadcast at T2 with unicast to the server blocked at T1.
	{"dhclient_request_rebinding", "dhclient", Request, "rebinding", false},
	{"dhclient_release", "dhclient", Release, "", false},
	{"dhcpcd_discover", "dhcpcd", Discover, "", false},
	{"dhcpcd_request_selecting", "dhcpcd", Request, "selecting", false},
	{"dhcpcd_request_renewing", "dhcpcd", Request, "renewing", false},
	{"dhcpcd_request_rebinding", "dhcpcd", Request, "rebinding", false},
	{"dhcpcd_release", "dhcpcd", Release, "", false},
	// dhcpcd's ARP probe (RFC 5227) found the offered address in use.
	{"dhcpcd_decline", "dhcpcd", Decline, "", false},
	{"dhcrelay_udhcpc_discover_opt82", "dhcrelay", Discover, "", true},
	{"dhcrelay_udhcpc_request_selecting_opt82", "dhcrelay", Request, "selecting", true},
	// dhcrelay's relayed copy of udhcpc's renewal (the client also
	// broadcast it on the relay's link).
	{"dhcrelay_udhcpc_request_renewing_copy_opt82", "dhcrelay", Request, "renewing", true},
	{"dhcrelay_dhcpcd_inform_opt82", "dhcrelay", Inform, "", true},
	{"xdhcpctl_leasequery_by_ip", "xdhcpctl", LeaseQuery, "", false},
	{"xdhcpctl_leasequery_by_mac", "xdhcpctl", LeaseQuery, "", false},
	{"xdhcpctl_leasequery_from_unlisted_requester", "xdhcpctl", LeaseQuery, "", false},
	{"xdhcpd_offer_udhcpc", "xdhcpd", Offer, "", false},
	{"xdhcpd_ack_dhcpcd", "xdhcpd", Ack, "", false},
	{"xdhcpd_ack_inform", "xdhcpd", Ack, "", false},
	{"xdhcpd_ack_relayed_opt82", "xdhcpd", Ack, "", false},
	{"xdhcpd_xdp_ack_udhcpc_renewal", "xdhcpd (XDP)", Ack, "", false},
	{"xdhcpd_leaseactive_opt82_opt60", "xdhcpd", LeaseActive, "", false},
	{"xdhcpd_leaseunassigned", "xdhcpd", LeaseUnassigned, "", false},
	{"xdhcpd_leaseunknown", "xdhcpd", LeaseUnknown, "", false},
}

// readFuzzSeed decodes a corpus file of one []byte argument in the
// `go test fuzz v1` format that FuzzParse's seeds use.
func readFuzzSeed(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		return nil, fmt.Errorf("%s: not a go test fuzz v1 file of one value (%d lines)", path, len(lines))
	}
	q, ok := strings.CutPrefix(lines[1], "[]byte(")
	if q, ok = strings.CutSuffix(q, ")"); !ok {
		return nil, fmt.Errorf("%s: the value is not a []byte(...)", path)
	}
	s, err := strconv.Unquote(q)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return []byte(s), nil
}

// TestCapturedPacketsAreListed: every seed is either a capture described
// in capturedPackets or a known synthetic one, and every capture listed
// is there.
func TestCapturedPacketsAreListed(t *testing.T) {
	ents, err := os.ReadDir(capturedDir)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, c := range capturedPackets {
		listed[c.file] = true
	}
	for _, e := range ents {
		if !listed[e.Name()] && !slices.Contains(syntheticSeeds, e.Name()) {
			t.Errorf("%s/%s is in neither capturedPackets nor syntheticSeeds", capturedDir, e.Name())
		}
		delete(listed, e.Name())
	}
	for f := range listed {
		t.Errorf("capturedPackets lists %s, which %s does not have", f, capturedDir)
	}
}

// TestCapturedPackets reads every captured packet with Parse and with the
// test oracle, insomniacslk/dhcp's dhcpv4.FromBytes: both must accept it
// and agree on the header (op, xid, ciaddr, yiaddr, giaddr, chaddr, ...),
// the message type and every option's bytes (checkParse). The packet must
// be what its capture was of (capture), pass the checks the server applies
// (Validate, and ValidateClientHeader for a client's message), and
// re-encoding it with this package's writer (AppendHeader, AppendOption in
// the order read, END) must give back its bytes, up to the zero padding
// after END.
func TestCapturedPackets(t *testing.T) {
	for _, c := range capturedPackets {
		t.Run(c.file, func(t *testing.T) {
			b, err := readFuzzSeed(filepath.Join(capturedDir, c.file))
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			theirs, err := dhcpv4.FromBytes(b)
			if err != nil {
				t.Fatalf("dhcpv4.FromBytes: %v", err)
			}
			checkParse(t, b)
			if got := uint8(theirs.MessageType()); p.MessageType() != c.msgType || got != c.msgType {
				t.Fatalf("message type: Parse %d, insomniacslk %d, captured a %s", p.MessageType(), got, MessageName(c.msgType))
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("Validate refuses a real %s's packet: %v", c.from, err)
			}
			checkCapture(t, c, p)
			checkReencode(t, p, b)
		})
	}
}

// checkCapture holds p to what c says it is.
func checkCapture(t *testing.T, c capture, p *Packet) {
	t.Helper()
	zero := netip.AddrFrom4([4]byte{})
	client := c.from != "xdhcpd" && c.from != "xdhcpd (XDP)"
	switch {
	case client && p.Op != BootRequest:
		t.Fatalf("op %d from %s, want BOOTREQUEST", p.Op, c.from)
	case !client && p.Op != BootReply:
		t.Fatalf("op %d from %s, want BOOTREPLY", p.Op, c.from)
	}
	if client && c.from != "xdhcpctl" {
		if err := p.ValidateClientHeader(); err != nil {
			t.Fatalf("a real %s's header: %v", c.from, err)
		}
		if p.HType != HTypeEthernet || len(p.CHAddr()) != 6 || bytes.Equal(p.CHAddr(), make([]byte, 6)) {
			t.Fatalf("chaddr % x (htype %d): want a 6-byte Ethernet address", p.CHAddr(), p.HType)
		}
	}
	switch c.state {
	case "selecting":
		if p.CIAddr != zero || !p.Has(OptRequestedIP) || !p.Has(OptServerID) {
			t.Fatalf("SELECTING: ciaddr %s, 50 present %v, 54 present %v; want 0.0.0.0, both", p.CIAddr, p.Has(OptRequestedIP), p.Has(OptServerID))
		}
	case "renewing", "rebinding":
		if p.CIAddr == zero || p.Has(OptRequestedIP) || p.Has(OptServerID) {
			t.Fatalf("%s: ciaddr %s, 50 present %v, 54 present %v; want an address, neither", c.state, p.CIAddr, p.Has(OptRequestedIP), p.Has(OptServerID))
		}
	}
	switch c.msgType {
	case Discover:
		if p.CIAddr != zero {
			t.Fatalf("DISCOVER with ciaddr %s", p.CIAddr)
		}
	case Release, Inform:
		if p.CIAddr == zero {
			t.Fatalf("%s without ciaddr", MessageName(c.msgType))
		}
	}
	// RFC 2131 table 5: a DECLINE names the address (50) and, like a
	// RELEASE, the server (54); a DECLINE's ciaddr is 0.
	switch c.msgType {
	case Decline:
		if p.CIAddr != zero || !p.Has(OptRequestedIP) || !p.Has(OptServerID) {
			t.Fatalf("DECLINE: ciaddr %s, 50 present %v, 54 present %v; want 0.0.0.0, both", p.CIAddr, p.Has(OptRequestedIP), p.Has(OptServerID))
		}
	case Release:
		if !p.Has(OptServerID) {
			t.Fatal("RELEASE without a server identifier (54)")
		}
	}
	if c.relayed {
		if p.GIAddr == zero || p.Hops < 1 || !p.Has(OptRelayAgentInfo) {
			t.Fatalf("relayed: giaddr %s, hops %d, 82 present %v", p.GIAddr, p.Hops, p.Has(OptRelayAgentInfo))
		}
		if _, ok := p.RelaySubOption(SubOptCircuitID); !ok {
			t.Fatal("dhcrelay -a adds a circuit-id; none read from option 82")
		}
	} else if client && c.from != "xdhcpctl" && (p.GIAddr != zero || p.Has(OptRelayAgentInfo)) {
		t.Fatalf("straight from %s, yet giaddr %s, 82 present %v", c.from, p.GIAddr, p.Has(OptRelayAgentInfo))
	}
}

// checkReencode writes p again and compares with the captured bytes.
func checkReencode(t *testing.T, p *Packet, b []byte) {
	t.Helper()
	if !bytes.Equal(p.Sname, make([]byte, snameLen)) || !bytes.Equal(p.File, make([]byte, fileLen)) {
		t.Fatalf("sname %q / file %q set: AppendHeader writes them empty, so this capture cannot round-trip; compare them apart", p.Sname, p.File)
	}
	out := AppendHeader(nil, Header{
		Op: p.Op, HType: p.HType, HLen: p.HLen, Hops: p.Hops, XID: p.XID, Secs: p.Secs, Flags: p.Flags,
		CIAddr: p.CIAddr, YIAddr: p.YIAddr, SIAddr: p.SIAddr, GIAddr: p.GIAddr, CHAddr: p.CHAddrRaw,
	})
	for _, code := range p.Codes() {
		v, _ := p.Option(code)
		out = AppendOption(out, code, v)
	}
	out = append(out, OptEnd)
	if len(out) > len(b) || !bytes.Equal(out, b[:len(out)]) {
		n := 0
		for n < min(len(out), len(b)) && out[n] == b[n] {
			n++
		}
		t.Fatalf("re-encoded %d bytes differ from the capture's %d at offset %d:\nours % x\nwire % x", len(out), len(b), n, out, b)
	}
	if tail := b[len(out):]; !bytes.Equal(tail, make([]byte, len(tail))) {
		t.Fatalf("after END the capture has non-zero bytes % x", tail)
	}
}

// TestPacketCopiesAreCaptures: the plain copies in testdata/packets that
// the examples read are byte for byte the captured seeds of their names.
func TestPacketCopiesAreCaptures(t *testing.T) {
	copies, err := filepath.Glob("testdata/packets/*.bin")
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) == 0 {
		t.Fatal("no testdata/packets/*.bin: the examples read them")
	}
	for _, c := range copies {
		name := strings.TrimSuffix(filepath.Base(c), ".bin")
		if !slices.ContainsFunc(capturedPackets, func(p capture) bool { return p.file == name }) {
			t.Errorf("%s is not a copy of a listed capture", c)
			continue
		}
		seed, err := readFuzzSeed(filepath.Join(capturedDir, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, seed) {
			t.Errorf("%s differs from the seed %s/%s", c, capturedDir, name)
		}
	}
}
