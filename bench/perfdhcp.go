// Package bench is the benchmark rig: it runs xdhcpd, Kea and ISC dhcpd in
// network namespaces, drives them with perfdhcp (relay mode) and reports
// their rates side by side.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/internal/netns"
)

// Exchange is perfdhcp's count for one exchange (DISCOVER-OFFER or
// REQUEST-ACK).
type Exchange struct {
	Sent, Received, Drops int
}

// PerfResult is one perfdhcp run.
type PerfResult struct {
	Rate     int           `json:"rate"`
	Duration time.Duration `json:"duration"`
	DO       Exchange      `json:"discover-offer"`
	RA       Exchange      `json:"request-ack"`
	Renew    Exchange      `json:"renewal-ack,omitempty"` // with -f
	RenewAt  int           `json:"renew-rate,omitempty"`
	Command  string        `json:"command"`
}

// LeasesPerSecond is completed DORA exchanges (ACKs received) per second.
func (r PerfResult) LeasesPerSecond() float64 {
	return float64(r.RA.Received) / r.Duration.Seconds()
}

// DropRatio is the share of started exchanges that did not end in an ACK.
func (r PerfResult) DropRatio() float64 {
	if r.DO.Sent == 0 {
		return 1
	}
	return 1 - float64(r.RA.Received)/float64(r.DO.Sent)
}

var (
	sectionRE = regexp.MustCompile(`\*\*\*Statistics for: ([^*]+)\*\*\*`)
	fieldRE   = regexp.MustCompile(`^(sent packets|received packets|drops): (\d+)`)
)

// ParsePerfdhcp reads the statistics perfdhcp prints at the end of a run.
func ParsePerfdhcp(out []byte) (do, ra Exchange, err error) {
	do, ra, _, err = parsePerfdhcp(out)
	return do, ra, err
}

// parsePerfdhcp also returns the renewals' exchange (perfdhcp -f).
func parsePerfdhcp(out []byte) (do, ra, renew Exchange, err error) {
	var cur *Exchange
	sc := bufio.NewScanner(bytes.NewReader(out))
	seen := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := sectionRE.FindStringSubmatch(line); m != nil {
			switch m[1] {
			case "DISCOVER-OFFER":
				cur = &do
			case "REQUEST-ACK":
				cur = &ra
			case "REQUEST-ACK (renewal)":
				cur = &renew
			default:
				cur = nil
			}
			seen++
			continue
		}
		if m := fieldRE.FindStringSubmatch(line); m != nil && cur != nil {
			n, _ := strconv.Atoi(m[2])
			switch m[1] {
			case "sent packets":
				cur.Sent = n
			case "received packets":
				cur.Received = n
			case "drops":
				cur.Drops = n
			}
		}
	}
	if seen < 2 {
		return do, ra, renew, fmt.Errorf("perfdhcp output has no DISCOVER-OFFER/REQUEST-ACK statistics:\n%s", tail(out, 20))
	}
	return do, ra, renew, nil
}

func tail(b []byte, lines int) string {
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// RunPerfdhcp runs perfdhcp in ns as a relay (giaddr = relay) against
// server at rate DORA/s with clients distinct MACs.
func RunPerfdhcp(ctx context.Context, ns *netns.NS, relay, server string, rate, clients int, d time.Duration) (PerfResult, error) {
	return runPerfdhcp(ctx, ns, relay, server, rate, 0, clients, d)
}

// RunPerfdhcpRenew is RunPerfdhcp with renewals of the leases taken at
// renew per second (perfdhcp -f), which perfdhcp caps at the DORA rate.
func RunPerfdhcpRenew(ctx context.Context, ns *netns.NS, relay, server string, rate, renew, clients int, d time.Duration) (PerfResult, error) {
	return runPerfdhcp(ctx, ns, relay, server, rate, renew, clients, d)
}

func runPerfdhcp(ctx context.Context, ns *netns.NS, relay, server string, rate, renew, clients int, d time.Duration) (PerfResult, error) {
	argv := []string{"perfdhcp", "-4", "-l", relay, "-R", strconv.Itoa(clients), "-r", strconv.Itoa(rate)}
	if renew > 0 {
		argv = append(argv, "-f", strconv.Itoa(renew))
	}
	argv = append(argv, "-p", strconv.Itoa(int(d.Seconds())), "-W", "1000000", server)
	res := PerfResult{Rate: rate, RenewAt: renew, Duration: d, Command: strings.Join(argv, " ")}
	out, err := ns.Exec(ctx, argv...)
	var perr error
	res.DO, res.RA, res.Renew, perr = parsePerfdhcp(out)
	if perr != nil {
		if err != nil {
			return res, err
		}
		return res, perr
	}
	// perfdhcp exits 3 when some exchanges were not completed: that is a
	// measurement, not a failure.
	return res, nil
}
