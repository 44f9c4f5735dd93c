// Command xdhcpctl is the operator's client for a running xdhcpd.
//
//	xdhcpctl [--socket PATH] leases [--json]
//	xdhcpctl [--socket PATH] lease get IP|MAC|CLIENT-ID [--json]
//	xdhcpctl [--socket PATH] stats
//	xdhcpctl [--socket PATH] reload
//	xdhcpctl [--socket PATH] forcerenew (--ip IP | --mac MAC | --client-id ID | --subnet CIDR | --pool A-B) [--move] [--rate N/s] [--wait] [--json]
//	xdhcpctl [--socket PATH] forcerenew status [ID] | stop ID
//	xdhcpctl [COMMAND] --help | --version
//	xdhcpctl leasequery --server ADDR --giaddr ADDR (--ip IP | --mac MAC | --client-id HEX | --relay-id HEX | --remote-id HEX) [--bulk] [--json]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/xdhcp/xdhcp/internal/buildinfo"
	"github.com/xdhcp/xdhcp/internal/control"
)

const usage = `usage: xdhcpctl [--socket PATH] COMMAND
commands:
  leases [--json]                       list every lease
  lease get IP|MAC|CLIENT-ID [--json]   show the leases of an address or client
  stats                                 server statistics (JSON)
  reload                                re-read the configuration (like SIGHUP)
  forcerenew (--ip IP | --mac MAC | --client-id HEX | --subnet CIDR | --pool A-B) [--move] [--rate N/s] [--wait] [--json]
                                        make clients renew now (RFC 3203), one or a campaign
  forcerenew status [ID] | stop ID      follow or stop campaigns
  failover status [--json]              the failover relationship: states, updates, pools, what it waits for
  failover partner-down --yes           declare the partner down (only when it really is)
  leasequery --server ADDR --giaddr ADDR (--ip IP | --mac MAC | --client-id HEX | --relay-id HEX | --remote-id HEX) [--bulk] [--json]
                                        ask any RFC 4388 server (UDP, sent from giaddr:67) or,
                                        with --bulk, an RFC 6926 server over TCP
  COMMAND --help                        that command's usage
options: --socket PATH (default /run/xdhcp/xdhcpd.sock), --timeout D (default 30s), --version
`

// commandUsage is each command's own --help; leasequery's lists its flags
// from the flag set itself.
var commandUsage = map[string]string{
	"leases": `usage: xdhcpctl [--socket PATH] leases [--json]
Lists every lease the daemon holds, as a table or, with --json, as JSON.
`,
	"lease": `usage: xdhcpctl [--socket PATH] lease get IP|MAC|CLIENT-ID [--json]
Shows the lease of an address, or every lease of a hardware address or
client identifier (hex, colons optional); exits 1 when there is none.
`,
	"stats": `usage: xdhcpctl [--socket PATH] stats
Prints the daemon's statistics as JSON: uptime, leases, pools, the store,
and the fast path (attached, and whether it outlives the daemon).
`,
	"reload": `usage: xdhcpctl [--socket PATH] reload
Re-reads the configuration, as SIGHUP does; a bad file is refused with its
problems and the running configuration keeps serving.
`,
	"forcerenew": forcerenewUsage,
	"failover":   failoverUsage,
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xdhcpctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	sock := fs.String("socket", "/run/xdhcp/xdhcpd.sock", "daemon control socket")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the daemon")
	// Help and version come before anything else can fail.
	if help, version := buildinfo.Asks(args); help || version {
		return helpOrVersion(args, help, stdout)
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) > 0 && rest[0] == "help" {
		return helpOrVersion(rest[1:], true, stdout)
	}
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cmd, rest := rest[0], rest[1:]
	sub := flag.NewFlagSet("xdhcpctl "+cmd, flag.ContinueOnError)
	sub.SetOutput(stderr)
	asJSON := sub.Bool("json", false, "print JSON")
	fail := func(err error) int { fmt.Fprintf(stderr, "xdhcpctl: %v\n", err); return 1 }
	if cmd == "leasequery" {
		return leasequery(ctx, rest, stdout, stderr)
	}
	if cmd == "failover" {
		return failoverCmd(ctx, rest, *sock, stdout, stderr)
	}
	if cmd == "forcerenew" {
		// --timeout bounds each call to the daemon, not --wait.
		return forcerenew(rest, *sock, *timeout, stdout, stderr)
	}
	switch cmd {
	case "leases":
		if err := sub.Parse(rest); err != nil || sub.NArg() > 0 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		var ls []control.LeaseInfo
		if err := control.Call(ctx, *sock, "leases", nil, &ls); err != nil {
			return fail(err)
		}
		printLeases(stdout, ls, *asJSON)
	case "lease":
		if len(rest) < 2 || rest[0] != "get" {
			fmt.Fprint(stderr, usage)
			return 2
		}
		key := rest[1]
		if err := sub.Parse(rest[2:]); err != nil || sub.NArg() > 0 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		var ls []control.LeaseInfo
		if err := control.Call(ctx, *sock, "lease", map[string]string{"key": key}, &ls); err != nil {
			return fail(err)
		}
		if len(ls) == 0 && !*asJSON {
			fmt.Fprintf(stderr, "xdhcpctl: no lease for %s\n", key)
			return 1
		}
		printLeases(stdout, ls, *asJSON)
	case "stats", "reload":
		if len(rest) > 0 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		var v any
		if err := control.Call(ctx, *sock, cmd, nil, &v); err != nil {
			return fail(err)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(v)
	default:
		fmt.Fprintf(stderr, "xdhcpctl: unknown command %q\n%s", cmd, usage)
		return 2
	}
	return 0
}

// helpOrVersion prints the version, or the usage of the first command
// named in args (the general usage when there is none).
func helpOrVersion(args []string, help bool, stdout io.Writer) int {
	if !help {
		fmt.Fprintln(stdout, buildinfo.Version("xdhcpctl"))
		return 0
	}
	for _, a := range args {
		if a == "leasequery" {
			leasequeryUsage(stdout)
			return 0
		}
		if u, ok := commandUsage[a]; ok {
			fmt.Fprint(stdout, u)
			return 0
		}
	}
	fmt.Fprint(stdout, usage)
	return 0
}

func printLeases(w io.Writer, ls []control.LeaseInfo, asJSON bool) {
	if asJSON {
		if ls == nil {
			ls = []control.LeaseInfo{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(ls)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IP\tSTATE\tHW-ADDRESS\tCLIENT-ID\tEXPIRES\tSUBNET\tHOSTNAME")
	for _, l := range ls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.IP, l.State, dash(l.HWAddress), dash(l.ClientID), dash(l.Expires), dash(l.Subnet), dash(l.Hostname))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
