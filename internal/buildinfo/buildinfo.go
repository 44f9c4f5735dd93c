// Package buildinfo answers --help and --version the same way for every
// xdhcp command: before any other check (a missing binary, root or
// configuration must not stand between an operator and the usage text).
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Version describes the binary name was built as: the module version, the
// VCS revision and time it was built from (with "+dirty" when the tree had
// uncommitted changes) and the Go version. Parts the build did not record
// (go run, a build outside a repository) are left out rather than guessed.
func Version(name string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return name + " (no build information in this binary)"
	}
	parts := []string{name}
	if v := bi.Main.Version; v != "" {
		parts = append(parts, v)
	}
	var rev, when, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		parts = append(parts, "revision "+rev+dirty)
	} else {
		parts = append(parts, "revision unknown (built without VCS information)")
	}
	if when != "" {
		parts = append(parts, "committed "+when)
	}
	parts = append(parts, "built with "+bi.GoVersion)
	return strings.Join(parts, ", ")
}

// Asks reports which of help or version args ask for, looking at every
// argument up to a "--" terminator: "-h", "-help" and "--help" ask for
// help, "-version" and "--version" for the version. Help wins when both
// are given. Flags taking values are not told apart from the rest: a value
// spelled "--help" is taken as a request for help, which is harmless.
func Asks(args []string) (help, version bool) {
	for _, a := range args {
		switch a {
		case "--":
			return help, version
		case "-h", "-help", "--help":
			help = true
		case "-version", "--version":
			version = true
		}
	}
	return help, version && !help
}
