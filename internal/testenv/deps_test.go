package testenv

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The module's root, from this package's directory.
const root = "../.."

// baseCommands may be executed without being in the Makefile's DEB_CMDS:
// each comes with every Debian install (a package marked Essential, so
// apt cannot remove it), or is the toolchain that runs the tests at all.
var baseCommands = map[string]string{
	"sh": "dash (Essential)", "bash": "bash (Essential)",
	"cat": "coreutils", "cp": "coreutils", "env": "coreutils", "head": "coreutils",
	"mkdir": "coreutils", "mktemp": "coreutils", "rm": "coreutils", "seq": "coreutils",
	"sleep": "coreutils", "tail": "coreutils", "true": "coreutils", "uname": "coreutils",
	"id": "coreutils", "dirname": "coreutils",
	"grep": "grep (Essential)", "sed": "sed (Essential)", "xargs": "findutils (Essential)",
	"kill": "util-linux (Essential) and a shell builtin", "mount": "mount (Essential)", "umount": "mount (Essential)",
	"go":   "the Go toolchain that runs the tests (README: installed first)",
	"make": "runs make deps itself (.ci/run)",
}

// builtSelf are executed by path, not by name from PATH: binaries the
// tests build or the test binary itself. Each entry names the function
// (file:func) whose exec of a non-literal command is accounted for; file:*
// covers a whole file, and dir/*_test.go:* every test file of a package.
var builtSelf = map[string]string{
	"slowpath/store/store_test.go:TestKill9LosesNothingAcknowledged": "re-executes the test binary (os.Args[0])",
	"cmd/xdhcpd/*_test.go:*":                                           "the end-to-end tests run the xdhcpd and xdhcpctl they build (l.ctl, l.xdhcpd)",
	"bench/startup.go:*":                                               "runs the xdhcpd given with --xdhcpd (x.Bin)",
	"bench/scenario.go:*":                                              "starts servers through the Server interface (Kea, Dhcpd, Xdhcpd), each collected where it execs",
	"bench/flood.go:Flood":                                             "reads the --version of the xdhcpd given with --xdhcpd (x.Bin)",
	"bench/flood.go:flood1":                                            "starts servers through the Server interface (Kea, Xdhcpd), each collected where it execs",
	"bench/xdpoverload.go:xdpOverload":                                 "starts the xdhcpd given with --xdhcpd through the Server interface (Xdhcpd), collected where it execs",
	"bench/compare.go:*":                                               "starts servers through the Server interface; firstLine's callers pass literals",
	"bench/leasequery.go:*":                                            "runs the xdhcpd given with --xdhcpd (x.Bin)",
	"bench/forcerenew.go:ForceRenew":                                   "runs the xdhcpd given with --xdhcpd (o.Bin)",
	"bench/failover.go:Start":                                          "runs the xdhcpd given with --xdhcpd (x.Bin), primary and secondary",
	"bench/failover.go:startSecondary":                                 "runs the xdhcpd given with --xdhcpd (x.Bin) as the secondary; dhcpd is a literal there",
	"bench/failover_catchup.go:catchup":                                "runs the xdhcpd given with --xdhcpd (o.Bin), primary and secondary",
	"bench/failover_recovery.go:FailoverRecovery":                      "runs the xdhcpd given with --xdhcpd (o.Bin): the pair, then the restarted secondary",
	"bench/servers.go:*":                                               "runs the xdhcpd given with --xdhcpd (x.Bin)",
	"bench/perfdhcp.go:runPerfdhcp":                                    "argv built in the function; its []string literal names perfdhcp",
	"internal/netns/netns.go:*":                                        "the wrappers themselves: argv from their callers, collected there",
	"internal/testenv/testenv.go:RequireCommands":                      "looks up its callers' names, collected there",
	"internal/testenv/testenv_test.go:TestSkipFailsOnlyUnderCI":        "re-executes the test binary (os.Args[0])",
	"internal/netns/netns_test.go:TestForTestCleansUpWhenTheTestFails": "re-executes the test binary (os.Args[0])",
}

// deliberatelyMissing is the command testenv's own test asks for so that
// it is missing.
const deliberatelyMissing = "xdhcp-no-such-command"

// wrappers run their argument as a command: name -> index of the first
// command argument (Go call sites), or -1 when every argument from index
// 1 on is a command name (needTools, RequireCommands).
var wrappers = map[string]int{
	"Command": 0, "LookPath": 0, "CommandContext": 1,
	"Exec": 1, "ExecHostMounts": 1, "Start": 1, "StartHostMounts": 1,
	"firstLine": 0,
	"needTools": -1, "RequireCommands": -1,
}

type site struct{ cmd, where string }

// debCmds parses DEB_CMDS (with its continuation lines) from the Makefile.
func debCmds(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatalf("reading the Makefile: %v", err)
	}
	var val strings.Builder
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if !in {
			if rest, ok := strings.CutPrefix(line, "DEB_CMDS :="); ok {
				line, in = rest, true
			} else {
				continue
			}
		}
		more := strings.HasSuffix(line, "\\")
		val.WriteString(strings.TrimSuffix(line, "\\") + " ")
		if !more {
			break
		}
	}
	got := map[string]bool{}
	for _, c := range strings.Fields(val.String()) {
		got[c] = true
	}
	if len(got) == 0 {
		t.Fatal("no DEB_CMDS in the Makefile")
	}
	return got
}

// goCommands collects the commands Go code executes by name.
func goCommands(t *testing.T) (found []site, unresolved []site) {
	t.Helper()
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == ".git" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		// go generate runs bpf2go, which runs the compiler and strip tool
		// named by -cc and -strip.
		for _, cg := range f.Comments {
			for _, c := range cg.List {
				words := strings.Fields(strings.TrimPrefix(c.Text, "//go:generate "))
				if !strings.HasPrefix(c.Text, "//go:generate ") {
					continue
				}
				found = append(found, site{words[0], rel + " (go:generate)"})
				for i := 0; i+1 < len(words); i++ {
					if words[i] == "-cc" || words[i] == "-strip" {
						found = append(found, site{words[i+1], rel + " (go:generate)"})
					}
				}
			}
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			where := rel + ":" + fn.Name.Name
			f, u := funcCommands(fset, fn.Body, where)
			found = append(found, f...)
			unresolved = append(unresolved, u...)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("parsing the module's Go files: %v", err)
	}
	return found, unresolved
}

// funcCommands looks through one function body.
func funcCommands(fset *token.FileSet, body *ast.BlockStmt, where string) (found, unresolved []site) {
	at := func(n ast.Node) string { return where + " (" + fset.Position(n.Pos()).String() + ")" }
	// The first literal of each []string{...} in the function, for
	// argv slices built before the call (perfdhcp's argv, Veth's steps).
	var slices []site
	ast.Inspect(body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CompositeLit:
			if at, ok := n.Type.(*ast.ArrayType); ok {
				if id, ok := at.Elt.(*ast.Ident); ok && id.Name == "string" && len(n.Elts) > 0 {
					// Flags, paths and phrases are not command names.
					if s, ok := strLit(n.Elts[0]); ok && !strings.HasPrefix(s, "-") && !strings.ContainsAny(s, " /=") {
						slices = append(slices, site{s, ""})
					}
				}
			}
		case *ast.BasicLit:
			// Hook scripts written from Go (udhcpc -s).
			if s, ok := strLit(n); ok && (strings.HasPrefix(s, "#!/bin/sh\n") || strings.HasPrefix(s, "#!/bin/bash\n")) {
				for _, c := range shellCommands(s) {
					found = append(found, site{c, at(n)})
				}
			}
		case *ast.CallExpr:
			name := ""
			switch fn := n.Fun.(type) {
			case *ast.SelectorExpr:
				name = fn.Sel.Name
			case *ast.Ident:
				name = fn.Name
			}
			if name == "sh" && len(n.Args) == 2 { // the e2e lab's l.sh(ns, script)
				if s, ok := strLit(leftmost(n.Args[1])); ok {
					for _, c := range shellCommands(s) {
						found = append(found, site{c, at(n)})
					}
				}
				return true
			}
			i, ok := wrappers[name]
			if !ok {
				return true
			}
			if i < 0 {
				for _, a := range n.Args[1:] {
					if s, ok := strLit(a); ok {
						found = append(found, site{s, at(n)})
					}
				}
				return true
			}
			if len(n.Args) <= i {
				return true
			}
			s, ok := strLit(n.Args[i])
			if !ok {
				// Start and Exec are also other types' methods (a
				// server's Start(ctx, ns, dir)); only a string-typed
				// argument can be a command, which is what is unknown.
				unresolved = append(unresolved, site{"", at(n)})
				return true
			}
			argv := []string{s}
			for _, a := range n.Args[i+1:] {
				s, _ := strLit(leftmost(a))
				argv = append(argv, s)
			}
			for _, c := range unwrap(argv) {
				found = append(found, site{c, at(n)})
			}
		}
		return true
	})
	// Not where the test binary re-executes itself: its []string
	// literals are its cases, not argv.
	if len(unresolved) > 0 && !strings.Contains(builtSelf[where], "os.Args[0]") {
		for _, s := range slices {
			found = append(found, site{s.cmd, where + " ([]string argv)"})
		}
	}
	return found, unresolved
}

// unwrap returns the commands an argv runs: argv[0], and what sh -c,
// env, nsenter and ip netns exec run in turn.
func unwrap(argv []string) []string {
	if len(argv) == 0 || argv[0] == "" {
		return nil
	}
	cmds := []string{argv[0]}
	rest := argv[1:]
	switch argv[0] {
	case "sh", "bash":
		if len(rest) >= 2 && rest[0] == "-c" {
			cmds = append(cmds, shellCommands(rest[1])...)
		}
	case "env":
		for len(rest) > 0 && strings.Contains(rest[0], "=") {
			rest = rest[1:]
		}
		cmds = append(cmds, unwrap(rest)...)
	case "nsenter":
		for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
			done := rest[0] == "--"
			rest = rest[1:]
			if done {
				break
			}
		}
		cmds = append(cmds, unwrap(rest)...)
	case "ip":
		if len(rest) >= 3 && rest[0] == "netns" && rest[1] == "exec" {
			cmds = append(cmds, unwrap(rest[3:])...)
		}
	}
	return cmds
}

// leftmost is the first operand of a string concatenation.
func leftmost(e ast.Expr) ast.Expr {
	for {
		b, ok := e.(*ast.BinaryExpr)
		if !ok || b.Op != token.ADD {
			return e
		}
		e = b.X
	}
}

func strLit(e ast.Expr) (string, bool) {
	l, ok := e.(*ast.BasicLit)
	if !ok || l.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(l.Value)
	return s, err == nil
}

var (
	// Separators of simple commands, once quoted text is gone.
	shellSplit = regexp.MustCompile(`&&|\|\||[;|&()` + "`" + `\n]|\bthen\b|\bdo\b|\belse\b`)
	shellFunc  = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(\)`)
	heredoc    = regexp.MustCompile(`<<-?\s*['"]?([A-Za-z_]+)`)
	singleQ    = regexp.MustCompile(`'[^']*'`)
	doubleQ    = regexp.MustCompile(`"(\\.|[^"\\])*"`)
	arith      = regexp.MustCompile(`\$\(\([^)]*\)\)`)
	braces     = regexp.MustCompile(`\$\{[^}]*\}`)
	subst      = regexp.MustCompile(`\$\(([^()]*)\)`)
	// A case pattern (bound|renew) is not a command.
	casePattern = regexp.MustCompile(`(^|\s|;;)[A-Za-z0-9_*.|-]+\)`)
	cmdName     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.+-]*$`)
	// Keywords and builtins (bash and dash): nothing to install.
	shellIgnore = map[string]bool{
		"if": true, "fi": true, "while": true, "until": true, "done": true, "esac": true, "elif": true,
		"function": true, "{": true, "}": true, "!": true, "break": true, "continue": true,
		"echo": true, "printf": true, "cd": true, "set": true, "trap": true, "local": true, "return": true,
		"exit": true, "export": true, "command": true, "read": true, "shift": true, "wait": true, ":": true,
		".": true, "source": true, "eval": true, "exec": true, "test": true, "unset": true, "false": true,
	}
)

// shellCommands returns the commands a shell script runs, by name: the
// first word of each simple command (command substitutions included),
// past assignments and keywords, and what xargs, env, nsenter and ip
// netns exec run. Words naming a path or a variable ($BIN/xdhcpd) are the
// script's own binaries and not listed; heredoc bodies are data.
func shellCommands(script string) []string {
	funcs := map[string]bool{}
	var text strings.Builder
	sc := bufio.NewScanner(strings.NewReader(script))
	end := ""
	for sc.Scan() {
		line := sc.Text()
		if end != "" {
			if strings.TrimSpace(line) == end {
				end = ""
			}
			continue
		}
		if m := heredoc.FindStringSubmatch(line); m != nil && !strings.Contains(line, "<<<") {
			end = m[1]
		}
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		if m := shellFunc.FindStringSubmatch(line); m != nil {
			funcs[m[1]] = true
		}
		text.WriteString(line + "\n")
	}
	s := singleQ.ReplaceAllString(text.String(), " 'Q' ")
	s = arith.ReplaceAllString(s, "$V")
	s = braces.ReplaceAllString(s, "$V")
	// Command substitutions run even inside double quotes: each is a
	// script of its own (innermost first), replaced by a value.
	var parts []string
	for {
		m := subst.FindAllStringSubmatch(s, -1)
		if m == nil {
			break
		}
		for _, c := range m {
			parts = append(parts, shellSplit.Split(doubleQ.ReplaceAllString(c[1], " 'Q' "), -1)...)
		}
		s = subst.ReplaceAllString(s, "$V")
	}
	s = doubleQ.ReplaceAllString(s, " 'Q' ")
	s = casePattern.ReplaceAllString(s, "$1")
	parts = append(parts, shellSplit.Split(s, -1)...)
	var cmds []string
	for _, part := range parts {
		words := strings.Fields(part)
		for len(words) > 0 && (strings.Contains(words[0], "=") || shellIgnore[words[0]]) {
			words = words[1:]
		}
		if len(words) == 0 {
			continue
		}
		switch w := words[0]; {
		case w == "for" || w == "case" || w == "in" || w == "[" || w == "[[":
			// a loop header, a case pattern or a test: no command
		case funcs[w] || !cmdName.MatchString(w):
			// the script's own function, a path, a variable
		case w == "xargs":
			rest := words[1:]
			for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
				rest = rest[1:]
			}
			cmds = append(cmds, "xargs")
			cmds = append(cmds, unwrap(rest)...)
		default:
			cmds = append(cmds, unwrap(words)...)
		}
	}
	named := cmds[:0]
	for _, c := range cmds { // what the wrappers run may be a path too
		if cmdName.MatchString(c) {
			named = append(named, c)
		}
	}
	return named
}

// scriptCommands collects the commands of examples/*.sh and .ci/*.
func scriptCommands(t *testing.T) []site {
	t.Helper()
	var paths []string
	for _, g := range []string{"examples/*.sh", ".ci/*"} {
		m, err := filepath.Glob(filepath.Join(root, g))
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, m...)
	}
	if len(paths) == 0 {
		t.Fatal("no scripts under examples/ or .ci/")
	}
	var found []site
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		for _, c := range shellCommands(string(b)) {
			found = append(found, site{c, rel})
		}
	}
	return found
}

// uncovered lists, per command, where it is executed, for each command
// neither in deb nor in baseCommands.
func uncovered(sites []site, deb map[string]bool) map[string][]string {
	out := map[string][]string{}
	for _, s := range sites {
		if deb[s.cmd] || baseCommands[s.cmd] != "" || s.cmd == deliberatelyMissing {
			continue
		}
		out[s.cmd] = append(out[s.cmd], s.where)
	}
	return out
}

func allCommands(t *testing.T) []site {
	t.Helper()
	found, unresolved := goCommands(t)
	for _, u := range unresolved {
		file, _, _ := strings.Cut(u.where, " ")
		path, _, _ := strings.Cut(file, ":")
		dirTests := ""
		if strings.HasSuffix(path, "_test.go") {
			dirTests = path[:strings.LastIndex(path, "/")+1] + "*_test.go:*"
		}
		if builtSelf[file] == "" && builtSelf[path+":*"] == "" && builtSelf[dirTests] == "" {
			t.Errorf("%s executes a command that is not a string literal; name it literally, or account for it in builtSelf with a reason", u.where)
		}
	}
	return append(found, scriptCommands(t)...)
}

// TestMakeDepsCoversEveryCommand: everything the code, the tests, the
// demo and the CI scripts execute is installed by make deps (DEB_CMDS) or
// comes with every Debian system.
func TestMakeDepsCoversEveryCommand(t *testing.T) {
	sites := allCommands(t)
	deb := debCmds(t)
	bad := uncovered(sites, deb)
	var names []string
	for c := range bad {
		names = append(names, c)
	}
	sort.Strings(names)
	for _, c := range names {
		t.Errorf("%q is executed but make deps neither installs nor checks it (add it to DEB_CMDS and its package to DEB_PKGS); executed at %v", c, bad[c])
	}
	// Every DEB_CMDS entry is used somewhere, or the list only grows.
	used := map[string]bool{}
	for _, s := range sites {
		used[s.cmd] = true
	}
	var all []string
	for c := range used {
		all = append(all, c)
	}
	sort.Strings(all)
	t.Logf("commands executed: %v", all)
	for c := range deb {
		if !used[c] {
			t.Errorf("DEB_CMDS has %q, which nothing executes", c)
		}
	}
}

// TestDepsCheckCatchesAMissingCommand is the check's positive control:
// with ping taken out of DEB_CMDS (the case that broke a fresh machine),
// it is reported, at the netns test that runs it.
func TestDepsCheckCatchesAMissingCommand(t *testing.T) {
	sites := allCommands(t)
	deb := debCmds(t)
	for _, c := range []string{"ping", "udhcpc", "pkill", "perfdhcp", "kea-dhcp4", "clang-14"} {
		if !deb[c] {
			t.Fatalf("%s is not in DEB_CMDS", c)
		}
		without := map[string]bool{}
		for k := range deb {
			without[k] = k != c
		}
		where := uncovered(sites, without)[c]
		if len(where) == 0 {
			t.Errorf("with %s removed from DEB_CMDS nothing is reported", c)
		}
		if c == "ping" && !strings.Contains(strings.Join(where, " "), "internal/netns/netns_test.go") {
			t.Errorf("ping reported at %v, want internal/netns/netns_test.go among them", where)
		}
	}
}
