package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/internal/testenv"
)

func TestParseForceRenew(t *testing.T) {
	for _, c := range []struct {
		args []string
		want frCommand
	}{
		{[]string{"--ip", "10.77.0.100"}, frCommand{action: "start", args: control.ForceRenewArgs{IP: "10.77.0.100", Rate: defaultRate}}},
		{[]string{"--mac", "02-00-00-00-00-0A", "--wait"}, frCommand{action: "start", wait: true, args: control.ForceRenewArgs{MAC: "02:00:00:00:00:0a", Rate: defaultRate}}},
		{[]string{"--client-id", "ff:00:00:00:01:00:01"}, frCommand{action: "start", args: control.ForceRenewArgs{ClientID: "ff000000010001", Rate: defaultRate}}},
		{[]string{"--subnet", "10.77.0.0/24", "--json"}, frCommand{action: "start", asJSON: true, args: control.ForceRenewArgs{Subnet: "10.77.0.0/24", Rate: defaultRate}}},
		{[]string{"--pool", "10.77.0.100-10.77.0.149", "--move", "--rate", "50/s"}, frCommand{action: "start", args: control.ForceRenewArgs{Pool: "10.77.0.100-10.77.0.149", Move: true, Rate: 50}}},
		{[]string{"--pool", " 10.77.0.100 - 10.77.0.100 ", "--rate", "120/m"}, frCommand{action: "start", args: control.ForceRenewArgs{Pool: "10.77.0.100-10.77.0.100", Rate: 2}}},
		{[]string{"-ip=10.77.0.1", "--rate=7"}, frCommand{action: "start", args: control.ForceRenewArgs{IP: "10.77.0.1", Rate: 7}}},
		{[]string{"--rate", "3600/h", "--ip", "10.77.0.1"}, frCommand{action: "start", args: control.ForceRenewArgs{IP: "10.77.0.1", Rate: 1}}},
		{[]string{"--ip", "10.77.0.1", "--rate", "unlimited"}, frCommand{action: "start", args: control.ForceRenewArgs{IP: "10.77.0.1"}}},
		{[]string{"status"}, frCommand{action: "status"}},
		{[]string{"status", "c7", "--json"}, frCommand{action: "status", id: "c7", asJSON: true}},
		{[]string{"status", "--json", "c7"}, frCommand{action: "status", id: "c7", asJSON: true}},
		{[]string{"stop", "c7"}, frCommand{action: "stop", id: "c7"}},
	} {
		got, err := parseForceRenew(c.args)
		if err != nil || got != c.want {
			t.Errorf("parseForceRenew(%q) = %+v, %v; want %+v", c.args, got, err, c.want)
		}
	}
}

func TestParseForceRenewErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // in the error
	}{
		{nil, "one of --ip, --mac, --client-id, --subnet or --pool"},
		{[]string{"--move", "--wait"}, "one of --ip"},
		{[]string{"--ip", "10.77.0.1", "--mac", "02:00:00:00:00:01"}, "exactly one selector, not --ip and --mac"},
		{[]string{"--subnet", "10.77.0.0/24", "--pool", "10.77.0.1-10.77.0.2", "--ip", "10.77.0.1"}, "not --ip and --subnet and --pool"},
		{[]string{"--ip", ""}, "--ip: empty"},
		{[]string{"--ip", "10.77.0.256"}, `--ip: "10.77.0.256" is not an IPv4 address`},
		{[]string{"--ip", "fe80::1"}, "is not an IPv4 address"},
		{[]string{"--ip"}, "flag needs an argument: -ip"},
		{[]string{"--mac", "02:00:00:00:00"}, "--mac: \"02:00:00:00:00\" is not a hardware address"},
		{[]string{"--client-id", "xyz"}, "--client-id: \"xyz\" is not 2 to 255 bytes of hex"},
		{[]string{"--client-id", "01"}, "not 2 to 255 bytes"},
		{[]string{"--client-id", strings.Repeat("ab", 256)}, "not 2 to 255 bytes"},
		{[]string{"--subnet", "10.77.0.0"}, "--subnet: \"10.77.0.0\" is not an IPv4 prefix"},
		{[]string{"--subnet", "10.77.0.5/24"}, "10.77.0.5/24 has host bits set; did you mean 10.77.0.0/24?"},
		{[]string{"--subnet", "2001:db8::/64"}, "is not an IPv4 prefix"},
		{[]string{"--pool", "10.77.0.100"}, "is not a range of IPv4 addresses A-B"},
		{[]string{"--pool", "10.77.0.149-10.77.0.100"}, "ends before it starts"},
		{[]string{"--pool", "10.77.0.1-::1"}, "is not a range"},
		{[]string{"--ip", "10.77.0.1", "--rate", "0"}, "--rate: \"0\": a rate must be positive"},
		{[]string{"--ip", "10.77.0.1", "--rate", "-5/s"}, "must be positive"},
		{[]string{"--ip", "10.77.0.1", "--rate", "fast"}, "is not a rate like 100/s"},
		{[]string{"--ip", "10.77.0.1", "--rate", "NaN"}, "is not a rate"},
		{[]string{"--ip", "10.77.0.1", "--rate", "5/d"}, "the unit is /s, /m or /h"},
		{[]string{"--ip", "10.77.0.1", "extra"}, `unexpected argument "extra"`},
		{[]string{"--ip", "10.77.0.1", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"stop"}, "stop needs the campaign id"},
		{[]string{"status", "a", "b"}, `status takes one campaign id, got ["a" "b"]`},
		{[]string{"status", "--move"}, "flag provided but not defined: -move"},
		{[]string{"stop", "c1", "--wait"}, "flag provided but not defined: -wait"},
	} {
		_, err := parseForceRenew(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseForceRenew(%q): error %v, want one containing %q", c.args, err, c.want)
		}
	}
}

// TestForceRenewBadUsageExits2: bad input never reaches the daemon (the
// socket does not exist) and exits 2 with the reason and a pointer to
// --help on stderr only.
func TestForceRenewBadUsageExits2(t *testing.T) {
	for _, args := range [][]string{
		{"forcerenew"},
		{"forcerenew", "--ip", "1.2.3.4", "--pool", "1.2.3.4-1.2.3.5"},
		{"forcerenew", "--pool", "b-a"},
		{"forcerenew", "stop"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"--socket", "/nonexistent/x.sock"}, args...), &out, &errb)
		if code != 2 || out.Len() > 0 || !strings.Contains(errb.String(), "xdhcpctl forcerenew: ") || !strings.Contains(errb.String(), "--help") {
			t.Errorf("xdhcpctl %q: exit %d, stdout %q, stderr %q; want 2 and the reason on stderr", args, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"--socket", "/nonexistent/x.sock", "forcerenew", "--ip", "10.0.0.1"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "/nonexistent/x.sock") {
		t.Errorf("no daemon: exit %d, stderr %q; want 1 naming the socket", code, errb.String())
	}
}

func TestProgressRendering(t *testing.T) {
	ci := control.CampaignInfo{ID: "c1", Total: 40, Sent: 30, Renewed: 10, Moved: 12, NoAnswer: 1, NoKey: 2, Remaining: 15}
	for _, c := range []struct {
		name string
		got  string
		want string
	}{
		{"bar", progressBar(ci), "[############........] 25/40  sent 30, renewed 10, moved 12, no answer 1, no key 2, remaining 15"},
		{"bar empty campaign", progressBar(control.CampaignInfo{}), "[####################] 0/0  sent 0, renewed 0, moved 0, no answer 0, no key 0, remaining 0"},
		{"skipped shown when there are some", counts(control.CampaignInfo{Sent: 1, Renewed: 1, Skipped: 2}), "sent 1, renewed 1, moved 0, no answer 0, no key 0, skipped 2, remaining 0"},
		{"bar none finished", progressBar(control.CampaignInfo{Total: 3, Remaining: 3}), "[....................] 0/3  sent 0, renewed 0, moved 0, no answer 0, no key 0, remaining 3"},
		{"line", progressLine(ci, 12400*time.Millisecond), "+12s campaign c1: 25/40 finished, sent 30, renewed 10, moved 12, no answer 1, no key 2, remaining 15"},
	} {
		if c.got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, c.got, c.want)
		}
	}
}

func TestReportRendering(t *testing.T) {
	for _, c := range []struct {
		name string
		ci   control.CampaignInfo
		want string
	}{
		{"all forced", control.CampaignInfo{ID: "c1", Selector: "ip 10.77.0.100", Total: 1, Sent: 1, Renewed: 1, Done: true},
			"campaign c1: done (ip 10.77.0.100)\n  1 client(s): sent 1, renewed 1, moved 0, no answer 0, no key 0, remaining 0\n"},
		{"running", control.CampaignInfo{ID: "c2", Selector: "subnet 10.77.0.0/24", Rate: 50, Total: 9, Sent: 4, Remaining: 9},
			"campaign c2: running (subnet 10.77.0.0/24, 50/s)\n  9 client(s): sent 4, renewed 0, moved 0, no answer 0, no key 0, remaining 9\n"},
		{"moved with clients left behind", control.CampaignInfo{ID: "c3", Selector: "pool 10.77.0.100-10.77.0.149", Move: true, Total: 4, Sent: 3, Moved: 2, NoAnswer: 1, NoKey: 1, Done: true,
			NotForced: []control.UnforcedClient{
				{IP: "10.77.0.101", HWAddress: "02:00:00:00:00:01", ClientID: "01:02:00:00:00:00:01", Reason: "no-key"},
				{IP: "10.77.0.120", HWAddress: "02:00:00:00:00:02", Reason: "no-answer"},
			}},
			"campaign c3: done (pool 10.77.0.100-10.77.0.149, move)\n" +
				"  4 client(s): sent 3, renewed 0, moved 2, no answer 1, no key 1, moved at renewal 0/2, remaining 0\n" +
				"could not be forced (2); their leases move at their next renewal (T1):\n" +
				"  IP           HW-ADDRESS         CLIENT-ID             REASON\n" +
				"  10.77.0.101  02:00:00:00:00:01  01:02:00:00:00:00:01  no key (client sent no option 145)\n" +
				"  10.77.0.120  02:00:00:00:00:02  -                     no answer (every retransmission)\n"},
		{"one of them since moved at its renewal", control.CampaignInfo{ID: "c3", Selector: "pool 10.77.0.100-10.77.0.149", Move: true, Total: 4, Sent: 3, Moved: 2, NoAnswer: 1, NoKey: 1, MovedAtRenewal: 1, Done: true},
			"campaign c3: done (pool 10.77.0.100-10.77.0.149, move)\n" +
				"  4 client(s): sent 3, renewed 0, moved 2, no answer 1, no key 1, moved at renewal 1/2, remaining 0\n"},
		{"informed clients beside leases", control.CampaignInfo{ID: "c6", Selector: "subnet 10.77.0.0/24", Move: true, Total: 3, Sent: 3, Moved: 1, Informed: 2, Done: true},
			"campaign c6: done (subnet 10.77.0.0/24, move)\n" +
				"  3 client(s): sent 3, renewed 0, moved 1, informed 2, no answer 0, no key 0, remaining 0\n"},
		{"no move: nothing moves at renewal", control.CampaignInfo{ID: "c5", Selector: "subnet 10.77.0.0/24", Total: 2, Sent: 1, Renewed: 1, NoKey: 1, Done: true},
			"campaign c5: done (subnet 10.77.0.0/24)\n" +
				"  2 client(s): sent 1, renewed 1, moved 0, no answer 0, no key 1, remaining 0\n"},
		{"stopped", control.CampaignInfo{ID: "c4", Selector: "mac 02:00:00:00:00:09", Total: 2, Sent: 1, Renewed: 1, Remaining: 0, Done: true, Stopped: true,
			NotForced: []control.UnforcedClient{{IP: "10.77.0.130", Reason: "stopped"}}},
			"campaign c4: stopped (mac 02:00:00:00:00:09)\n" +
				"  2 client(s): sent 1, renewed 1, moved 0, no answer 0, no key 0, remaining 0\n" +
				"could not be forced (1); they keep what they have until their next renewal (T1):\n" +
				"  IP           HW-ADDRESS  CLIENT-ID  REASON\n" +
				"  10.77.0.130  -           -          stopped\n"},
	} {
		var b bytes.Buffer
		printReport(&b, c.ci)
		if b.String() != c.want {
			t.Errorf("%s:\n got:\n%s\nwant:\n%s", c.name, b.String(), c.want)
		}
	}
	var b bytes.Buffer
	printCampaigns(&b, nil)
	if b.String() != "no campaigns\n" {
		t.Errorf("empty list: %q", b.String())
	}
	b.Reset()
	printCampaigns(&b, []control.CampaignInfo{{ID: "c1", Selector: "ip 10.77.0.100", Total: 1, Renewed: 1, Sent: 1, Done: true}, {ID: "c2", Selector: "pool 10.77.0.100-10.77.0.149", Move: true, Total: 50, Sent: 3, Remaining: 47}, {ID: "c3", Selector: "pool 10.77.0.100-10.77.0.149", Move: true, Total: 5, Sent: 4, Moved: 2, Informed: 1, NoAnswer: 1, NoKey: 1, MovedAtRenewal: 2, Done: true}})
	want := "ID  STATE    SELECTOR                      MOVE   TOTAL  SENT  RENEWED  MOVED  INFORMED  NO-ANSWER  NO-KEY  SKIPPED  REMAINING  MOVED-AT-RENEWAL\n" +
		"c1  done     ip 10.77.0.100                false  1      1     1        0      0         0          0       0        0          0\n" +
		"c2  running  pool 10.77.0.100-10.77.0.149  true   50     3     0        0      0         0          0       0        47         0\n" +
		"c3  done     pool 10.77.0.100-10.77.0.149  true   5      4     0        2      1         1          1       0        0          2\n"
	if b.String() != want {
		t.Errorf("list:\n got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// fakeCampaign is a daemon's campaign that advances one step per status
// call, scripted by steps.
type fakeCampaign struct {
	mu    sync.Mutex
	steps []control.CampaignInfo
	calls []string
	args  []json.RawMessage
}

func (f *fakeCampaign) call(_ context.Context, cmd string, args, out any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := json.Marshal(args)
	f.calls, f.args = append(f.calls, cmd), append(f.args, b)
	if len(f.steps) == 0 {
		return errors.New("no more steps")
	}
	cur := f.steps[0]
	if len(f.steps) > 1 {
		f.steps = f.steps[1:]
	}
	b, _ = json.Marshal(cur)
	return json.Unmarshal(b, out)
}

func campaignSteps() []control.CampaignInfo {
	base := control.CampaignInfo{ID: "c9", Selector: "pool 10.77.0.100-10.77.0.103", Move: true, Total: 4}
	s := func(sent, moved, noKey, rem int, done bool) control.CampaignInfo {
		c := base
		c.Sent, c.Moved, c.NoKey, c.Remaining, c.Done = sent, moved, noKey, rem, done
		if done {
			c.NotForced = []control.UnforcedClient{{IP: "10.77.0.103", HWAddress: "02:00:00:00:00:03", Reason: "no-key"}}
		}
		return c
	}
	return []control.CampaignInfo{s(0, 0, 0, 4, false), s(2, 0, 1, 3, false), s(3, 2, 1, 1, false), s(3, 3, 1, 0, true)}
}

// fakeClock advances a second each time it is read, so that every plain
// progress line is due.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { c.t = c.t.Add(time.Second); return c.t }

func TestWaitFollowsCampaign(t *testing.T) {
	for _, c := range []struct {
		name     string
		tty      bool
		asJSON   bool
		contains []string
		lacks    []string
	}{
		{name: "terminal", tty: true, contains: []string{
			"\r[....................] 0/4  sent 0, renewed 0, moved 0, no answer 0, no key 0, remaining 4\x1b[K",
			"\r[#####...............] 1/4  sent 2,",
			"\r[###############.....] 3/4  sent 3, renewed 0, moved 2,",
			"\r[####################] 4/4  sent 3, renewed 0, moved 3, no answer 0, no key 1, moved at renewal 0/1, remaining 0\x1b[K\n",
			"campaign c9: done (pool 10.77.0.100-10.77.0.103, move)\n",
			"  10.77.0.103  02:00:00:00:00:03  -          no key",
		}},
		{name: "pipe", contains: []string{
			"+1s campaign c9: 0/4 finished, sent 0,",
			"+2s campaign c9: 1/4 finished, sent 2,",
			"+4s campaign c9: 4/4 finished, sent 3, renewed 0, moved 3, no answer 0, no key 1, moved at renewal 0/1, remaining 0\ncampaign c9: done",
		}, lacks: []string{"\r", "\x1b"}},
		{name: "json", asJSON: true, contains: []string{`"id": "c9"`, `"moved": 3`, `"moved-at-renewal": 0`, `"reason": "no-key"`}, lacks: []string{"sent 0", "\r"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeCampaign{steps: campaignSteps()}
			var out, errb bytes.Buffer
			clock := &fakeClock{t: time.Unix(0, 0)}
			o := frIO{call: f.call, stdout: &out, stderr: &errb, tty: c.tty, poll: time.Millisecond, every: time.Second, now: clock.now}
			code := o.run(context.Background(), frCommand{action: "start", wait: true, asJSON: c.asJSON, args: control.ForceRenewArgs{Pool: "10.77.0.100-10.77.0.103", Move: true, Rate: defaultRate}})
			if code != exitNotForced {
				t.Errorf("exit %d, want %d (a client could not be forced); stderr %q", code, exitNotForced, errb.String())
			}
			for _, w := range c.contains {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%q", w, out.String())
				}
			}
			for _, w := range c.lacks {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%q", w, out.String())
				}
			}
			if c.asJSON {
				var ci control.CampaignInfo
				if err := json.Unmarshal(out.Bytes(), &ci); err != nil || !ci.Done || ci.Moved != 3 || len(ci.NotForced) != 1 {
					t.Errorf("--json printed %q (%v), want the final campaign once", out.String(), err)
				}
			}
			wantCalls := []string{"forcerenew", "forcerenew-status", "forcerenew-status", "forcerenew-status"}
			if strings.Join(f.calls, " ") != strings.Join(wantCalls, " ") {
				t.Errorf("calls %q, want %q", f.calls, wantCalls)
			}
			if string(f.args[0]) != `{"pool":"10.77.0.100-10.77.0.103","move":true,"rate":100}` || string(f.args[1]) != `{"id":"c9"}` {
				t.Errorf("arguments sent: %s", f.args)
			}
		})
	}
}

// TestWaitInterruptLeavesCampaignRunning: Ctrl-C ends the wait, says the
// campaign goes on, and sends no stop.
func TestWaitInterruptLeavesCampaignRunning(t *testing.T) {
	f := &fakeCampaign{steps: []control.CampaignInfo{{ID: "c5", Total: 2, Remaining: 2}}}
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bytes.Buffer
	o := frIO{call: func(ctx context.Context, cmd string, args, out any) error {
		f.mu.Lock()
		n := len(f.calls)
		f.mu.Unlock()
		if n == 3 {
			cancel()
		}
		return f.call(ctx, cmd, args, out)
	}, stdout: &out, stderr: &errb, tty: true, poll: time.Millisecond, every: time.Second, now: time.Now}
	code := o.run(ctx, frCommand{action: "start", wait: true, args: control.ForceRenewArgs{IP: "10.77.0.100", Rate: defaultRate}})
	if code != 1 || !strings.Contains(errb.String(), "campaign c5 goes on in the daemon") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	for _, c := range f.calls {
		if c == "forcerenew-stop" {
			t.Fatal("an interrupted wait stopped the campaign")
		}
	}
	if !strings.HasSuffix(out.String(), "\n") {
		t.Errorf("the progress line is left unterminated: %q", out.String())
	}
}

// TestForceRenewOverControlSocket runs the commands against a control
// socket whose handlers stand in for the daemon: the command names and
// arguments on the wire, and each output form.
func TestForceRenewOverControlSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	var mu sync.Mutex
	var got []string
	campaign := control.CampaignInfo{ID: "c1", Selector: "subnet 10.77.0.0/24", Total: 3, Sent: 3, Renewed: 2, NoAnswer: 1, Done: true,
		NotForced: []control.UnforcedClient{{IP: "10.77.0.140", HWAddress: "02:00:00:00:00:40", Reason: "no-answer"}}}
	record := func(cmd string, raw json.RawMessage) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, cmd+" "+string(raw))
	}
	srv, err := control.NewServer(sock, map[string]control.Handler{
		"forcerenew": func(_ context.Context, raw json.RawMessage) (any, error) {
			record("forcerenew", raw)
			return campaign, nil
		},
		"forcerenew-status": func(_ context.Context, raw json.RawMessage) (any, error) {
			record("forcerenew-status", raw)
			var id control.CampaignID
			json.Unmarshal(raw, &id)
			switch id.ID {
			case "":
				return []control.CampaignInfo{campaign}, nil
			case "c1":
				return campaign, nil
			}
			return nil, errors.New(`no campaign "` + id.ID + `"`)
		},
		"forcerenew-stop": func(_ context.Context, raw json.RawMessage) (any, error) {
			record("forcerenew-stop", raw)
			c := campaign
			c.Stopped = true
			return c, nil
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	for _, c := range []struct {
		args     []string
		code     int
		wire     string
		contains string
	}{
		{[]string{"forcerenew", "--subnet", "10.77.0.0/24", "--rate", "10/s"}, 0, `forcerenew {"subnet":"10.77.0.0/24","rate":10}`, "campaign c1 started: 3 client(s) (subnet 10.77.0.0/24)\nfollow it with: xdhcpctl forcerenew status c1\n"},
		{[]string{"forcerenew", "--subnet", "10.77.0.0/24", "--wait"}, exitNotForced, `forcerenew {"subnet":"10.77.0.0/24","rate":100}`, "10.77.0.140  02:00:00:00:00:40  -          no answer"},
		{[]string{"forcerenew", "status"}, 0, `forcerenew-status `, "c1  done   subnet 10.77.0.0/24"},
		{[]string{"forcerenew", "status", "--json"}, 0, `forcerenew-status `, `"no-answer": 1`},
		{[]string{"forcerenew", "status", "c1"}, 0, `forcerenew-status {"id":"c1"}`, "campaign c1: done (subnet 10.77.0.0/24)"},
		{[]string{"forcerenew", "status", "c2"}, 1, `forcerenew-status {"id":"c2"}`, ""},
		{[]string{"forcerenew", "stop", "c1"}, 0, `forcerenew-stop {"id":"c1"}`, "campaign c1: stopped"},
	} {
		mu.Lock()
		got = nil
		mu.Unlock()
		var out, errb bytes.Buffer
		code := run(append([]string{"--socket", sock}, c.args...), &out, &errb)
		mu.Lock()
		wire := strings.Join(got, "|")
		mu.Unlock()
		if code != c.code || !strings.HasPrefix(wire, c.wire) || !strings.Contains(out.String(), c.contains) {
			t.Errorf("xdhcpctl %q: exit %d (want %d), sent %q (want %q first), stdout:\n%s\nwant it to contain %q; stderr %q",
				c.args, code, c.code, wire, c.wire, out.String(), c.contains, errb.String())
		}
		if c.code == 1 && !strings.Contains(errb.String(), `no campaign "c2"`) {
			t.Errorf("xdhcpctl %q: stderr %q, want the daemon's reason", c.args, errb.String())
		}
	}
}

// TestIsTerminal: the progress bar is redrawn in place only on a
// terminal (a pseudo-terminal here), never into a file or a pipe.
func TestIsTerminal(t *testing.T) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		testenv.Skipf(t, "no pseudo-terminals here: %v", err)
	}
	defer m.Close()
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlocking the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, c := range []struct {
		name string
		w    io.Writer
		want bool
	}{{"pty", s, true}, {"file", f, false}, {"pipe", w, false}, {"buffer", &bytes.Buffer{}, false}} {
		if got := isTerminal(c.w); got != c.want {
			t.Errorf("isTerminal(%s) = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestMovedAtRenewalInJSON: the count of a move campaign's unforced
// clients NAKed at their own renewal is in --json as "moved-at-renewal",
// and reads back the same.
func TestMovedAtRenewalInJSON(t *testing.T) {
	var b bytes.Buffer
	printJSON(&b, withList(control.CampaignInfo{ID: "c3", Move: true, Total: 4, NoKey: 1, NoAnswer: 1, MovedAtRenewal: 2, Done: true}))
	if !strings.Contains(b.String(), `"moved-at-renewal": 2`) {
		t.Fatalf("--json lacks moved-at-renewal: %s", b.String())
	}
	var ci control.CampaignInfo
	if err := json.Unmarshal(b.Bytes(), &ci); err != nil || ci.MovedAtRenewal != 2 {
		t.Errorf("read back: %+v (%v)", ci, err)
	}
}

// TestInformedInJSONAndProgress: clients configured by DHCPINFORM that
// answered are "informed" in --json (read back the same), and counted on
// the progress bar and line.
func TestInformedInJSONAndProgress(t *testing.T) {
	ci := withList(control.CampaignInfo{ID: "c7", Selector: "ip 10.77.0.50", Total: 1, Sent: 1, Informed: 1, Done: true})
	var b bytes.Buffer
	printJSON(&b, ci)
	if !strings.Contains(b.String(), `"informed": 1`) {
		t.Fatalf("--json lacks informed: %s", b.String())
	}
	var back control.CampaignInfo
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back.Informed != 1 {
		t.Errorf("read back: %+v (%v)", back, err)
	}
	if got := progressBar(ci); got != "[####################] 1/1  sent 1, renewed 0, moved 0, informed 1, no answer 0, no key 0, remaining 0" {
		t.Errorf("progress bar %q", got)
	}
	if got := progressLine(ci, 3*time.Second); got != "+3s campaign c7: 1/1 finished, sent 1, renewed 0, moved 0, informed 1, no answer 0, no key 0, remaining 0" {
		t.Errorf("progress line %q", got)
	}
}
