package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Reload classes, the values of a Config field's reload tag.
const (
	reloadLive    = "live"    // applied by a reload
	reloadRestart = "restart" // set up once at start; a reload names it
	reloadNone    = "-"       // not a setting (the file's name, line numbers)
)

// condition says when a conditional restart-only field matters
// (reload:"restart,when=NAME").
type condition struct {
	// holds reports whether the thing the field configures exists in c.
	holds func(c *Config) bool
	// flipNamed: the condition is itself a restart-only setting, so when
	// it flips, that setting is what the warning names, and this field
	// is not named again.
	flipNamed bool
	// note follows the field's path in the warning.
	note string
}

// conditionNamed maps the names used in reload tags to their conditions
// (a switch rather than a package map: nothing here may be changed at run
// time).
func conditionNamed(name string) (condition, bool) {
	switch name {
	case "fastpath":
		// The XDP program is attached to server.interfaces only while the
		// fast path is enabled; turning it on or off is fastpath.enabled's
		// own warning.
		return condition{
			holds:     func(c *Config) bool { return c.Fastpath.Enabled },
			flipNamed: true,
			note:      "XDP attachment",
		}, true
	case "bulk":
		// The bulk leasequery listener exists only while leasequery is
		// enabled and tcp-listen is set. leasequery.enabled applies live to
		// UDP leasequery, so the listener starting or stopping is named as
		// a change of leasequery.tcp-listen.
		return condition{
			holds: func(c *Config) bool { return c.Leasequery.Enabled && c.Leasequery.TCPListen != "" },
		}, true
	}
	return condition{}, false
}

// reloadTag is a parsed reload tag.
type reloadTag struct {
	class string // reloadLive, reloadRestart or reloadNone
	when  string // a condition's name, or ""
}

func parseReloadTag(f reflect.StructField) (reloadTag, error) {
	v, ok := f.Tag.Lookup("reload")
	if !ok {
		return reloadTag{}, fmt.Errorf("field %s has no reload tag", f.Name)
	}
	class, rest, _ := strings.Cut(v, ",")
	t := reloadTag{class: class}
	switch class {
	case reloadLive, reloadNone:
		if rest != "" {
			return t, fmt.Errorf("field %s: reload:%q: only restart takes a condition", f.Name, v)
		}
	case reloadRestart:
		if rest != "" {
			name, ok := strings.CutPrefix(rest, "when=")
			if !ok {
				return t, fmt.Errorf("field %s: reload:%q: want restart,when=NAME", f.Name, v)
			}
			if _, ok := conditionNamed(name); !ok {
				return t, fmt.Errorf("field %s: reload:%q: no condition %q", f.Name, v, name)
			}
			t.when = name
		}
	default:
		return t, fmt.Errorf("field %s: reload:%q is not live, restart or -", f.Name, v)
	}
	return t, nil
}

// isConfigStruct reports whether t is one of this package's structs (or a
// slice of them), whose fields carry the reload tags instead of the field
// of that type.
func isConfigStruct(t reflect.Type) bool {
	if t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && t.PkgPath() == reflect.TypeOf(Config{}).PkgPath()
}

// RestartOnly names, by their path in the file, the settings that differ
// between running (what the daemon started with) and next (a reloaded
// file) but that a reload cannot apply, so that the operator is not left
// believing them. Which settings those are comes from Config's reload
// tags, so a new field is classed where it is declared. A restart-only
// field inside a list is named with its index (subnets[2].x).
func RestartOnly(running, next *Config) []string {
	var out []string
	diffStruct(reflect.ValueOf(running).Elem(), reflect.ValueOf(next).Elem(), "", running, next, &out)
	return out
}

func diffStruct(a, b reflect.Value, path string, running, next *Config, out *[]string) {
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		p := fieldPath(path, f)
		fa, fb := a.Field(i), b.Field(i)
		if isConfigStruct(f.Type) {
			if f.Type.Kind() == reflect.Struct {
				diffStruct(fa, fb, p, running, next, out)
				continue
			}
			// A list of structs: element by element, a missing element
			// standing for one with every field unset.
			zero := reflect.New(f.Type.Elem()).Elem()
			for j := range max(fa.Len(), fb.Len()) {
				ea, eb := zero, zero
				if j < fa.Len() {
					ea = fa.Index(j)
				}
				if j < fb.Len() {
					eb = fb.Index(j)
				}
				diffStruct(ea, eb, fmt.Sprintf("%s[%d]", p, j), running, next, out)
			}
			continue
		}
		tag, err := parseReloadTag(f)
		if err != nil {
			// TestEveryConfigFieldSaysWhatReloadDoes keeps this from
			// happening; if it did, naming the field errs on the side of
			// a restart.
			*out = append(*out, p+" ("+err.Error()+")")
			continue
		}
		if tag.class != reloadRestart {
			continue
		}
		changed := !sameValue(fa, fb)
		name := p
		if tag.when != "" {
			c, _ := conditionNamed(tag.when)
			was, is := c.holds(running), c.holds(next)
			switch {
			case was && is:
			case !was && !is:
				changed = false
			default: // the thing the field configures starts or stops
				changed = !c.flipNamed
			}
			if c.note != "" {
				name += " (" + c.note + ")"
			}
		}
		if changed {
			*out = append(*out, name)
		}
	}
}

// fieldPath is the field's path in the file: its yaml key under the
// parent's path, or the parent's own path for a value with no key of its
// own (a pool's ends, an option's code).
func fieldPath(parent string, f reflect.StructField) string {
	key := strings.Split(f.Tag.Get("yaml"), ",")[0]
	switch {
	case key == "":
		if parent == "" {
			return f.Name
		}
		return parent
	case parent == "":
		return key
	}
	return parent + "." + key
}

// sameValue compares two leaf values; an empty list equals a missing one.
func sameValue(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}
