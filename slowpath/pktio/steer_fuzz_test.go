package pktio

import (
	"net"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/internal/testenv"
	"github.com/xdhcp/xdhcp/slowpath"
)

// firstTypeOption walks the options field (pads count, as the program
// counts them) and returns option 53's value when it has length 1 and is
// among the first max entries, with whether option 52 (overload) or a
// second option 53 comes anywhere.
func firstTypeOption(msg []byte, max int) (mt uint8, found, overload, twice bool) {
	if len(msg) < 240 {
		return 0, false, false, false
	}
	seen := 0
	for i, off := 0, 240; off < len(msg); i++ {
		code := msg[off]
		if code == 0 {
			off++
			continue
		}
		if code == 255 || off+1 >= len(msg) {
			break
		}
		n := int(msg[off+1])
		switch code {
		case 52:
			overload = true
		case 53:
			seen++
			if seen == 1 && i < max && n == 1 && off+2 < len(msg) {
				mt, found = msg[off+2], true
			}
		}
		off += 2 + n
	}
	return mt, found, overload, seen > 1
}

// FuzzSteer checks the program that sorts requests between the sockets
// against the server's own parser, on the program itself
// (BPF_PROG_TEST_RUN): a message the parser accepts as a REQUEST,
// DECLINE, RELEASE or LEASEQUERY, with one option 53 early in the options
// field, goes to the priority socket; nothing else goes there unless the
// parser rejects it, it repeats option 53 (which the parser reads as one
// malformed option), or it is a DISCOVER with secs above 0 (a
// retransmission, let first within the second's allowance).
func FuzzSteer(f *testing.F) {
	if os.Geteuid() != 0 {
		testenv.Skip(f, "needs root: loads BPF programs")
	}
	var objs bpf.SteerObjects
	if err := bpf.LoadSteerObjects(&objs, nil); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { objs.Close() })
	for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeInform} {
		m, err := dhcpv4.New(dhcpv4.WithMessageType(mt), dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 1}),
			dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 2, 'a', 'b'}))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.ToBytes())
		m.NumSeconds = 3
		f.Add(m.ToBytes())
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) > maxTestPacket {
			return
		}
		// The program reads the UDP payload from offset 0 after the
		// Ethernet header BPF_PROG_TEST_RUN puts first.
		in := append(make([]byte, 14), msg...)
		ret, err := objs.SteerReuseport.Run(&ebpf.RunOptions{Data: in})
		if err != nil {
			t.Fatal(err)
		}
		prio := ret == 0
		var p dhcpwire.Packet
		parsed := p.Parse(msg) == nil && p.Validate() == nil && p.Op == dhcpwire.BootRequest
		mt, found, overload, twice := firstTypeOption(msg, 64)
		// A client the holdoffs can tell (hlen 1 to 16) retransmitting.
		retry := p.MessageType() == dhcpwire.Discover && p.Secs > 0 && p.HLen >= 1 && p.HLen <= 16
		if parsed && found && !overload && !twice && !retry && slowpath.PriorityType(p.MessageType()) != prio {
			t.Fatalf("message type %d (parser %d): program says priority %v", mt, p.MessageType(), prio)
		}
		if prio && parsed && !twice && !retry && !slowpath.PriorityType(p.MessageType()) {
			t.Fatalf("the parser's message type %d went to the priority socket", p.MessageType())
		}
	})
}

// maxTestPacket keeps the test packets within what BPF_PROG_TEST_RUN
// takes.
const maxTestPacket = 3000
