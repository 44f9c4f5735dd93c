package fastpath_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/fastpath"
)

// checkNeverAlteredOrAnswered runs pkt and fails when the program answers
// it or passes it on changed.
func checkNeverAlteredOrAnswered(t *testing.T, r *rig, what string, pkt []byte) {
	t.Helper()
	if !runnable(pkt) {
		return
	}
	orig := bytes.Clone(pkt)
	v, out := r.run(t, pkt, loIndex)
	if v == xdpTx {
		t.Fatalf("%s: answered", what)
	}
	if v == xdpPass && !bytes.Equal(out, orig) {
		t.Fatalf("%s: passed packet altered", what)
	}
	if v != xdpPass {
		t.Fatalf("%s: verdict %d (only the punt limiter may drop)", what, v)
	}
}

func TestXDPMalformed(t *testing.T) {
	r := loadRig(t)
	r.publish(t, directLease(), relayedLease())
	good := frame(direct(clientIP), request(t, clientIP).ToBytes())
	// Relayed with option 82 last, which the program fingerprints.
	goodRelayed := frame(relayed(), request(t, relayedIP, viaRelay(relayInfo)...).ToBytes())
	const l2, l3 = 14, 34 // Ethernet, then IPv4 + UDP
	dhcp := l3 + 8

	// Truncation at every offset, with the IP and UDP lengths left as sent
	// and also fixed up to match, so both the length checks and the
	// option walk meet the short packet.
	// Cut after END, with lengths fixed, it is still a whole request.
	for _, good := range [][]byte{good, goodRelayed} {
		if v, _ := r.run(t, bytes.Clone(good), loIndex); v != xdpTx {
			t.Fatalf("the unmangled request is not answered (verdict %d)", v)
		}
		end := dhcp + endOffset(t, good[dhcp:])
		for n := 0; n < len(good); n++ {
			checkNeverAlteredOrAnswered(t, r, "truncated (lengths as sent)", bytes.Clone(good[:n]))
			if n <= dhcp {
				continue
			}
			p := bytes.Clone(good[:n])
			fixLengths(p, n-l2)
			if n <= end {
				checkNeverAlteredOrAnswered(t, r, "truncated before END (lengths fixed)", p)
			} else if v, _ := r.run(t, p, loIndex); v != xdpTx {
				t.Fatalf("a request cut after its END (%d bytes) is not answered: verdict %d", n, v)
			}
		}
	}

	mangle := map[string]func(p []byte){
		"option length past the end": func(p []byte) { p[dhcp+240+1] = 250 },
		"missing END": func(p []byte) {
			end := bytes.LastIndexByte(p, 255)
			for i := end; i < len(p); i++ {
				p[i] = 0
			}
		},
		"IPv4 options": func(p []byte) { p[l2] = 0x46 },
		"fragment":     func(p []byte) { p[l2+6] |= 0x20 },
		"later fragment": func(p []byte) {
			binary.BigEndian.PutUint16(p[l2+6:], 0x0010)
		},
		"BOOTREPLY on port 67":   func(p []byte) { p[dhcp] = 2 },
		"bad magic cookie":       func(p []byte) { p[dhcp+236] = 0 },
		"hlen over 16":           func(p []byte) { p[dhcp+2] = 17 },
		"UDP length disagrees":   func(p []byte) { binary.BigEndian.PutUint16(p[l3+4:], 300) },
		"IP length beyond frame": func(p []byte) { binary.BigEndian.PutUint16(p[l2+2:], 1400) },
		"not IPv4":               func(p []byte) { p[l2] = 0x65 },
		"message type twice": func(p []byte) {
			// Overwrite the client-id option (61, 7 bytes) with a second 53.
			i := bytes.Index(p[dhcp+240:], []byte{61, 7})
			copy(p[dhcp+240+i:], []byte{53, 1, 3, 0, 0, 0, 0, 0, 0})
		},
	}
	for name, f := range mangle {
		p := bytes.Clone(good)
		f(p)
		checkNeverAlteredOrAnswered(t, r, name, p)
	}
	// Option 82's length reaching past END and the datagram, or into END.
	at82 := bytes.Index(goodRelayed[dhcp+240:], append([]byte{82, byte(len(relayInfo))}, relayInfo[:4]...))
	if at82 < 0 {
		t.Fatal("no option 82 in the relayed request")
	}
	at82 += dhcp + 240
	for _, n := range []byte{byte(len(relayInfo)) + 1, byte(len(relayInfo)) + 8, 255} {
		p := bytes.Clone(goodRelayed)
		p[at82+1] = n
		checkNeverAlteredOrAnswered(t, r, "option 82 length past the end", p)
	}

	// Overload (52) and a message beyond the parse buffer.
	ov := request(t, clientIP, dhcpv4.WithGeneric(dhcpv4.OptionOptionOverload, []byte{1}))
	checkNeverAlteredOrAnswered(t, r, "overload", frame(direct(clientIP), ov.ToBytes()))
	big := request(t, clientIP)
	for i := range 5 {
		big.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(200+i), make([]byte, 250)))
	}
	checkNeverAlteredOrAnswered(t, r, "oversized request", frame(direct(clientIP), big.ToBytes()))
	// The largest single-buffer frame of something else on port 67.
	junk := frame(direct(clientIP), make([]byte, maxTestFrame-42))
	checkNeverAlteredOrAnswered(t, r, "oversized non-BOOTP", junk)

	if c := r.counters(t); c["answered"] == 0 || c["malformed"] == 0 || c["unsupported"] == 0 {
		t.Fatalf("counters %v", c)
	}
}

// fixLengths makes the IP and UDP length fields describe an IP datagram of
// n bytes (the IP checksum is not fixed: the program does not need it).
func fixLengths(p []byte, n int) {
	binary.BigEndian.PutUint16(p[14+2:], uint16(n))
	binary.BigEndian.PutUint16(p[34+4:], uint16(n-20))
}

// FuzzXDP drives mutated requests, and renewals captured from real
// clients, through the program: the only verdicts are XDP_PASS, with the
// frame unchanged, and XDP_TX, with a reply checkAnswer accepts.
func FuzzXDP(f *testing.F) {
	r := loadRig(f)
	leases := map[netip.Addr]fastpath.Lease{}
	for _, l := range append([]fastpath.Lease{directLease(), relayedLease()}, capturedLeases()...) {
		leases[l.IP] = l
	}
	for _, l := range leases {
		r.publish(f, l)
	}
	f.Add(frame(direct(clientIP), request(f, clientIP).ToBytes()))
	f.Add(frame(broadcast(clientIP), request(f, clientIP).ToBytes()))
	o := relayed()
	o.vlans = []uint16{10, 20}
	f.Add(frame(o, request(f, relayedIP, dhcpv4.WithGatewayIP(relayIP.AsSlice()), dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, relayInfo)).ToBytes()))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if !runnable(pkt) {
			return
		}
		orig := bytes.Clone(pkt)
		v, out := r.run(t, pkt, loIndex)
		switch v {
		case xdpTx:
			checkAnswer(t, r, leases, orig, out)
		case xdpPass:
			if !bytes.Equal(out, orig) {
				t.Fatal("passed packet altered")
			}
		default:
			t.Fatalf("verdict %d", v)
		}
	})
}

// maxTestFrame is about the largest frame BPF_PROG_TEST_RUN accepts for a
// program without multi-buffer support (a page less head- and tailroom).
const maxTestFrame = 3500

// runnable reports whether the kernel would run XDP on the frame at all:
// nothing shorter than an Ethernet header reaches a program.
func runnable(pkt []byte) bool { return len(pkt) >= 14 && len(pkt) <= maxTestFrame }

// endOffset is the offset of the END option in a DHCP message.
func endOffset(t *testing.T, d []byte) int {
	for i := 240; i < len(d); {
		switch d[i] {
		case 0:
			i++
		case 255:
			return i
		default:
			i += 2 + int(d[i+1])
		}
	}
	t.Fatal("no END")
	return 0
}
