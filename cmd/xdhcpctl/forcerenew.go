package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/internal/control"
)

const forcerenewUsage = `usage: xdhcpctl [--socket PATH] forcerenew (--ip IP | --mac MAC | --client-id HEX | --subnet CIDR | --pool A-B) [--move] [--rate N/s] [--wait] [--json]
       xdhcpctl [--socket PATH] forcerenew status [ID] [--json]
       xdhcpctl [--socket PATH] forcerenew stop ID [--json]
Sends DHCPFORCERENEW (RFC 3203, signed as RFC 6704 says) to one client or,
as a campaign at a bounded rate, to every client a selector matches, so
that they renew now instead of at T1. The daemon keeps a campaign on disk:
it goes on after xdhcpctl exits and resumes after a daemon restart.

  --ip IP          the client holding this address
  --mac MAC        every lease of this hardware address
  --client-id HEX  every lease of this client identifier (colons allowed)
  --subnet CIDR    every lease in this subnet
  --pool A-B       every lease in this address range (e.g. a draining pool)
  --move           make the clients leave their addresses: their renewal is
                   NAKed and they are given an address where the
                   configuration now says (mark the old pool drain: true and
                   reload first)
  --rate N/s       clients forced per second (also N/m, N/h; a plain N is
                   per second; "unlimited" sets no bound); default 100/s,
                   so that a large pool's answers do not all come at once
  --wait           follow the campaign to its end: a progress bar on a
                   terminal, a line every few seconds otherwise, then the
                   report; Ctrl-C stops following, not the campaign
  --json           print the campaign as JSON (with --wait: once, at the end)

status lists every campaign, or shows one; stop ends one (clients it has not
reached keep their leases as they are). Clients that cannot be forced (they
sent no FORCERENEW key, option 145, or never answered) are listed in the
report: they renew, and move, at their next T1.

Exit status: 0 done (or started, without --wait); 3 done, but some clients
could not be forced or the campaign was stopped; 1 the daemon refused or
could not be reached; 2 bad usage.
`

// defaultRate is --rate when it is not given: clients forced per second.
// Each forced client costs the slow path a REQUEST (and with --move a NAK
// and a DORA), so an unbounded campaign over a large pool would arrive as
// one burst.
const defaultRate = 100

// exitNotForced is the exit status of a campaign that ended with clients
// it could not force: a script renumbering a pool needs to know without
// parsing the report.
const exitNotForced = 3

// frCommand is a parsed `xdhcpctl forcerenew` command line.
type frCommand struct {
	action string // "start", "status" or "stop"
	id     string // status (optional) and stop
	args   control.ForceRenewArgs
	wait   bool
	asJSON bool
}

// selectorFlags are the flags that choose clients, in the order the usage
// names them.
var selectorFlags = []string{"ip", "mac", "client-id", "subnet", "pool"}

// parseForceRenew reads the arguments after `forcerenew`. Every mistake
// is an error that says what is wrong with which argument.
func parseForceRenew(args []string) (frCommand, error) {
	var c frCommand
	if len(args) > 0 && (args[0] == "status" || args[0] == "stop") {
		c.action = args[0]
		fs := newFlagSet("forcerenew " + c.action)
		fs.BoolVar(&c.asJSON, "json", false, "")
		pos, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return c, err
		}
		switch {
		case len(pos) > 1:
			return c, fmt.Errorf("%s takes one campaign id, got %q", c.action, pos)
		case len(pos) == 1:
			c.id = pos[0]
		case c.action == "stop":
			return c, errors.New("stop needs the campaign id (xdhcpctl forcerenew status lists them)")
		}
		return c, nil
	}
	c.action = "start"
	fs := newFlagSet("forcerenew")
	vals := map[string]*string{}
	for _, name := range selectorFlags {
		vals[name] = fs.String(name, "", "")
	}
	rate := fs.String("rate", "", "")
	c.args.Rate = defaultRate
	fs.BoolVar(&c.args.Move, "move", false, "")
	fs.BoolVar(&c.wait, "wait", false, "")
	fs.BoolVar(&c.asJSON, "json", false, "")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return c, err
	}
	if len(pos) > 0 {
		return c, fmt.Errorf("unexpected argument %q (a selector is given as --ip, --mac, --client-id, --subnet or --pool)", pos[0])
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var given []string
	for _, name := range selectorFlags {
		if set[name] {
			given = append(given, "--"+name)
		}
	}
	switch len(given) {
	case 0:
		return c, errors.New("say which clients: one of --ip, --mac, --client-id, --subnet or --pool")
	case 1:
	default:
		return c, fmt.Errorf("give exactly one selector, not %s", strings.Join(given, " and "))
	}
	name := given[0][2:]
	if err := setSelector(&c.args, name, *vals[name]); err != nil {
		return c, fmt.Errorf("--%s: %w", name, err)
	}
	if set["rate"] {
		if c.args.Rate, err = parseRate(*rate); err != nil {
			return c, fmt.Errorf("--rate: %w", err)
		}
	}
	return c, nil
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// Errors are returned and printed once by the caller, with a pointer
	// to --help, rather than the flag package's dump of every flag.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseInterleaved parses flags that may come before, between or after
// positional arguments ("status ID --json" as well as "status --json ID"),
// and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// setSelector checks one selector value and stores it in canonical form.
func setSelector(a *control.ForceRenewArgs, name, v string) error {
	v = strings.TrimSpace(v)
	if v == "" {
		return errors.New("empty")
	}
	switch name {
	case "ip":
		ip, err := netip.ParseAddr(v)
		if err != nil || !ip.Is4() {
			return fmt.Errorf("%q is not an IPv4 address", v)
		}
		a.IP = ip.String()
	case "mac":
		hw, err := net.ParseMAC(v)
		if err != nil {
			return fmt.Errorf("%q is not a hardware address (e.g. 02:00:00:00:00:01)", v)
		}
		a.MAC = hw.String()
	case "client-id":
		b, err := hex.DecodeString(strings.NewReplacer(":", "", "-", "").Replace(v))
		if err != nil || len(b) < 2 || len(b) > 255 {
			// RFC 2132 §9.14: at least 2 bytes (a type and an identifier).
			return fmt.Errorf("%q is not 2 to 255 bytes of hex", v)
		}
		a.ClientID = hex.EncodeToString(b)
	case "subnet":
		p, err := netip.ParsePrefix(v)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("%q is not an IPv4 prefix (e.g. 10.77.0.0/24)", v)
		}
		if p.Masked() != p {
			return fmt.Errorf("%s has host bits set; did you mean %s?", p, p.Masked())
		}
		a.Subnet = p.String()
	case "pool":
		lo, hi, ok := strings.Cut(v, "-")
		a1, err1 := netip.ParseAddr(strings.TrimSpace(lo))
		a2, err2 := netip.ParseAddr(strings.TrimSpace(hi))
		if !ok || err1 != nil || err2 != nil || !a1.Is4() || !a2.Is4() {
			return fmt.Errorf("%q is not a range of IPv4 addresses A-B (e.g. 10.77.0.100-10.77.0.199)", v)
		}
		if a2.Less(a1) {
			return fmt.Errorf("%q ends before it starts", v)
		}
		a.Pool = a1.String() + "-" + a2.String()
	}
	return nil
}

// parseRate reads "N/s", "N/m", "N/min", "N/h" or a plain N (per second)
// and returns clients per second; "unlimited" is 0, as the daemon takes it.
func parseRate(s string) (float64, error) {
	if strings.TrimSpace(s) == "unlimited" {
		return 0, nil
	}
	num, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	per := 1.0
	switch unit {
	case "", "s", "sec":
	case "m", "min":
		per = 60
	case "h":
		per = 3600
	default:
		return 0, fmt.Errorf("%q: the unit is /s, /m or /h", s)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		return 0, fmt.Errorf("%q is not a rate like 100/s", s)
	}
	if n <= 0 {
		return 0, fmt.Errorf("%q: a rate must be positive (or \"unlimited\")", s)
	}
	return n / per, nil
}

// frIO is what a forcerenew command talks to: the daemon, the output and
// how often --wait looks at the campaign.
type frIO struct {
	call   func(ctx context.Context, cmd string, args, out any) error
	stdout io.Writer
	stderr io.Writer
	tty    bool          // stdout is a terminal: redraw one progress line
	poll   time.Duration // how often --wait asks the daemon
	every  time.Duration // how often a plain progress line is printed
	now    func() time.Time
}

// forcerenew runs `xdhcpctl forcerenew`. Each call to the daemon gets its
// own timeout; --wait itself is not bounded (Ctrl-C ends it).
func forcerenew(args []string, sock string, timeout time.Duration, stdout, stderr io.Writer) int {
	c, err := parseForceRenew(args)
	if err != nil {
		fmt.Fprintf(stderr, "xdhcpctl forcerenew: %v\n(xdhcpctl forcerenew --help for the usage)\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := frIO{
		call: func(ctx context.Context, cmd string, args, out any) error {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return control.Call(ctx, sock, cmd, args, out)
		},
		stdout: stdout, stderr: stderr, tty: isTerminal(stdout),
		poll: 500 * time.Millisecond, every: 5 * time.Second, now: time.Now,
	}
	return o.run(ctx, c)
}

func (o frIO) run(ctx context.Context, c frCommand) int {
	// The daemon's errors come named by the control command.
	fail := func(err error) int { fmt.Fprintf(o.stderr, "xdhcpctl: %v\n", err); return 1 }
	switch c.action {
	case "status":
		if c.id == "" {
			var all []control.CampaignInfo
			if err := o.call(ctx, "forcerenew-status", nil, &all); err != nil {
				return fail(err)
			}
			if c.asJSON {
				printJSON(o.stdout, nonNil(all))
			} else {
				printCampaigns(o.stdout, all)
			}
			return 0
		}
		var ci control.CampaignInfo
		if err := o.call(ctx, "forcerenew-status", control.CampaignID{ID: c.id}, &ci); err != nil {
			return fail(err)
		}
		return o.finish(ci, c.asJSON, false)
	case "stop":
		var ci control.CampaignInfo
		if err := o.call(ctx, "forcerenew-stop", control.CampaignID{ID: c.id}, &ci); err != nil {
			return fail(err)
		}
		return o.finish(ci, c.asJSON, false)
	}
	var ci control.CampaignInfo
	if err := o.call(ctx, "forcerenew", c.args, &ci); err != nil {
		return fail(err)
	}
	if !c.wait {
		if c.asJSON {
			printJSON(o.stdout, ci)
		} else {
			fmt.Fprintf(o.stdout, "campaign %s started: %d client(s) (%s)\nfollow it with: xdhcpctl forcerenew status %s\n", ci.ID, ci.Total, ci.Selector, ci.ID)
		}
		return 0
	}
	ci, err := o.follow(ctx, ci, !c.asJSON)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(o.stderr, "xdhcpctl forcerenew: stopped following; campaign %s goes on in the daemon (xdhcpctl forcerenew status %s, or stop %s)\n", ci.ID, ci.ID, ci.ID)
			return 1
		}
		return fail(err)
	}
	return o.finish(ci, c.asJSON, true)
}

// follow polls the campaign until it is done, drawing progress when
// show is set, and returns its last status.
func (o frIO) follow(ctx context.Context, ci control.CampaignInfo, show bool) (control.CampaignInfo, error) {
	start := o.now()
	var lastLine time.Time
	drawn := ""
	draw := func(final bool) {
		if !show {
			return
		}
		if o.tty {
			line := progressBar(ci)
			if line != drawn {
				// \r and erase to the end of the line: redraw in place.
				fmt.Fprint(o.stdout, "\r"+line+"\x1b[K")
				drawn = line
			}
			if final {
				fmt.Fprintln(o.stdout)
			}
			return
		}
		if now := o.now(); final || lastLine.IsZero() || now.Sub(lastLine) >= o.every {
			fmt.Fprintln(o.stdout, progressLine(ci, now.Sub(start)))
			lastLine = now
		}
	}
	t := time.NewTicker(o.poll)
	defer t.Stop()
	for !ci.Done {
		draw(false)
		select {
		case <-ctx.Done():
			if show && o.tty && drawn != "" {
				fmt.Fprintln(o.stdout)
			}
			return ci, ctx.Err()
		case <-t.C:
		}
		var next control.CampaignInfo
		if err := o.call(ctx, "forcerenew-status", control.CampaignID{ID: ci.ID}, &next); err != nil {
			if show && o.tty && drawn != "" {
				fmt.Fprintln(o.stdout)
			}
			return ci, err
		}
		ci = next
	}
	draw(true)
	return ci, nil
}

// finish prints a campaign's report (or JSON) and picks the exit status.
func (o frIO) finish(ci control.CampaignInfo, asJSON, exitOnOutcome bool) int {
	if asJSON {
		printJSON(o.stdout, withList(ci))
	} else {
		printReport(o.stdout, ci)
	}
	if exitOnOutcome && ci.Done && (len(ci.NotForced) > 0 || ci.NoKey+ci.NoAnswer > 0 || ci.Stopped) {
		return exitNotForced
	}
	return 0
}

// progressBar is the one-line progress drawn on a terminal.
func progressBar(ci control.CampaignInfo) string {
	const width = 20
	finished := ci.Total - ci.Remaining
	filled := width
	if ci.Total > 0 {
		filled = finished * width / ci.Total
	}
	return fmt.Sprintf("[%s%s] %d/%d  %s", strings.Repeat("#", filled), strings.Repeat(".", width-filled), finished, ci.Total, counts(ci))
}

// progressLine is the periodic line printed when stdout is not a
// terminal (a log, a pipe), stamped with the time since --wait began.
func progressLine(ci control.CampaignInfo, elapsed time.Duration) string {
	return fmt.Sprintf("+%s campaign %s: %d/%d finished, %s", elapsed.Round(time.Second), ci.ID, ci.Total-ci.Remaining, ci.Total, counts(ci))
}

func counts(ci control.CampaignInfo) string {
	s := fmt.Sprintf("sent %d, renewed %d, moved %d", ci.Sent, ci.Renewed, ci.Moved)
	if ci.Informed > 0 {
		// Clients configured by DHCPINFORM that answered with a new
		// INFORM: they hold no lease, so a move campaign cannot move
		// them. Shown only when there are some.
		s += fmt.Sprintf(", informed %d", ci.Informed)
	}
	s += fmt.Sprintf(", no answer %d, no key %d", ci.NoAnswer, ci.NoKey)
	if ci.Skipped > 0 {
		// Rare (a lease that ended before its turn): shown only then.
		s += fmt.Sprintf(", skipped %d", ci.Skipped)
	}
	if later := ci.NoKey + ci.NoAnswer; ci.Move && (later > 0 || ci.MovedAtRenewal > 0) {
		// A move campaign's unforced clients are NAKed at their own next
		// renewal (T1, after the campaign is done): how many of them have
		// been so far, so that `status` shows when the old pool is empty.
		s += fmt.Sprintf(", moved at renewal %d/%d", ci.MovedAtRenewal, later)
	}
	return s + fmt.Sprintf(", remaining %d", ci.Remaining)
}

func state(ci control.CampaignInfo) string {
	switch {
	case ci.Stopped:
		return "stopped"
	case ci.Done:
		return "done"
	}
	return "running"
}

// printReport is a campaign's report: its counts, then the clients it
// could not force and why.
func printReport(w io.Writer, ci control.CampaignInfo) {
	how := ci.Selector
	if ci.Move {
		how += ", move"
	}
	if ci.Rate > 0 {
		how += fmt.Sprintf(", %g/s", ci.Rate)
	}
	fmt.Fprintf(w, "campaign %s: %s (%s)\n  %d client(s): %s\n", ci.ID, state(ci), how, ci.Total, counts(ci))
	if len(ci.NotForced) == 0 {
		return
	}
	then := "they keep what they have until their next renewal (T1)"
	if ci.Move {
		then = "their leases move at their next renewal (T1)"
	}
	fmt.Fprintf(w, "could not be forced (%d); %s:\n", len(ci.NotForced), then)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  IP\tHW-ADDRESS\tCLIENT-ID\tREASON")
	for _, u := range ci.NotForced {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", u.IP, dash(u.HWAddress), dash(u.ClientID), reasonText(u.Reason))
	}
	tw.Flush()
}

// reasonText says what an operator can do about each reason.
func reasonText(r string) string {
	switch r {
	case "no-key":
		return "no key (client sent no option 145)"
	case "no-answer":
		return "no answer (every retransmission)"
	}
	return r
}

// printCampaigns is `forcerenew status` without an id: one line per
// campaign.
func printCampaigns(w io.Writer, all []control.CampaignInfo) {
	if len(all) == 0 {
		fmt.Fprintln(w, "no campaigns")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSELECTOR\tMOVE\tTOTAL\tSENT\tRENEWED\tMOVED\tINFORMED\tNO-ANSWER\tNO-KEY\tSKIPPED\tREMAINING\tMOVED-AT-RENEWAL")
	for _, ci := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", ci.ID, state(ci), ci.Selector, ci.Move,
			ci.Total, ci.Sent, ci.Renewed, ci.Moved, ci.Informed, ci.NoAnswer, ci.NoKey, ci.Skipped, ci.Remaining, ci.MovedAtRenewal)
	}
	tw.Flush()
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// withList makes an empty not-forced list print as [] rather than null.
func withList(ci control.CampaignInfo) control.CampaignInfo {
	if ci.NotForced == nil {
		ci.NotForced = []control.UnforcedClient{}
	}
	return ci
}

func nonNil(all []control.CampaignInfo) []control.CampaignInfo {
	out := make([]control.CampaignInfo, 0, len(all))
	for _, ci := range all {
		out = append(out, withList(ci))
	}
	return out
}

// isTerminal tells whether w is a terminal, where the progress line is
// redrawn in place rather than printed again.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
