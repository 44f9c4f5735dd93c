package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/netns"
	"github.com/xdhcp/xdhcp/internal/testenv"
)

// Timers of the pair in TestFailoverPartitionHeals: a short MCLT so that
// the partition can last several of them within the test's budget.
const (
	phMCLT = 20 * time.Second
	phMRD  = 6 * time.Second
	// Leases granted during the partition are not reused before the
	// partner has heard of them: the pool is wide enough that neither
	// share runs out during the partition's DORAs.
	phPool = "10.79.0.100-10.79.0.199"
)

// xdhcpdPeerTimers is xdhcpdPeer with the given MCLT and
// max-response-delay; it also returns the name of the server's bridge port.
func (f *foNet) xdhcpdPeerTimers(role, addr, peer string, mclt, mrd time.Duration) (*lab, string) {
	f.t.Helper()
	tmpl := foXdhcpdConfig
	for _, r := range [][2]string{
		{"max-response-delay: 5s", fmt.Sprintf("max-response-delay: %ds", int(mrd/time.Second))},
		{"pools: [10.79.0.100-10.79.0.139]", "pools: [" + phPool + "]"},
	} {
		if !strings.Contains(tmpl, r[0]) {
			f.t.Fatalf("foXdhcpdConfig no longer has %q", r[0])
		}
		tmpl = strings.Replace(tmpl, r[0], r[1], 1)
	}
	// attach (in xdhcpdPeerFrom) names the server's bridge port fpN
	// after the count it is about to take.
	port := fmt.Sprintf("fp%d", f.n+1)
	return f.xdhcpdPeerFrom(tmpl, role, addr, peer, mclt), port
}

// isolate sets the bridge ports' isolated flag: isolated ports do not
// reach each other, only the ports that are not isolated.
func (f *foNet) isolate(on bool, ports ...string) {
	f.t.Helper()
	v := map[bool]string{true: "on", false: "off"}[on]
	for _, p := range ports {
		if out, err := f.br.Exec(context.Background(), "bridge", "link", "set", "dev", p, "isolated", v); err != nil {
			f.t.Fatalf("bridge link set dev %s isolated %s: %v\n%s", p, v, err, out)
		}
	}
}

// tryDora is foClient.dora that reports an unanswered DORA instead of
// failing the test.
func (c foClient) tryDora() (a foAck, ok bool, out string) {
	t0 := time.Now()
	b, err := c.ns.Exec(context.Background(), "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "4", "-T", "1", "-s", "/bin/true")
	m := udhcpcObtained.FindStringSubmatch(string(b))
	if err != nil || m == nil {
		return foAck{}, false, string(b)
	}
	var secs int
	fmt.Sscan(m[3], &secs)
	return foAck{c.mac, m[1], m[2], t0, t0.Add(time.Duration(secs) * time.Second)}, true, string(b)
}

// phRenewer is a udhcpc that stays bound and renews on SIGUSR1; its hook
// appends each bound/renew with the time to env.
type phRenewer struct {
	mac  string
	env  string
	proc *netns.Proc
}

var phEvent = regexp.MustCompile(`^(bound|renew) ip=(\S+) serverid=(\S+) lease=(\d+) t=(\d+)$`)

// acks returns every ACK the renewer's udhcpc reported.
func (r phRenewer) acks(t *testing.T) []foAck {
	t.Helper()
	fh, err := os.Open(r.env)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []foAck
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		m := phEvent.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var secs, at int64
		fmt.Sscan(m[4], &secs)
		fmt.Sscan(m[5], &at)
		// The hook runs after the ACK: a second earlier covers it.
		start := time.Unix(at-1, 0)
		out = append(out, foAck{r.mac, m[2], m[3], start, start.Add(time.Duration(secs+1) * time.Second)})
	}
	return out
}

// TestFailoverPartitionHeals: two xdhcpd with MCLT 20 s are cut from each
// other (each still reaching all clients) for three MCLTs. Both go
// communications-interrupted; new clients reaching only the primary, only
// the secondary, or both get leases (at most MCLT long) from the server's
// own share, and bound clients renew. The link heals and the pair returns
// to normal by itself; each database then holds what the other granted
// meanwhile, and no address was ACKed to two clients (every ACK seen by a
// client, and both databases).
func TestFailoverPartitionHeals(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces")
	needTools(t, "udhcpc", "ip", "bridge")
	start := time.Now()
	f := newFoNet(t)
	f.tls = true
	p, pPort := f.xdhcpdPeerTimers("primary", "10.79.0.1", "10.79.0.2", phMCLT, phMRD)
	s, sPort := f.xdhcpdPeerTimers("secondary", "10.79.0.2", "10.79.0.1", phMCLT, phMRD)
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range []*lab{p, s} {
				t.Logf("%s: log:\n%s", l.dir, tail(l.daemon.Output(), 60))
			}
		}
	})
	waitFoState(p, "normal", "normal", 30*time.Second)
	waitFoState(s, "normal", "normal", 10*time.Second)
	if st := foStatus(p); st.MCLT != phMCLT {
		t.Fatalf("MCLT %s, want %s", st.MCLT, phMCLT)
	}
	waitFor(t, "the secondary's BACKUP addresses", 15*time.Second, func() bool { return foStatus(s).Backup > 0 })

	// Bound clients, one of each server's hash bucket, that renew during
	// the partition.
	var renewers []phRenewer
	for _, mac := range append(clientsByBucket(true, 1, 0x30), clientsByBucket(false, 1, 0x31)...) {
		c := f.client(mac)
		dir := t.TempDir()
		env := filepath.Join(dir, "udhcpc.env")
		script := udhcpcScript(t, dir, env, "ip=$ip serverid=$serverid lease=$lease t=$(date +%s)")
		proc, err := c.ns.Start(context.Background(), "udhcpc", "-f", "-i", "eth0", "-s", script, "-t", "10", "-T", udhcpcTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(proc.Stop)
		waitFileContains(t, env, "bound ip=", 15*time.Second)
		renewers = append(renewers, phRenewer{mac, env, proc})
	}
	// Their grants acknowledged by the partner before the cut.
	waitFor(t, "the partner's acks", 10*time.Second, func() bool {
		a, b := foStatus(p), foStatus(s)
		return a.QueueDepth == 0 && a.Unacked == 0 && b.QueueDepth == 0 && b.Unacked == 0
	})
	pst, sst := foStatus(p), foStatus(s)
	t.Logf("before the partition: primary free %d, secondary backup %d", pst.Free, sst.Backup)

	p.cutFrom("10.79.0.2")
	s.cutFrom("10.79.0.1")
	cut := time.Now()
	// Detection is at most one max-response-delay without a message
	// (contact), plus the poll.
	waitFoState(p, "communications-interrupted", "", 3*phMRD)
	waitFoState(s, "communications-interrupted", "", 3*phMRD)
	t.Logf("both communications-interrupted %s after the cut", time.Since(cut).Round(100*time.Millisecond))

	// For three MCLTs: DORAs of new clients that reach only the primary,
	// only the secondary (the other server's bridge port and the
	// client's isolated), or both; and renewals of the bound clients.
	var during []foAck
	answered := map[string]int{}
	target := map[string]string{pPort: "10.79.0.1", sPort: "10.79.0.2"}
	pMACs, sMACs := clientsByBucket(true, 40, 0x32), clientsByBucket(false, 40, 0x33)
	var unanswered []string
	for i := 0; time.Since(cut) < 3*phMCLT && i/2 < len(pMACs); i++ {
		var mac, only string
		switch i % 4 {
		case 0: // a primary-bucket client that reaches only the primary
			mac, only = pMACs[i/2], pPort
		case 1: // a secondary-bucket client that reaches only the secondary
			mac, only = sMACs[i/2], sPort
		case 2: // a secondary-bucket client that reaches only the primary
			mac, only = sMACs[i/2], pPort
		case 3: // a primary-bucket client that reaches both
			mac = pMACs[i/2]
		}
		c := f.client(mac)
		cport := fmt.Sprintf("fp%d", f.n)
		var other string
		if only != "" {
			other = map[string]string{pPort: sPort, sPort: pPort}[only]
			f.isolate(true, cport, other)
		}
		a, ok, out := c.tryDora()
		if only != "" {
			f.isolate(false, cport, other)
		}
		switch {
		case !ok:
			// Allowed only when the server it reached has nothing
			// left of its own share.
			pf, sb := foStatus(p).Free, foStatus(s).Backup
			if (only != sPort && pf > 0) || (only != pPort && sb > 0) {
				t.Errorf("%s (reaching %s) got no lease during the partition (primary free %d, secondary backup %d):\n%s", mac, orBoth(target[only]), pf, sb, out)
				for _, l := range []*lab{p, s} {
					var b strings.Builder
					for _, li := range l.leases() {
						fmt.Fprintf(&b, "  %+v\n", li)
					}
					t.Logf("%s's leases:\n%s", l.dir, b.String())
				}
			}
			unanswered = append(unanswered, mac)
		case only != "" && a.server != target[only]:
			t.Errorf("%s reaching only %s was answered by %s", mac, target[only], a.server)
		default:
			if d := a.until.Sub(a.at); d > phMCLT+2*time.Second {
				t.Errorf("%s got %s from %s for %s during the partition: more than MCLT (%s)", a.mac, a.ip, a.server, d, phMCLT)
			}
			t.Logf("%s: %s from %s for %s", mac, a.ip, a.server, a.until.Sub(a.at).Round(time.Second))
			during = append(during, a)
			answered[a.server]++
		}
		if i%6 == 5 {
			for _, r := range renewers {
				if err := r.proc.Signal(sigUSR1); err != nil {
					t.Fatal(err)
				}
			}
		}
		time.Sleep(1500 * time.Millisecond)
	}
	t.Logf("%d DORAs answered during the partition, by server %v; %d unanswered", len(during), answered, len(unanswered))
	if answered["10.79.0.1"] < 3 || answered["10.79.0.2"] < 3 {
		t.Fatalf("during the partition each server should have granted several new leases: %v", answered)
	}
	var renewed []foAck
	for _, r := range renewers {
		for _, a := range r.acks(t) {
			if a.at.After(cut.Add(3 * phMRD)) {
				renewed = append(renewed, a)
			}
		}
	}
	t.Logf("%d renewals answered during the partition", len(renewed))
	if len(renewed) < len(renewers) {
		t.Errorf("only %d renewals answered during the partition: %+v", len(renewed), renewed)
	}
	allACKs := func() []foAck {
		acks := append([]foAck(nil), during...)
		for _, r := range renewers {
			acks = append(acks, r.acks(t)...)
		}
		return acks
	}
	checkNoDoubleAssignment(t, allACKs(), p, s)

	p.healFrom("10.79.0.2")
	s.healFrom("10.79.0.1")
	healed := time.Now()
	// Back to normal by itself: a dial pending at the heal gives up
	// after its 5 s timeout, the next one starts 2 s later, then the
	// handshake (TLS, CONNECT, STATE) and the catch-up of a few dozen
	// binding updates, each side waiting at most a max-response-delay
	// for the other's messages: 5+2+6+6 s, with margin 30 s.
	waitFoState(p, "normal", "normal", 30*time.Second)
	waitFoState(s, "normal", "normal", 10*time.Second)
	t.Logf("normal again %s after the heal", time.Since(healed).Round(100*time.Millisecond))

	// Each database knows what the other server granted during the
	// partition. Leases granted there are at most MCLT long: those still
	// running must be active in both databases; every one must at least
	// be in the partner's database with its client.
	live := 0
	for _, a := range during {
		granter, partner := p, s
		if a.server == "10.79.0.2" {
			granter, partner = s, p
		}
		running := a.until.After(time.Now().Add(3 * time.Second))
		if running {
			live++
		}
		for _, l := range []*lab{granter, partner} {
			waitFor(t, fmt.Sprintf("%s (%s from %s, until %s) in %s's database", a.mac, a.ip, a.server, a.until.Format(time.TimeOnly), l.dir), 15*time.Second, func() bool {
				li, ok := l.leaseFor(a.mac)
				if !ok || li.IP != a.ip {
					return false
				}
				return li.State == "active" || !a.until.After(time.Now())
			})
		}
	}
	if live == 0 {
		t.Fatal("no lease granted during the partition was still running after the heal")
	}
	t.Logf("%d of %d partition leases still running after the heal, all in both databases", live, len(during))
	checkNoDoubleAssignment(t, allACKs(), p, s)
	for _, l := range []*lab{p, s} {
		t.Logf("%s: %v binding updates refused by the partner", l.dir, l.metricOrZero(`xdhcp_failover_updates_total{dir="sent",result="rejected"}`))
	}
	t.Logf("run time %s", time.Since(start).Round(time.Second))
}

func orBoth(s string) string {
	if s == "" {
		return "both servers"
	}
	return s
}
