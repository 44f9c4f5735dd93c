// Command xdhcpd is the xdhcp DHCPv4 server daemon.
//
//	xdhcpd --config FILE                run the server
//	xdhcpd check-config --config FILE [--partner FILE]   validate a configuration and exit
//	xdhcpd detach --config FILE         remove the fast path
//	xdhcpd [COMMAND] --help | --version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/xdhcp/xdhcp/internal/buildinfo"
	"github.com/xdhcp/xdhcp/internal/config"
	"github.com/xdhcp/xdhcp/loader"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  xdhcpd [--config FILE]                run the server (default config /etc/xdhcp/xdhcpd.yaml)
  xdhcpd check-config [--config FILE] [--partner FILE]   validate the configuration (and that a failover partner's matches) and exit
  xdhcpd detach [--config FILE]         remove the XDP program, its links and pinned maps
  xdhcpd COMMAND --help                 that command's usage
  xdhcpd --version                      build information
`

// commandUsage is each command's own --help.
var commandUsage = map[string]string{
	"serve": `usage: xdhcpd [serve] [--config FILE]
Runs the server: the slow path, and the XDP fast path when fastpath.enabled.
  --config FILE   configuration (default /etc/xdhcp/xdhcpd.yaml)
`,
	"check-config": `usage: xdhcpd check-config [--config FILE] [--partner FILE]
Validates the configuration, including that every server.interfaces entry
exists here, and exits 0 printing "FILE: ok", or 1 listing FILE:LINE: field: problem.
With --partner, also that the failover partner's configuration (its xdhcpd
YAML or its ISC dhcpd.conf) matches: the relationship's name, opposite
roles, each side's address for the other, and identical pools (each range
on one side only is named).
  --config FILE    configuration (default /etc/xdhcp/xdhcpd.yaml)
  --partner FILE   the failover partner's xdhcpd configuration or dhcpd.conf
`,
	"detach": `usage: xdhcpd detach [--config FILE]
Removes the XDP program from every interface and deletes its pinned maps,
program and links under the configured fastpath.pin-dir.
  --config FILE   configuration (default /etc/xdhcp/xdhcpd.yaml)
`,
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	explicit := len(args) > 0 && args[0] != "" && args[0][0] != '-'
	if explicit {
		cmd, args = args[0], args[1:]
	}
	// Help and version come before anything else can fail.
	if cmd == "help" {
		if len(args) > 0 && commandUsage[args[0]] != "" {
			fmt.Fprint(stdout, commandUsage[args[0]])
		} else {
			fmt.Fprint(stdout, usage)
		}
		return 0
	}
	if help, version := buildinfo.Asks(args); help || version {
		switch {
		case version:
			fmt.Fprintln(stdout, buildinfo.Version("xdhcpd"))
		case explicit && commandUsage[cmd] != "":
			fmt.Fprint(stdout, commandUsage[cmd])
		default:
			fmt.Fprint(stdout, usage)
		}
		return 0
	}
	fs := flag.NewFlagSet("xdhcpd "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	path := fs.String("config", "/etc/xdhcp/xdhcpd.yaml", "configuration file")
	partner := ""
	if cmd == "check-config" {
		fs.StringVar(&partner, "partner", "", "the failover partner's configuration (xdhcpd YAML or dhcpd.conf)")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xdhcpd %s: unexpected argument %q\n%s", cmd, fs.Arg(0), usage)
		return 2
	}
	switch cmd {
	case "check-config":
		cfg, err := config.Load(*path)
		var missing []string
		if err == nil {
			// Where the daemon will run: a name that is wrong is said
			// here, though the daemon would wait for it.
			missing = cfg.MissingInterfaces(func(name string) error {
				_, err := net.InterfaceByName(name)
				return err
			})
		}
		if err == nil {
			_, err = failoverTLS(&cfg.Failover)
		}
		if err == nil && partner != "" {
			var p *config.Partner
			if p, err = config.LoadPartner(partner); err == nil {
				err = cfg.CheckPartner(p)
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		for _, w := range append(cfg.Warnings(), missing...) {
			fmt.Fprintln(stderr, "warning: "+w)
		}
		if partner != "" {
			fmt.Fprintf(stdout, "%s: ok; failover partner %s matches\n", *path, partner)
			return 0
		}
		fmt.Fprintf(stdout, "%s: ok\n", *path)
		return 0
	case "detach":
		cfg, err := config.Load(*path)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if err := loader.DetachAll(cfg.Fastpath.PinDir); err != nil {
			fmt.Fprintf(stderr, "xdhcpd detach: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "detached: %s removed\n", cfg.Fastpath.PinDir)
		return 0
	case "serve":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := serve(ctx, *path, stderr); err != nil {
			var ce *config.Errors
			if errors.As(err, &ce) {
				fmt.Fprintln(stderr, err)
				return 1
			}
			fmt.Fprintf(stderr, "xdhcpd: %v\n", err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(stderr, "xdhcpd: unknown command %q\n%s", cmd, usage)
		return 2
	}
}
