package main

import (
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestMetricsREADMEListsAreExported: every metric name README.md lists is
// exported by a daemon running with the fast path on, so a renamed or
// unregistered metric fails here rather than reading as 0 elsewhere.
// Counter vectors export a family only once a series exists, so the test
// first makes the lazily created ones happen: a pool offer bound hit (two
// clients asking for a one-offer pool) and a dropped malformed message.
func TestMetricsREADMEListsAreExported(t *testing.T) {
	needTools(t, "curl")
	// The failover metrics exist only under failover:
	// TestFailoverXdhcpdPair checks those (exportsREADMEMetrics).
	names := readmeMetrics(t, func(n string) bool { return !strings.HasPrefix(n, "xdhcp_failover_") })
	if len(names) < 10 {
		t.Fatalf("README lists only %d metric names (%v); the pattern no longer matches how it lists them", len(names), names)
	}

	l, c := fastLabPool(t, "generic", "1h", "02:00:00:00:0e:01", "10.77.0.100-10.77.0.101")
	// An address outside the pool, so the client namespace has a route
	// for its broadcasts and a source for the unicast below.
	l.sh(c, "ip addr add 10.77.0.3/24 dev eth0 && ip route add 255.255.255.255/32 dev eth0")
	// Two free addresses allow one pending offer: the second client's
	// DISCOVER withdraws the first's offer.
	for _, mac := range []net.HardwareAddr{{2, 0, 0, 0, 0x0e, 2}, {2, 0, 0, 0, 0x0e, 3}} {
		if _, ok := offered(t, c, mac); !ok {
			t.Fatalf("no offer to %s\n%s", mac, l.daemon.Output())
		}
	}
	// A DISCOVER whose option 57 is below 576 is malformed and dropped.
	bad, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
		dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0x0e, 4}),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionMaximumDHCPMessageSize, []byte{0, 100})))
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, "10.77.0.3:68", bad)

	exportsREADMEMetrics(t, l, names)
}

// readmeMetrics lists the metric names README.md mentions that keep says
// to keep.
func readmeMetrics(t *testing.T, keep func(string) bool) []string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatalf("read README: %v", err)
	}
	var names []string
	// Metric names, not the C headers the README points at (bpf/xdhcp_maps.h).
	for _, n := range regexp.MustCompile(`xdhcp_[a-z_]+(\.h)?`).FindAllString(string(readme), -1) {
		if strings.HasSuffix(n, ".h") || !keep(n) {
			continue
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// exportsREADMEMetrics fails unless l's daemon exports every one of names
// (within 10 s).
func exportsREADMEMetrics(t *testing.T, l *lab, names []string) {
	t.Helper()
	var missing []string
	var text string
	for deadline := time.Now().Add(10 * time.Second); ; {
		text = l.scrape()
		missing = missing[:0]
		for _, n := range names {
			if !strings.Contains(text, "\n# TYPE "+n+" ") {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("README lists metrics the daemon does not export: %v\n/metrics:\n%s", missing, text)
	}
}
