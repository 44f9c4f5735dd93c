package config

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestEveryConfigFieldSaysWhatReloadDoes walks every field of Config, down
// through its structs and lists of structs: each leaf carries a valid
// reload tag (so a new setting cannot escape the reload warning by being
// forgotten), a field holding structs carries none (its fields do), and
// every restart-only field has a key, so that the warning names it by its
// path in the file.
func TestEveryConfigFieldSaysWhatReloadDoes(t *testing.T) {
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			p := path + "." + f.Name
			if isConfigStruct(f.Type) {
				if _, ok := f.Tag.Lookup("reload"); ok {
					t.Errorf("%s holds structs of this package: its fields say what a reload does, not it", p)
				}
				elem := f.Type
				if elem.Kind() == reflect.Slice {
					elem = elem.Elem()
				}
				walk(elem, p)
				continue
			}
			tag, err := parseReloadTag(f)
			if err != nil {
				t.Errorf("%s: %v", p, err)
				continue
			}
			if tag.class == reloadRestart && strings.Split(f.Tag.Get("yaml"), ",")[0] == "" {
				t.Errorf("%s is restart-only but has no yaml key to be named by", p)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "Config")
}

// TestConfigKeysAreTheFilesKeys: each yaml key on Config's fields is a key
// the file has at the same place (the decoding structs say which), so a
// warning names what the operator wrote.
func TestConfigKeysAreTheFilesKeys(t *testing.T) {
	elem := func(t reflect.Type) reflect.Type {
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			return t.Elem()
		}
		return t
	}
	var check func(cfg, raw reflect.Type, path string)
	check = func(cfg, raw reflect.Type, path string) {
		rawKeys := map[string]reflect.Type{}
		if raw != nil && raw.Kind() == reflect.Struct {
			for i := range raw.NumField() {
				rawKeys[strings.Split(raw.Field(i).Tag.Get("yaml"), ",")[0]] = raw.Field(i).Type
			}
		}
		for i := range cfg.NumField() {
			f := cfg.Field(i)
			key := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if key == "" {
				continue
			}
			rt, ok := rawKeys[key]
			if !ok {
				t.Errorf("%s.%s: the file has no key %q here", path, f.Name, key)
				continue
			}
			if isConfigStruct(f.Type) {
				var sub reflect.Type
				if e := elem(rt); e.Kind() == reflect.Struct {
					sub = e
				}
				check(elem(f.Type), sub, path+"."+key)
			}
		}
	}
	check(reflect.TypeOf(Config{}), reflect.TypeOf(rawConfig{}), "")
}

// reloadBase has every list the walk below reaches, and the conditions of
// both conditional fields hold in it.
const reloadBase = `server:
  interfaces: [veth-srv]
  state-dir: /var/lib/xdhcp
fastpath:
  enabled: true
leasequery:
  enabled: true
  requesters: [10.78.0.2]
  tcp-listen: ":6767"
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.0.199]
    relays: [10.77.0.1]
    server-id: 10.77.0.2
    options:
      routers: [10.77.0.1]
    reservations:
      - {hw-address: "02:00:00:00:00:01", ip: 10.77.0.42, hostname: a}
      - {client-id: "01:02:03", ip: 10.77.0.43}
failover:
  name: pair
  role: primary
  peer: 10.77.0.3
  listen: 10.77.0.2
`

// leaf is one leaf field of a Config value, reached through the first
// element of each list.
type leaf struct {
	path  string // its path in the file
	tag   reloadTag
	value reflect.Value // settable
}

func leaves(t *testing.T, v reflect.Value, path string) []leaf {
	t.Helper()
	var out []leaf
	typ := v.Type()
	for i := range typ.NumField() {
		f := typ.Field(i)
		p := fieldPath(path, f)
		fv := v.Field(i)
		if isConfigStruct(f.Type) {
			if f.Type.Kind() == reflect.Slice {
				if fv.Len() == 0 {
					t.Fatalf("%s is empty in the base configuration: its fields would go unchecked", p)
				}
				fv, p = fv.Index(0), p+"[0]"
			}
			out = append(out, leaves(t, fv, p)...)
			continue
		}
		tag, err := parseReloadTag(f)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if tag.class == reloadNone {
			continue
		}
		out = append(out, leaf{path: p, tag: tag, value: fv})
	}
	return out
}

// change sets v to a different value of its type.
func change(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	switch x := v.Interface().(type) {
	case netip.Addr:
		v.Set(reflect.ValueOf(x.Next()))
		return
	case netip.Prefix:
		v.Set(reflect.ValueOf(netip.PrefixFrom(x.Addr(), x.Bits()-1)))
		return
	case net.HardwareAddr:
		v.Set(reflect.ValueOf(append(net.HardwareAddr{x[0] ^ 0x80}, x[1:]...)))
		return
	case netip.AddrPort:
		v.Set(reflect.ValueOf(netip.AddrPortFrom(x.Addr(), x.Port()+1)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 0.25)
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.New(v.Type().Elem()).Elem()))
	case reflect.Array:
		change(t, path, v.Index(0))
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		} else {
			v.SetZero()
		}
	default:
		t.Fatalf("%s: no way to change a %s here; teach change", path, v.Type())
	}
}

// TestRestartOnlyNamesEachRestartField changes each leaf of a configuration
// in turn: a restart-only one is named, by its path, and a live one is
// not. The only live field that names another is leasequery.enabled,
// which starts or stops the bulk listener (leasequery.tcp-listen). The
// restart-only fields found are today's, listed once here for review.
func TestRestartOnlyNamesEachRestartField(t *testing.T) {
	parse := func() *Config {
		t.Helper()
		c, err := Parse("x.yaml", []byte(reloadBase))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	running := parse()
	if got := RestartOnly(running, parse()); got != nil {
		t.Fatalf("the same file again names %q", got)
	}
	alsoNames := map[string][]string{"leasequery.enabled": {"leasequery.tcp-listen"}}
	var restart []string
	live := 0
	for i, l := range leaves(t, reflect.ValueOf(parse()).Elem(), "") {
		name := fmt.Sprintf("%d:%s", i, l.path)
		t.Run(name, func(t *testing.T) {
			next := parse()
			// The same leaf in a fresh copy.
			ls := leaves(t, reflect.ValueOf(next).Elem(), "")
			before := fmt.Sprint(ls[i].value.Interface())
			change(t, l.path, ls[i].value)
			if after := fmt.Sprint(ls[i].value.Interface()); after == before {
				t.Fatalf("the change left %s at %s", l.path, before)
			}
			var want []string
			if l.tag.class == reloadRestart {
				w := l.path
				if c, _ := conditionNamed(l.tag.when); c.note != "" {
					w += " (" + c.note + ")"
				}
				want = []string{w}
			}
			want = append(want, alsoNames[l.path]...)
			if got := RestartOnly(running, next); !slices.Equal(got, want) {
				t.Fatalf("changing %s (%s): RestartOnly = %q, want %q", l.path, l.tag.class, got, want)
			}
		})
		if l.tag.class == reloadRestart {
			restart = append(restart, l.path)
		} else {
			live++
		}
	}
	// What the tags say must be what the daemon does: cmd/xdhcpd sets
	// these up once at start (sockets, files, listeners, the XDP
	// attachment) and applies every other setting on reload. A change to
	// this list is a change to the daemon's reload; make both together.
	wantRestart := []string{
		"server.interfaces", "server.state-dir", "server.control-socket", "server.metrics-listen",
		"server.commit-max-delay", "server.commit-max-batch", "server.journal-fold-every", "server.journal-max", "server.pprof", "server.gc-percent", "server.renewal-ack",
		"fastpath.enabled", "fastpath.mode", "fastpath.pin-dir", "fastpath.max-leases",
		"leasequery.tcp-listen", "leasequery.max-conns-per-requester", "leasequery.idle-timeout",
		// The relationship's connection and state outlive a reload.
		"failover.name", "failover.role", "failover.peer", "failover.listen", "failover.mclt", "failover.hba",
		"failover.max-response-delay", "failover.max-unacked-updates", "failover.load-balance-max-seconds",
		"failover.auto-partner-down", "failover.max-lease-misbalance", "failover.max-lease-ownership",
		"failover.min-balance", "failover.max-balance", "failover.max-skew", "failover.tls",
	}
	if !slices.Equal(restart, wantRestart) {
		t.Errorf("restart-only settings %q, want %q", restart, wantRestart)
	}
	if live < 20 { // a walk that found nothing would pass the loop above
		t.Fatalf("walked %d live fields; the configuration has more", live)
	}
}

// TestRestartOnlyConditions: server.interfaces matters only while the fast
// path is on (before and after; its turning on or off is fastpath.enabled's
// warning), leasequery.tcp-listen only while the bulk listener exists, and
// its starting or stopping is a change of tcp-listen.
func TestRestartOnlyConditions(t *testing.T) {
	const base = `server:
  interfaces: [veth-srv]
  state-dir: /var/lib/xdhcp
fastpath:
  enabled: false
leasequery:
  enabled: false
  requesters: [10.78.0.2]
  tcp-listen: ":6767"
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.0.199]
`
	parse := func(y string) *Config {
		t.Helper()
		c, err := Parse("x.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	edit := func(y string, pairs ...string) string {
		t.Helper()
		for i := 0; i < len(pairs); i += 2 {
			z := strings.Replace(y, pairs[i], pairs[i+1], 1)
			if z == y {
				t.Fatalf("edit %q did not apply", pairs[i])
			}
			y = z
		}
		return y
	}
	const (
		xdpOn    = "fastpath:\n  enabled: true"
		xdpOff   = "fastpath:\n  enabled: false"
		lqOn     = "leasequery:\n  enabled: true"
		lqOff    = "leasequery:\n  enabled: false"
		twoIfs   = "[veth-srv, veth-two]"
		oneIf    = "[veth-srv]"
		listen   = `":6767"`
		noListen = `""`
	)
	for _, tc := range []struct {
		name     string
		from, to string
		want     []string
	}{
		{"interfaces without the fast path apply live", base, edit(base, oneIf, twoIfs), nil},
		{"interfaces under XDP", edit(base, xdpOff, xdpOn), edit(base, xdpOff, xdpOn, oneIf, twoIfs), []string{"server.interfaces (XDP attachment)"}},
		{"fast path on, interfaces too", base, edit(base, xdpOff, xdpOn, oneIf, twoIfs), []string{"fastpath.enabled"}},
		{"fast path off, interfaces too", edit(base, xdpOff, xdpOn), edit(base, oneIf, twoIfs), []string{"fastpath.enabled"}},
		{"tcp-listen without leasequery", base, edit(base, listen, `":6768"`), nil},
		{"tcp-listen under leasequery", edit(base, lqOff, lqOn), edit(base, lqOff, lqOn, listen, `":6768"`), []string{"leasequery.tcp-listen"}},
		{"leasequery on starts the listener", base, edit(base, lqOff, lqOn), []string{"leasequery.tcp-listen"}},
		{"leasequery off stops it", edit(base, lqOff, lqOn), base, []string{"leasequery.tcp-listen"}},
		{"leasequery on without a listener", edit(base, listen, noListen), edit(base, lqOff, lqOn, listen, noListen), nil},
		{"listener set under leasequery", edit(base, lqOff, lqOn, listen, noListen), edit(base, lqOff, lqOn), []string{"leasequery.tcp-listen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RestartOnly(parse(tc.from), parse(tc.to)); !slices.Equal(got, tc.want) {
				t.Fatalf("RestartOnly = %q, want %q", got, tc.want)
			}
		})
	}
}

// reloadItem and reloadList are a configuration shape Config does not
// have yet: a restart-only field inside a list.
type reloadItem struct {
	Name string `yaml:"name" reload:"restart"`
	Note string `yaml:"note" reload:"live"`
}

type reloadList struct {
	Items []reloadItem `yaml:"items"`
}

// TestRestartOnlyInsideLists: a restart-only field in a list is named with
// its index; an element added or removed names its restart-only fields
// that are set.
func TestRestartOnlyInsideLists(t *testing.T) {
	diff := func(a, b reloadList) []string {
		var out []string
		diffStruct(reflect.ValueOf(a), reflect.ValueOf(b), "", nil, nil, &out)
		return out
	}
	one := reloadList{[]reloadItem{{Name: "a", Note: "x"}}}
	for _, tc := range []struct {
		name string
		to   reloadList
		want []string
	}{
		{"same", reloadList{[]reloadItem{{Name: "a", Note: "x"}}}, nil},
		{"live field", reloadList{[]reloadItem{{Name: "a", Note: "y"}}}, nil},
		{"restart field", reloadList{[]reloadItem{{Name: "b", Note: "x"}}}, []string{"items[0].name"}},
		{"added", reloadList{[]reloadItem{{Name: "a", Note: "x"}, {Name: "c"}}}, []string{"items[1].name"}},
		{"added, only live fields set", reloadList{[]reloadItem{{Name: "a", Note: "x"}, {Note: "z"}}}, nil},
		{"removed", reloadList{}, []string{"items[0].name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := diff(one, tc.to); !slices.Equal(got, tc.want) {
				t.Fatalf("diff = %q, want %q", got, tc.want)
			}
		})
	}
}
