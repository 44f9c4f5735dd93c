// Package config reads xdhcpd's YAML configuration. Decoding is strict: an
// unknown key, a value of the wrong type and every semantic problem are
// reported together, each as FILE:LINE: field: reason.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is a validated configuration with defaults applied.
//
// Every field says in its reload tag what a reload (SIGHUP) does with it:
// "live" settings take effect at once, "restart" ones are set up once at
// start (sockets, files, listeners, the XDP attachment), so a reload only
// names them (RestartOnly), and "-" marks what is not a setting. A field
// whose type is one of this package's structs (or a slice of them) has no
// reload tag: its own fields do. TestEveryConfigFieldSaysWhatReloadDoes
// fails on a field without one, so a new setting cannot be silently left
// out of the reload warning. The yaml tags name the file's keys (checked
// against the decoding structs) so that a field is named by its path in
// the file; Config itself is never decoded from YAML.
type Config struct {
	File       string         `reload:"-"` // the file's name, for messages
	lines      map[string]int `reload:"-"` // field path → line, for MissingInterfaces
	warnings   []string       `reload:"-"` // accepted but worth saying (Warnings)
	Server     Server         `yaml:"server"`
	Fastpath   Fastpath       `yaml:"fastpath"`
	Leasequery Leasequery     `yaml:"leasequery"`
	Subnets    []Subnet       `yaml:"subnets"`
	Failover   Failover       `yaml:"failover"`
}

// Server holds daemon-wide settings.
type Server struct {
	// Interfaces are re-resolved on reload for the slow path; the XDP
	// program stays attached where it was, so while the fast path runs
	// a change waits for a restart.
	Interfaces     []string      `yaml:"interfaces" reload:"restart,when=fastpath"`
	StateDir       string        `yaml:"state-dir" reload:"restart"`
	ControlSocket  string        `yaml:"control-socket" reload:"restart"`
	MetricsListen  string        `yaml:"metrics-listen" reload:"restart"` // "" disables the metrics endpoint
	LogLevel       slog.Level    `yaml:"log-level" reload:"live"`
	Authoritative  bool          `yaml:"authoritative" reload:"live"`
	OfferHold      time.Duration `yaml:"offer-hold" reload:"live"`
	DeclineHold    time.Duration `yaml:"decline-hold" reload:"live"`
	CommitMaxDelay time.Duration `yaml:"commit-max-delay" reload:"restart"`
	CommitMaxBatch int           `yaml:"commit-max-batch" reload:"restart"`
	// FoldEvery is how often the lease journal is folded into the lease
	// tree; JournalMax how many changes may wait for it before commits
	// wait (slowpath/store).
	FoldEvery  time.Duration `yaml:"journal-fold-every" reload:"restart"`
	JournalMax int           `yaml:"journal-max" reload:"restart"`
	// OfferPoolShare is the share of a subnet's unbound pool addresses
	// that may be held as pending offers (0 turns the bound off).
	OfferPoolShare float64 `yaml:"offer-pool-share" reload:"live"`
	// OfferPerCircuit bounds pending offers per relay circuit (giaddr and
	// option 82 circuit-id; 0 turns the bound off).
	OfferPerCircuit int `yaml:"offer-per-circuit" reload:"live"`
	// Pprof serves Go's profiles (net/http/pprof) on MetricsListen under
	// /debug/pprof/, for sizing and finding where time goes (issue 19).
	Pprof bool `yaml:"pprof" reload:"restart"`
	// GCPercent is the Go collector's GOGC for the daemon (the GOGC
	// environment variable, when set, wins): how far the heap may grow
	// past what is live before a collection (DefaultGCPercent).
	GCPercent int `yaml:"gc-percent" reload:"restart"`
	// MaxWait drops a request that waited longer than this in the
	// socket before the server read it (a DISCOVER or INFORM: a quarter
	// of it); QueueTarget and QueueInterval bound the backlog by time
	// once the server has been behind for an interval, per socket (see
	// slowpath.Settings), and the lease store's queue too (the server
	// stops reading while the store is behind by more than QueueInterval:
	// slowpath.Server.Ready); DiscoverHoldoff drops a client's DISCOVERs
	// repeated within it while the DISCOVER socket is behind, and
	// RequestHoldoff its REQUESTs while the REQUEST socket is. 0 turns
	// each off.
	MaxWait         time.Duration `yaml:"max-wait" reload:"live"`
	QueueTarget     time.Duration `yaml:"queue-target" reload:"live"`
	QueueInterval   time.Duration `yaml:"queue-interval" reload:"live"`
	DiscoverHoldoff time.Duration `yaml:"discover-holdoff" reload:"live"`
	RequestHoldoff  time.Duration `yaml:"request-holdoff" reload:"live"`
	// RenewalAck says when the slow path may send a renewal's ACK:
	// RenewalAckHorizon once the lease's promise horizon on disk covers
	// the new expiry (at once when it already does, as the XDP program
	// answers), RenewalAckRecord only once the renewed record is on disk.
	RenewalAck string `yaml:"renewal-ack" reload:"restart"`
}

// The values of Server.RenewalAck.
const (
	RenewalAckHorizon = "horizon"
	RenewalAckRecord  = "record"
)

// Fastpath configures the XDP fast path.
type Fastpath struct {
	Enabled   bool          `yaml:"enabled" reload:"restart"`
	Mode      string        `yaml:"mode" reload:"restart"` // auto, native or generic
	MinGrant  time.Duration `yaml:"min-grant" reload:"live"`
	PuntRate  uint32        `yaml:"punt-rate" reload:"live"` // punts per second per client MAC
	PuntBurst uint32        `yaml:"punt-burst" reload:"live"`
	// Horizon is how far ahead the promise horizon is kept.
	Horizon time.Duration `yaml:"horizon" reload:"live"`
	// PinDir is the bpffs directory for maps, program and links.
	PinDir string `yaml:"pin-dir" reload:"restart"`
	// MaxLeases is the capacity of the XDP lease map.
	MaxLeases uint32 `yaml:"max-leases" reload:"restart"`
}

// Leasequery configures RFC 4388 / RFC 6926 service.
type Leasequery struct {
	Enabled    bool           `yaml:"enabled" reload:"live"`
	Requesters []netip.Prefix `yaml:"requesters" reload:"live"`
	// TCPListen is the bulk leasequery listener; it exists only while
	// leasequery is enabled, and is opened once at start.
	TCPListen            string        `yaml:"tcp-listen" reload:"restart,when=bulk"`
	MaxConnsPerRequester int           `yaml:"max-conns-per-requester" reload:"restart"`
	IdleTimeout          time.Duration `yaml:"idle-timeout" reload:"restart"`
}

// Subnet is one configured subnet. A reload replaces every subnet.
type Subnet struct {
	Prefix       netip.Prefix  `yaml:"subnet" reload:"live"`
	Pools        []Pool        `yaml:"pools"`
	LeaseTime    time.Duration `yaml:"lease-time" reload:"live"`
	T1           time.Duration `yaml:"t1" reload:"live"`
	T2           time.Duration `yaml:"t2" reload:"live"`
	Relays       []netip.Addr  `yaml:"relays" reload:"live"`
	ServerID     netip.Addr    `yaml:"server-id" reload:"live"` // invalid when not set
	ForceRenew   ForceRenew    `yaml:"forcerenew"`
	Options      []Option      `yaml:"options"` // wire-ready, in the contract order
	Reservations []Reservation `yaml:"reservations"`
}

// Pool is an inclusive address range (one entry of pools: "A-B" or a
// prefix in the file, or {range: A-B, drain: true}).
type Pool struct {
	Start, End netip.Addr `reload:"live"`
	// Drain: the pool is being emptied for renumbering. It makes no new
	// grants; the leases in it renew until FORCERENEW moves them.
	Drain bool `yaml:"drain" reload:"live"`
	// Independent (failover-allocation: independent, issue 18): under
	// failover the pool's lower half is the primary's and its upper half
	// the secondary's, for good: no pool balance, no POOLREQ, and no
	// binding update for a free address. For vast pools, between xdhcpd
	// partners (dhcpd knows only proportional allocation). Both sides
	// must agree (check-config --partner says when they do not); a
	// reload re-splits the pool.
	Independent bool `yaml:"failover-allocation" reload:"live"`
}

// ForceRenew is a subnet's forcerenew: section (issue 16).
type ForceRenew struct {
	// AllowUnauthenticated sends FORCERENEW, unsigned, to clients that
	// hold no key (never sent option 145). Off by default; a warning at
	// load when on.
	AllowUnauthenticated bool `yaml:"allow-unauthenticated" reload:"live"`
	// RetransmitStart is the wait after the first FORCERENEW, doubled
	// after each (default 2s).
	RetransmitStart time.Duration `yaml:"retransmit-start" reload:"live"`
	// RetransmitCount is how many FORCERENEWs a client gets before it is
	// given up on (default 8).
	RetransmitCount int `yaml:"retransmit-count" reload:"live"`
}

// Contains reports whether a is in the pool.
func (p Pool) Contains(a netip.Addr) bool { return !a.Less(p.Start) && !p.End.Less(a) }

// Size is the number of addresses in the pool.
func (p Pool) Size() uint64 { return uint64(u32(p.End)) - uint64(u32(p.Start)) + 1 }

// PoolSize is the number of addresses in all the subnet's pools.
func (s *Subnet) PoolSize() uint64 {
	var n uint64
	for _, p := range s.Pools {
		n += p.Size()
	}
	return n
}

// Option is one option's code and encoded value, rendered from the
// subnet's options block (so it has no keys of its own).
type Option struct {
	Code uint8  `reload:"live"`
	Data []byte `reload:"live"`
}

// Reservation pins an address to a client (by hardware address or client-id).
type Reservation struct {
	HWAddr   net.HardwareAddr `yaml:"hw-address" reload:"live"`
	ClientID []byte           `yaml:"client-id" reload:"live"`
	IP       netip.Addr       `yaml:"ip" reload:"live"`
	Hostname string           `yaml:"hostname" reload:"live"`
}

// Problem is one thing wrong with a configuration file.
type Problem struct {
	File   string
	Line   int
	Field  string
	Reason string
}

// String formats the problem as FILE:LINE: field: reason.
func (p Problem) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Field, p.Reason)
}

// Errors lists every problem found in a file.
type Errors struct{ Problems []Problem }

// Error lists the problems one per line.
func (e *Errors) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Errors{[]Problem{{File: path, Line: 0, Field: "(file)", Reason: err.Error()}}}
	}
	return Parse(path, b)
}

// Parse validates a configuration held in memory; name is used in messages.
func Parse(name string, data []byte) (*Config, error) {
	v := &validator{file: name, lines: map[string]int{}}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		line := syntaxLine(data, err)
		v.addLine(line, "(file)", "YAML syntax: "+lineRE.ReplaceAllString(err.Error(), ""))
		return nil, v.err()
	}
	if len(root.Content) == 0 {
		v.addLine(1, "(file)", "empty configuration")
		return nil, v.err()
	}
	v.walk(root.Content[0], "")
	v.checkKeys(root.Content[0], reflect.TypeOf(rawConfig{}), "")
	var raw rawConfig
	decodeFrom := len(v.problems)
	if err := root.Content[0].Decode(&raw); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				v.addLine(yamlLine(errors.New(m)), "(value)", strings.TrimPrefix(lineRE.ReplaceAllString(m, ""), "yaml: "))
			}
		} else {
			v.addLine(yamlLine(err), "(file)", err.Error())
		}
	}
	if len(v.problems) > decodeFrom {
		return nil, v.err() // values of the wrong type: nothing to check them against
	}
	// Unknown keys alone do not stop the checks: every problem in the
	// file is reported in one go.
	c := v.build(&raw)
	if len(v.problems) > 0 {
		return nil, v.err()
	}
	c.File = name
	c.lines = v.lines
	c.warnings = v.warnings
	return c, nil
}

// Warnings lists what the file sets that is valid but risky (such as
// FORCERENEW without authentication), each as FILE:LINE: field: reason;
// the daemon logs them at load.
func (c *Config) Warnings() []string { return slices.Clone(c.warnings) }

// MissingInterfaces returns a warning, at the entry's line, for every
// server.interfaces entry that lookup cannot find (net.InterfaceByName for
// xdhcpd). Parse cannot tell: whether an interface exists depends on the
// host (and network namespace) the file is read on, and on the moment. It
// is a warning, not an error: the daemon waits for a served interface that
// is missing (a VLAN sub-interface created after it starts), so a unit
// that runs `xdhcpd check-config` first must not fail for it; the warning
// is there for the name that is simply wrong.
func (c *Config) MissingInterfaces(lookup func(name string) error) []string {
	v := &validator{file: c.File, lines: c.lines}
	if v.lines == nil {
		v.lines = map[string]int{}
	}
	for i, n := range c.Server.Interfaces {
		if err := lookup(n); err != nil {
			v.warn(fmt.Sprintf("server.interfaces[%d]", i), "interface %q does not exist here now (%v): xdhcpd will wait for it; is the name right?", n, err)
		}
	}
	return v.warnings
}

var lineRE = regexp.MustCompile(`^(yaml: )?line (\d+): `)

func yamlLine(err error) int {
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[2])
		return n
	}
	return 1
}

// maxSyntaxSearch bounds the lines syntaxLine re-parses prefixes of (a
// configuration is far shorter; a huge file keeps yaml's own line).
const maxSyntaxSearch = 2000

// syntaxLine finds the line a YAML syntax error is on. yaml.v3 reports
// where the enclosing block began (its parser's context mark, counted
// from 0) rather than where parsing failed: a mis-indented key on line 6
// of a list item opened on line 4 comes out as "line 3". The first prefix
// of whole lines that fails with the same complaint ends on the line at
// fault (an unclosed bracket or quote: the line that opened it). Lines
// break at LF, CR LF and a lone CR, as YAML counts them.
func syntaxLine(data []byte, err error) int {
	want := lineRE.ReplaceAllString(err.Error(), "")
	var ends []int
	for i := 0; i < len(data) && len(ends) <= maxSyntaxSearch; i++ {
		switch {
		case data[i] == '\n':
			ends = append(ends, i+1)
		case data[i] == '\r' && (i+1 == len(data) || data[i+1] != '\n'):
			ends = append(ends, i+1)
		}
	}
	if len(ends) > maxSyntaxSearch {
		return yamlLine(err)
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data)) // a last line without a break
	}
	first := 0
	for k, end := range ends {
		var n yaml.Node
		perr := yaml.Unmarshal(data[:end], &n)
		if perr == nil {
			continue
		}
		if lineRE.ReplaceAllString(perr.Error(), "") == want {
			return k + 1
		}
		if first == 0 {
			first = k + 1
		}
	}
	if first > 0 {
		return first
	}
	return yamlLine(err)
}

type validator struct {
	file     string
	lines    map[string]int // field path → line
	problems []Problem
	warnings []string
}

// warn records a warning at a field path (see add).
func (v *validator) warn(path, format string, args ...any) {
	n := len(v.problems)
	v.add(path, format, args...)
	v.warnings = append(v.warnings, v.problems[n].String())
	v.problems = v.problems[:n]
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	slices.SortStableFunc(v.problems, func(a, b Problem) int { return a.Line - b.Line })
	return &Errors{v.problems}
}

func (v *validator) addLine(line int, field, reason string) {
	v.problems = append(v.problems, Problem{File: v.file, Line: line, Field: field, Reason: reason})
}

// add reports a problem at a field path, at the line of the field or of
// its nearest parent that appears in the file.
func (v *validator) add(path, format string, args ...any) {
	p := path
	line, ok := v.lines[p]
	for !ok && p != "" {
		if i := strings.LastIndexAny(p, ".["); i >= 0 {
			p = p[:i]
		} else {
			p = ""
		}
		line, ok = v.lines[p]
	}
	if line == 0 {
		line = 1
	}
	v.addLine(line, path, fmt.Sprintf(format, args...))
}

// walk records the line of every field path.
func (v *validator) walk(n *yaml.Node, path string) {
	v.lines[path] = n.Line
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := join(path, n.Content[i].Value)
			v.walk(n.Content[i+1], k)
			v.lines[k] = n.Content[i].Line
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			v.walk(c, fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// checkKeys reports keys that the target struct does not have, with the
// closest known key as a hint.
func (v *validator) checkKeys(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
				fields[tag] = t.Field(i).Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			ft, ok := fields[key]
			if !ok {
				hint := ""
				if s := closest(key, fields); s != "" {
					hint = fmt.Sprintf(" (did you mean %q?)", s)
				}
				name := key
				if name == "" {
					name = `""` // an empty key, which would otherwise leave the field blank
				}
				v.addLine(n.Content[i].Line, join(path, name), "unknown key"+hint)
				continue
			}
			v.checkKeys(n.Content[i+1], ft, join(path, key))
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, c := range n.Content {
			v.checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

func closest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for f := range fields {
		// Ties go to the first name in order: map order would make the
		// hint, and so the message, differ from one run to the next.
		if d := editDistance(key, f); d < bestD || (d == bestD && f < best) {
			best, bestD = f, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// duration parses Go durations plus a "d" (day) suffix.
func (v *validator) duration(path, s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		days, err = strconv.Atoi(n)
		d = time.Duration(days) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < 0 {
		v.add(path, "%q is not a duration (like 90s, 30m, 1h, 7d)", s)
		return def
	}
	return d
}

func (v *validator) addr(path, s string) netip.Addr {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() {
		v.add(path, "%q is not an IPv4 address", s)
		return netip.Addr{}
	}
	return a
}

func (v *validator) addrs(path string, ss []string) []netip.Addr {
	var out []netip.Addr
	for i, s := range ss {
		if a := v.addr(fmt.Sprintf("%s[%d]", path, i), s); a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// parseHex reads hex bytes with optional ':' or '-' separators.
func parseHex(s string) ([]byte, error) {
	s = strings.NewReplacer(":", "", "-", "", " ", "").Replace(s)
	if s == "" {
		return nil, errors.New("empty")
	}
	b := make([]byte, len(s)/2)
	if len(s)%2 != 0 {
		return nil, errors.New("odd number of hex digits")
	}
	for i := range b {
		x, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("%q is not hex", s[2*i:2*i+2])
		}
		b[i] = byte(x)
	}
	return b, nil
}
