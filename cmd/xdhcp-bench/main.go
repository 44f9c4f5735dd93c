// Command xdhcp-bench is the benchmark rig.
//
//	xdhcp-bench compare --xdhcpd PATH [--quick] [--servers xdhcpd,kea,dhcpd] [--out DIR]
//	xdhcp-bench startup --xdhcpd PATH [--leases N] [--out DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/xdhcp/xdhcp/bench"
)

const usage = `usage:
  xdhcp-bench all --xdhcpd PATH [--quick] [--out DIR]         everything below, in one report
  xdhcp-bench compare --xdhcpd PATH [--quick] [--servers xdhcpd,kea,dhcpd] [--clients N] [--step 30s] [--out DIR]
  xdhcp-bench leasequery --xdhcpd PATH [--quick] [--out DIR]   UDP leasequery/s and bulk leases/s
  xdhcp-bench startup --xdhcpd PATH [--leases 1000000] [--out DIR]
  xdhcp-bench renew --xdhcpd PATH [--quick] [--out DIR]     renewals/s with XDP native, generic and off; XDP cost per packet
Runs as root: it creates network namespaces.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("xdhcp-bench "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	bin := fs.String("xdhcpd", "bin/xdhcpd", "xdhcpd binary")
	fs.String("xdhcpctl", "bin/xdhcpctl", "xdhcpctl binary (unused; kept for symmetry with make bench)")
	out := fs.String("out", "bench/results", "where reports are written")
	quick := fs.Bool("quick", false, "short steps, fewer clients (about a minute)")
	servers := fs.String("servers", "xdhcpd,kea,dhcpd,dhcpd-16k-pool", "servers to compare")
	clients := fs.Int("clients", 100000, "distinct clients (perfdhcp -R)")
	step := fs.Duration("step", 30*time.Second, "length of each perfdhcp run")
	leases := fs.Int("leases", 1000000, "leases in the startup database")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xdhcp-bench: unexpected argument %q\n%s", fs.Arg(0), usage)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "xdhcp-bench: needs root (network namespaces)")
		return 1
	}
	if _, err := os.Stat(*bin); err != nil {
		fmt.Fprintf(stderr, "xdhcp-bench: --xdhcpd %s: %v\n", *bin, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rig, err := bench.NewRig()
	if err != nil {
		fmt.Fprintf(stderr, "xdhcp-bench: %v\n", err)
		return 1
	}
	defer rig.Close()
	rep := &bench.Report{Date: time.Now()}
	rep.Environment()
	x := bench.Xdhcpd{Bin: *bin}
	steps := map[string]func() error{
		"compare": func() error {
			o := bench.CompareOptions{Clients: *clients, StepTime: *step, Start: 1000, Bisect: 3, Log: stdout}
			if *quick {
				o.Clients, o.StepTime, o.Bisect = 20000, 5*time.Second, 1
			}
			for _, name := range strings.Split(*servers, ",") {
				switch strings.TrimSpace(name) {
				case "xdhcpd":
					o.Servers = append(o.Servers, x)
				case "kea":
					o.Servers = append(o.Servers, bench.Kea{})
				case "dhcpd":
					o.Servers = append(o.Servers, bench.Dhcpd{})
				case "dhcpd-16k-pool":
					o.Servers = append(o.Servers, bench.Dhcpd{SmallPool: true})
				default:
					return fmt.Errorf("unknown server %q (xdhcpd, kea, dhcpd, dhcpd-16k-pool)", name)
				}
			}
			rep.Clients, rep.StepTime = o.Clients, o.StepTime.String()
			for _, s := range o.Servers {
				fmt.Fprintf(stdout, "%s (%s):\n", s.Name(), s.Version())
				rep.Results = append(rep.Results, rig.FindRate(ctx, s, o))
			}
			return nil
		},
		"renew": func() error {
			n, d := 20000, 10*time.Second
			if *quick {
				n, d = 5000, 4*time.Second
			}
			for _, fast := range []string{"", "native", "generic"} {
				s := bench.Xdhcpd{Bin: *bin, Fast: fast}
				fmt.Fprintf(stdout, "%s: %d leases, renewing for %v...\n", s.Name(), n, d)
				r := rig.Renewals(ctx, s, n, d)
				fmt.Fprintf(stdout, "  %.0f answered/s, loss %.2f%%, wrong %d %s\n", r.Rate, 100*r.Loss, r.Wrong, r.Err)
				rep.Renew = append(rep.Renew, r)
			}
			fmt.Fprintln(stdout, "XDP program cost (BPF_PROG_TEST_RUN)...")
			cost, err := bench.XDPCost(ctx, 1_000_000)
			if err != nil {
				return fmt.Errorf("xdp cost: %w", err)
			}
			rep.Cost = cost
			return nil
		},
		"leasequery": func() error {
			n, d := 100_000, 10*time.Second
			if *quick {
				n, d = 20_000, 3*time.Second
			}
			fmt.Fprintf(stdout, "leasequery: %d leases...\n", n)
			res := rig.Leasequery(ctx, x, n, d)
			fmt.Fprintf(stdout, "  UDP %.0f answered/s, bulk %.0f leases/s %s\n", res.UDPRate, res.BulkRate, res.Err)
			rep.LQ = &res
			return nil
		},
		"startup": func() error {
			n := *leases
			if *quick {
				n = min(n, 200_000)
			}
			fmt.Fprintf(stdout, "writing %d leases and starting xdhcpd...\n", n)
			res, err := rig.Startup(ctx, x, n)
			if err != nil {
				return fmt.Errorf("startup: %w", err)
			}
			rep.Startup = res
			return nil
		},
	}
	order := []string{cmd}
	if cmd == "all" {
		order = []string{"compare", "renew", "leasequery", "startup"}
	}
	for _, c := range order {
		f, ok := steps[c]
		if !ok {
			fmt.Fprintf(stderr, "xdhcp-bench: unknown command %q\n%s", cmd, usage)
			return 2
		}
		if err := f(); err != nil {
			fmt.Fprintf(stderr, "xdhcp-bench: %v\n", err)
			return 1
		}
	}
	md, err := rep.Write(*out)
	if err != nil {
		fmt.Fprintf(stderr, "xdhcp-bench: writing report: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "\n%s\nreport: %s\n", rep.Markdown(), md)
	return 0
}
