package lease

import (
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func TestBinaryRoundTrip(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	for _, l := range []*Lease{
		{IP: netip.MustParseAddr("10.0.0.1"), State: Free},
		{
			IP: netip.MustParseAddr("10.78.1.9"), State: Active, HWType: 1,
			HWAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}, ClientID: []byte{255, 1, 2, 3, 4, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1},
			Hostname: "cpe-1", Start: at, Expiry: at.Add(time.Hour), CLTT: at, StateAt: at, PotExp: at.Add(2 * time.Hour),
			AckedExp: at.Add(90 * time.Minute), Horizon: at.Add(24 * time.Hour), IfIndex: 7, VLANs: [2]uint16{100, 200},
			GIAddr: netip.MustParseAddr("10.78.0.1"), ServerID: netip.MustParseAddr("10.77.0.1"),
			RelayInfo: []byte{1, 2, 'a', 'b'}, VendorClass: []byte("docsis3.0"), LastXID: 0xdeadbeef,
			ForceRenewKey: make([]byte, 16), PartnerPending: true,
		},
	} {
		b, err := l.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got := &Lease{IP: l.IP}
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, l) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, l)
		}
	}
}

func TestUnmarshalRefusesCorruptRecords(t *testing.T) {
	l := &Lease{IP: netip.MustParseAddr("10.0.0.1"), State: Active, HWAddr: net.HardwareAddr{1, 2, 3, 4, 5, 6}}
	b, _ := l.MarshalBinary()
	for i := range len(b) {
		var x Lease
		if err := x.UnmarshalBinary(b[:i]); err == nil {
			t.Fatalf("truncated at %d accepted", i)
		}
	}
	bad := append([]byte{}, b...)
	bad[1] = 42
	if err := new(Lease).UnmarshalBinary(bad); err == nil {
		t.Fatal("unknown state accepted")
	}
}

func TestClientKeyKinds(t *testing.T) {
	hw := ClientKey(nil, 1, []byte{1, 2, 3, 4, 5, 6})
	cid := ClientKey([]byte{1, 1, 2, 3, 4, 5, 6}, 1, []byte{1, 2, 3, 4, 5, 6})
	if hw == cid {
		t.Fatal("a client-id and a chaddr must never produce the same key")
	}
	if ClientKey([]byte{1, 9}, 1, []byte{1}) != ClientKey([]byte{1, 9}, 1, []byte{2}) {
		t.Fatal("with a client-id, chaddr must not matter (RFC 2131 §4.2)")
	}
}

func TestReusable(t *testing.T) {
	for st, want := range map[State]bool{
		Free: true, Active: false, Expired: true, Released: true, Abandoned: false, Reset: true, Backup: false, 0: false,
	} {
		if st.Reusable() != want {
			t.Errorf("%v reusable %v, want %v", st, !want, want)
		}
	}
}

func TestEnding(t *testing.T) {
	for st := State(0); st <= Backup; st++ {
		if want := st == Expired || st == Released; st.Ending() != want {
			t.Errorf("%v ending %v, want %v", st, !want, want)
		}
		if st.Ending() && !st.Reusable() {
			t.Errorf("%v is ending but not reusable", st)
		}
	}
}

// A clone shares no bytes with its original, its fields share one
// allocation without overlapping (an append to one leaves the next
// alone), and nil stays nil.
func TestCloneIsIndependent(t *testing.T) {
	l := &Lease{IP: netip.MustParseAddr("10.0.0.1"), HWAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}, ClientID: []byte{1, 2},
		RelayInfo: []byte{1, 3, 'c', 'i', 'd'}, VendorClass: []byte("docsis"), ForceRenewKey: []byte{}}
	c := l.Clone()
	if !reflect.DeepEqual(c, l) {
		t.Fatalf("clone %+v differs from %+v", c, l)
	}
	c.HWAddr[0], c.ClientID[0] = 0xff, 0xff
	if l.HWAddr[0] != 2 || l.ClientID[0] != 1 {
		t.Fatal("a clone's bytes are its original's")
	}
	c.HWAddr = append(c.HWAddr, 9)
	c.RelayInfo = append(c.RelayInfo, 9)
	if c.ClientID[1] != 2 || string(c.VendorClass) != "docsis" {
		t.Fatalf("an append ran into the next field: client-id %x, vendor class %q", c.ClientID, c.VendorClass)
	}
	if n := (&Lease{}).Clone(); n.HWAddr != nil || n.RelayInfo != nil || n.ForceRenewKey != nil {
		t.Fatalf("nil fields became %+v", n)
	}
	if c.ForceRenewKey == nil {
		t.Fatal("an empty key became nil")
	}
}

// SameClient agrees with comparing ClientKeys.
func TestSameClientAgreesWithClientKey(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	ls := []*Lease{
		{},
		{HWType: 1, HWAddr: mac},
		{HWType: 6, HWAddr: mac},
		{HWType: 1, HWAddr: net.HardwareAddr{2, 0, 0, 0, 0, 2}},
		{HWType: 1, HWAddr: mac, ClientID: []byte{1, 2, 0, 0, 0, 0, 1}},
		{HWType: 1, HWAddr: net.HardwareAddr{2, 0, 0, 0, 0, 2}, ClientID: []byte{1, 2, 0, 0, 0, 0, 1}},
		{ClientID: []byte{0, 'a'}},
		{ClientID: []byte{'h', 1}}, // no collision with an htype+chaddr key
		{HWType: 'h', HWAddr: []byte{1}},
	}
	for _, a := range ls {
		for _, b := range ls {
			if got, want := SameClient(a, b), a.ClientKey() == b.ClientKey(); got != want {
				t.Errorf("SameClient(%+v, %+v) = %v, keys say %v", a, b, got, want)
			}
		}
	}
}
