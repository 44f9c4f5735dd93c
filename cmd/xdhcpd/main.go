// Command xdhcpd is the xdhcp DHCPv4 server daemon.
//
//	xdhcpd --config FILE                run the server
//	xdhcpd check-config --config FILE   validate a configuration and exit
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/xdhcp/xdhcp/internal/config"
	"github.com/xdhcp/xdhcp/loader"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  xdhcpd [--config FILE]                run the server (default config /etc/xdhcp/xdhcpd.yaml)
  xdhcpd check-config [--config FILE]   validate the configuration and exit
  xdhcpd detach [--config FILE]         remove the XDP program, its links and pinned maps
`

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("xdhcpd "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	path := fs.String("config", "/etc/xdhcp/xdhcpd.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xdhcpd %s: unexpected argument %q\n%s", cmd, fs.Arg(0), usage)
		return 2
	}
	switch cmd {
	case "check-config":
		if _, err := config.Load(*path); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
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
