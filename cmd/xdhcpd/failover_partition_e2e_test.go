package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/testenv"
)

// cutFrom makes l unable to reach the address peer on the bridge while its
// clients still reach it: the neighbour entry for peer points at a MAC no
// port has (the bridge floods the frames, and the peer's interface drops
// them as not its own). Without iptables: nothing else is needed.
func (l *lab) cutFrom(peer string) {
	l.t.Helper()
	if out, err := l.srv.Exec(context.Background(), "ip", "neigh", "replace", peer, "lladdr", "02:00:de:ad:00:01", "nud", "permanent", "dev", "eth0"); err != nil {
		l.t.Fatalf("cutting %s: %v\n%s", peer, err, out)
	}
}

// healFrom undoes cutFrom: ARP finds the peer again.
func (l *lab) healFrom(peer string) {
	l.t.Helper()
	if out, err := l.srv.Exec(context.Background(), "ip", "neigh", "del", peer, "dev", "eth0"); err != nil {
		l.t.Fatalf("healing %s: %v\n%s", peer, err, out)
	}
}

// doraFor runs one DORA for a new client mac and records what it saw.
func (f *foNet) doraFor(t *testing.T, mac string) foAck {
	t.Helper()
	t0 := time.Now()
	ip, server, secs := f.client(mac).dora(t)
	return foAck{mac, ip, server, t0, t0.Add(time.Duration(secs) * time.Second)}
}

// TestFailoverPairSurvivesPartition: two xdhcpd lose each other (the link
// between them cut, each still reaching every client) for two MCLTs. Both
// go communications-interrupted and keep serving new clients, each from
// its own addresses, with leases capped at MCLT; the primary is killed
// with -9 and restarted in the middle of it and comes back in that state.
// When the link heals the pair is normal again by itself, each database
// holds the bindings the other made meanwhile, and no address was ACKed to
// two clients (every ACK the clients saw and both databases).
func TestFailoverPairSurvivesPartition(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces")
	needTools(t, "udhcpc", "ip")
	f := newFoNet(t)
	f.tls = true
	p := f.xdhcpdPeer("primary", "10.79.0.1", "10.79.0.2")
	s := f.xdhcpdPeer("secondary", "10.79.0.2", "10.79.0.1")
	waitFoState(p, "normal", "normal", 30*time.Second)
	waitFoState(s, "normal", "normal", 10*time.Second)
	// The secondary's BACKUP share arrives with the pool balance.
	waitFor(t, "the secondary's BACKUP addresses", 15*time.Second, func() bool { return foStatus(s).Backup > 0 })

	var acks []foAck
	for _, mac := range append(clientsByBucket(true, 2, 0x10), clientsByBucket(false, 2, 0x11)...) {
		acks = append(acks, f.doraFor(t, mac))
	}

	p.cutFrom("10.79.0.2")
	s.cutFrom("10.79.0.1")
	cut := time.Now()
	waitFoState(p, "communications-interrupted", "", 20*time.Second)
	waitFoState(s, "communications-interrupted", "", 20*time.Second)

	// New clients for two MCLTs, a DORA every few seconds; udhcpc takes
	// the first offer, so both servers get clients.
	var during []foAck
	servers := map[string]int{}
	for i := 0; time.Since(cut) < 2*foMCLT*time.Second; i++ {
		a := f.doraFor(t, fmt.Sprintf("02:00:00:12:00:%02x", i))
		if d := a.until.Sub(a.at); d > time.Duration(foMCLT+2)*time.Second {
			t.Errorf("%s got %s from %s for %s during the partition: more than MCLT (%ds)", a.mac, a.ip, a.server, d, foMCLT)
		}
		during = append(during, a)
		servers[a.server]++
		if i == 3 {
			// kill -9 in communications-interrupted; it restarts
			// into that state, from its stored one.
			if err := p.daemon.Signal(sigKILL); err != nil {
				t.Fatal(err)
			}
			p.daemon.Wait()
			p.start()
			st := waitFoState(p, "communications-interrupted", "", 30*time.Second)
			t.Logf("the primary restarted in %s (%s)", st.State, st.StateReason)
		}
		time.Sleep(2 * time.Second)
	}
	acks = append(acks, during...)
	t.Logf("%d DORAs during the partition, by server %v", len(during), servers)
	if len(during) < 8 {
		t.Fatalf("only %d DORAs answered during the partition", len(during))
	}
	checkNoDoubleAssignment(t, acks, p, s)

	p.healFrom("10.79.0.2")
	s.healFrom("10.79.0.1")
	healed := time.Now()
	// Reconnecting takes a dial (every 2 s) and the handshake; catching
	// up is a few dozen updates.
	waitFoState(p, "normal", "normal", 30*time.Second)
	waitFoState(s, "normal", "normal", 10*time.Second)
	t.Logf("normal again %s after the heal", time.Since(healed).Round(100*time.Millisecond))

	// Each side knows what the other granted while they were apart.
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range []*lab{p, s} {
				t.Logf("%s: status %+v\nlog:\n%s", l.dir, foStatus(l), tail(l.daemon.Output(), 60))
			}
		}
	})
	// Leases are MCLT long during the partition: the later ones are still
	// running, and both sides must hold them.
	live := 0
	for _, a := range during {
		if !a.until.After(time.Now().Add(5 * time.Second)) {
			continue
		}
		live++
		for _, l := range []*lab{p, s} {
			waitFor(t, fmt.Sprintf("%s (%s from %s) in %s's database", a.mac, a.ip, a.server, l.dir), 15*time.Second, func() bool {
				li, ok := l.leaseFor(a.mac)
				return ok && li.IP == a.ip && li.State == "active"
			})
		}
	}
	if live == 0 {
		t.Fatal("no lease granted during the partition was still running after the heal: nothing checked")
	}
	checkNoDoubleAssignment(t, acks, p, s)
	// Updates refused as outdated (reason 15) are expected here: the
	// killed primary resends what it had not recorded as acknowledged,
	// and each side had moved on. They are logged and counted.
	for _, l := range []*lab{p, s} {
		t.Logf("%s: %v binding updates refused by the partner", l.dir, l.metricOrZero(`xdhcp_failover_updates_total{dir="sent",result="rejected"}`))
	}
}
