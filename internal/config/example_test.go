package config_test

import (
	"fmt"
	"log"

	"github.com/xdhcp/xdhcp/internal/config"
)

const exampleYAML = `server:
  interfaces: [eth1]
  state-dir: /var/lib/xdhcp
fastpath:
  enabled: true
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.0.199, 10.77.0.240/29]
    lease-time: 2h
    options:
      routers: [10.77.0.1]
      dns-servers: [10.77.0.1]
`

// Parse validates a file held in memory and fills in the defaults: T1 and
// T2 from the lease time, the fast path's horizon from the longest lease,
// and the subnet's option block, rendered once in wire order.
func ExampleParse() {
	c, err := config.Parse("xdhcpd.yaml", []byte(exampleYAML))
	if err != nil {
		log.Fatal(err)
	}
	s := c.Subnets[0]
	fmt.Println("subnet:", s.Prefix, "addresses in pools:", s.PoolSize())
	fmt.Println("lease time:", s.LeaseTime, "T1:", s.T1, "T2:", s.T2)
	fmt.Println("fast path:", c.Fastpath.Enabled, c.Fastpath.Mode, "horizon:", c.Fastpath.Horizon, "min grant:", c.Fastpath.MinGrant)
	for _, o := range s.Options {
		fmt.Printf("option %d: % x\n", o.Code, o.Data)
	}
	fmt.Println("control socket:", c.Server.ControlSocket)
	// Output:
	// subnet: 10.77.0.0/24 addresses in pools: 106
	// lease time: 2h0m0s T1: 1h0m0s T2: 1h45m0s
	// fast path: true auto horizon: 8h0m0s min grant: 1m0s
	// option 1: ff ff ff 00
	// option 3: 0a 4d 00 01
	// option 6: 0a 4d 00 01
	// control socket: /run/xdhcp/xdhcpd.sock
}

// A bad file is refused with every problem at once, each as
// FILE:LINE: field: reason (docs/ARCHITECTURE.md invariant 7).
func ExampleParse_errors() {
	_, err := config.Parse("xdhcpd.yaml", []byte(`server:
  interfaces: [eth1]
  state-dir: /var/lib/xdhcp
  offer-hold: 500ms
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.1.20]
    lease-tme: 1h
`))
	fmt.Println(err)
	// Output:
	// xdhcpd.yaml:4: server.offer-hold: 500ms is too short (minimum 1s): an address offered to one client could be offered to the next before the first asks for it
	// xdhcpd.yaml:7: subnets[0].pools[0]: 10.77.0.100-10.77.1.20 is outside subnet 10.77.0.0/24
	// xdhcpd.yaml:8: subnets[0].lease-tme: unknown key (did you mean "lease-time"?)
}

// On SIGHUP the daemon reloads its file; RestartOnly names, by their path
// in the file, the changed settings that only a restart applies (here the
// state directory). The pool change applies at once.
func ExampleRestartOnly() {
	running, err := config.Parse("xdhcpd.yaml", []byte(exampleYAML))
	if err != nil {
		log.Fatal(err)
	}
	next, err := config.Parse("xdhcpd.yaml", []byte(`server:
  interfaces: [eth1]
  state-dir: /srv/xdhcp
fastpath:
  enabled: true
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.0.149]
    lease-time: 2h
`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(config.RestartOnly(running, next))
	// Output:
	// [server.state-dir]
}
