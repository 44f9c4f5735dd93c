package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/internal/lqclient"
)

// lqFlags are leasequery's flags, defined in one place for parsing and
// for --help.
type lqFlags struct {
	server, giaddr, ip, mac, cid, relayID, remoteID, start, end *string
	bulk, asJSON                                                *bool
	timeout                                                     *time.Duration
}

func newLeasequeryFlags(out io.Writer) (*flag.FlagSet, lqFlags) {
	fs := flag.NewFlagSet("xdhcpctl leasequery", flag.ContinueOnError)
	fs.SetOutput(out)
	return fs, lqFlags{
		server:   fs.String("server", "", "server address (port 67 unless given)"),
		giaddr:   fs.String("giaddr", "", "our address: put in giaddr for UDP (replies come back to it); the source address for --bulk"),
		ip:       fs.String("ip", "", "query by IP address"),
		mac:      fs.String("mac", "", "query by hardware address"),
		cid:      fs.String("client-id", "", "query by client identifier (hex, colons allowed)"),
		relayID:  fs.String("relay-id", "", "bulk: query by relay-id, 82.12 (hex)"),
		remoteID: fs.String("remote-id", "", "bulk: query by remote-id, 82.2 (hex)"),
		bulk:     fs.Bool("bulk", false, "RFC 6926 bulk leasequery over TCP"),
		asJSON:   fs.Bool("json", false, "print JSON"),
		timeout:  fs.Duration("wait", 3*time.Second, "how long to wait for the answer; with --bulk, for each next reply (a long answer may take longer in all)"),
		start:    fs.String("start-time", "", "bulk: only bindings that changed at or after this time (RFC 3339 or unix seconds)"),
		end:      fs.String("end-time", "", "bulk: only bindings that changed at or before this time (RFC 3339 or unix seconds)"),
	}
}

// leasequeryUsage is `xdhcpctl leasequery --help`.
func leasequeryUsage(w io.Writer) {
	fmt.Fprint(w, `usage: xdhcpctl leasequery --server ADDR --giaddr ADDR (--ip IP | --mac MAC | --client-id HEX | --relay-id HEX | --remote-id HEX) [--bulk] [--json]
Asks an RFC 4388 server over UDP (sent from giaddr:67, so run it where
giaddr is a local address) or, with --bulk, an RFC 6926 server over TCP.
`)
	fs, _ := newLeasequeryFlags(w)
	fs.PrintDefaults()
}

// leasequery runs `xdhcpctl leasequery`.
func leasequery(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newLeasequeryFlags(stderr)
	server, giaddr, ip, mac, cid, relayID, remoteID := f.server, f.giaddr, f.ip, f.mac, f.cid, f.relayID, f.remoteID
	bulk, asJSON, timeout, start, end := f.bulk, f.asJSON, f.timeout, f.start, f.end
	if err := fs.Parse(args); err != nil {
		return 2
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "xdhcpctl leasequery: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	q := lqclient.Query{XID: rand.Uint32()}
	var err error
	if q.Server, err = parseServer(*server); err != nil {
		return bad("--server: %v", err)
	}
	if *giaddr != "" {
		if q.GIAddr, err = netip.ParseAddr(*giaddr); err != nil || !q.GIAddr.Is4() {
			return bad("--giaddr %q is not an IPv4 address", *giaddr)
		}
	} else if !*bulk {
		return bad("--giaddr is required for UDP queries")
	}
	if *ip != "" {
		if q.IP, err = netip.ParseAddr(*ip); err != nil || !q.IP.Is4() {
			return bad("--ip %q is not an IPv4 address", *ip)
		}
	}
	if *mac != "" {
		if q.MAC, err = net.ParseMAC(*mac); err != nil {
			return bad("--mac: %v", err)
		}
	}
	for _, f := range []struct {
		name, val string
		dst       *[]byte
	}{{"client-id", *cid, &q.ClientID}, {"relay-id", *relayID, &q.RelayID}, {"remote-id", *remoteID, &q.RemoteID}} {
		if f.val == "" {
			continue
		}
		if *f.dst, err = hex.DecodeString(strings.ReplaceAll(f.val, ":", "")); err != nil || len(*f.dst) == 0 || len(*f.dst) > 255 {
			return bad("--%s %q is not 1 to 255 bytes of hex", f.name, f.val)
		}
	}
	for _, f := range []struct {
		name, val string
		dst       *time.Time
	}{{"start-time", *start, &q.Start}, {"end-time", *end, &q.End}} {
		if f.val == "" {
			continue
		}
		if *f.dst, err = parseTime(f.val); err != nil {
			return bad("--%s: %v", f.name, err)
		}
	}
	if _, err := q.Message(*bulk); err != nil {
		return bad("%v", err)
	}
	if *timeout <= 0 {
		return bad("--wait must be positive")
	}
	print := func(r *lqclient.Reply) error {
		if *asJSON {
			b, _ := json.Marshal(r)
			fmt.Fprintln(stdout, string(b))
		} else {
			fmt.Fprintln(stdout, r)
		}
		return nil
	}
	if *bulk {
		q.Idle = *timeout
		err = lqclient.Bulk(ctx, q, print)
	} else {
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		var r *lqclient.Reply
		if r, err = lqclient.UDP(ctx, q); err == nil {
			err = print(r)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "xdhcpctl leasequery: %v\n", err)
		if !*bulk && errors.Is(err, os.ErrDeadlineExceeded) {
			fmt.Fprint(stderr, deniedHint(q.GIAddr))
		}
		return 1
	}
	return 0
}

// deniedHint explains a UDP query that got no answer. RFC 4388 lets a
// server ignore queries from requesters it does not serve, and xdhcpd
// does (answering would tell a stranger which addresses are in use), so
// the only place the refusal shows is the server's side: say where.
func deniedHint(giaddr netip.Addr) string {
	return fmt.Sprintf(`  A leasequery server stays silent to requesters it does not accept. If the
  server is xdhcpd, check that %s is listed under leasequery.requesters
  (and leasequery.enabled is true); a refused query is counted there in
  xdhcp_slowpath_dropped_total{reason="leasequery_denied"} and logged as
  "leasequery from a requester not in leasequery.requesters".
`, giaddr)
}

// parseTime reads an RFC 3339 time or unix seconds.
func parseTime(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor unix seconds", s)
	}
	return t, nil
}

func parseServer(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, errors.New("required")
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IPv4 address[:port]", s)
	}
	return netip.AddrPortFrom(a, 67), nil
}
