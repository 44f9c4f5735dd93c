package netns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/testenv"
)

func TestVethPingDoAndCleanup(t *testing.T) {
	// ping runs inside the namespace; missing, it is an environment gap, not a netns bug.
	testenv.RequireCommands(t, "ping")
	a := ForTest(t, "nt")
	b, err := NewUnique("nt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() }) // if the test fails before it closes b itself
	if err := Veth(a, "va", netip.MustParsePrefix("192.0.2.1/24"), b, "vb", netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	if out, err := a.Exec(context.Background(), "ping", "-c", "1", "-W", "2", "192.0.2.2"); err != nil {
		t.Fatalf("ping across the veth: %v\n%s", err, out)
	}
	var names []string
	err = b.Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	})
	if err != nil || !strings.Contains(strings.Join(names, " "), "vb") || strings.Contains(strings.Join(names, " "), "va") {
		t.Fatalf("Do saw %v (%v), want vb and not va", names, err)
	}
	p, err := b.Start(context.Background(), "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	name := b.Name
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Fatal("process outlived its namespace")
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), name+" ") || strings.Contains(string(out), name+"\n") {
		t.Fatalf("namespace %s left behind", name)
	}
}

// A DHCP client's hook script in the namespace rewrites /etc/resolv.conf;
// the host's file must not change, and nothing may stay behind in /etc/netns.
func TestResolvConfIsPrivate(t *testing.T) {
	host, err := os.ReadFile("/etc/resolv.conf")
	if err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
	n := ForTest(t, "nr")
	if out, err := n.Exec(context.Background(), "sh", "-c", "echo 'nameserver 10.77.0.53' > /etc/resolv.conf && cat /etc/resolv.conf"); err != nil || !strings.Contains(string(out), "10.77.0.53") {
		t.Fatalf("write resolv.conf in the namespace: %v\n%s", err, out)
	}
	after, _ := os.ReadFile("/etc/resolv.conf")
	if string(after) != string(host) {
		t.Fatalf("the host's /etc/resolv.conf changed to %q", after)
	}
	dir := filepath.Join(etcDir, n.Name)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s left behind (%v)", dir, err)
	}
}

// exists reports whether the namespace is still there, by /run/netns and
// by ip netns list.
func exists(t *testing.T, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	_, serr := os.Stat(filepath.Join("/run/netns", name))
	listed := false
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			listed = true
		}
	}
	return listed || serr == nil
}

// A test that fails or panics after starting a process in its namespace
// leaves neither behind. The failing test runs in a child test binary
// (TestChildFailsInNamespace), which prints the namespace and the pid.
func TestForTestCleansUpWhenTheTestFails(t *testing.T) {
	if os.Getenv("NETNS_CHILD") != "" {
		t.Skip("child process of TestForTestCleansUpWhenTheTestFails")
	}
	ForTest(t, "nx").Close() // the parent needs root and ip too (skips or fails as ForTest does)
	for _, how := range []string{"fatal", "panic"} {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestChildFailsInNamespace$", "-test.v")
		cmd.Env = append(os.Environ(), "NETNS_CHILD="+how)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("%s: the child test passed:\n%s", how, out)
		}
		var name string
		var pid int
		for _, l := range strings.Split(string(out), "\n") {
			if i := strings.Index(l, "CHILD "); i >= 0 {
				fmt.Sscan(l[i+len("CHILD "):], &name, &pid)
			}
		}
		if name == "" || pid == 0 {
			t.Fatalf("%s: the child printed no namespace and pid:\n%s", how, out)
		}
		if exists(t, name) {
			t.Errorf("%s: namespace %s left behind\n%s", how, name, out)
		}
		if _, err := os.Stat(filepath.Join(etcDir, name)); !os.IsNotExist(err) {
			t.Errorf("%s: %s left behind (%v)", how, filepath.Join(etcDir, name), err)
		}
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Errorf("%s: process %d in the namespace still runs (%v)", how, pid, err)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// TestChildFailsInNamespace is run by TestForTestCleansUpWhenTheTestFails.
func TestChildFailsInNamespace(t *testing.T) {
	how := os.Getenv("NETNS_CHILD")
	if how == "" {
		t.Skip("run as a child process by TestForTestCleansUpWhenTheTestFails")
	}
	n := ForTest(t, "nf")
	p, err := n.Start(context.Background(), "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	// sleep is the child of ip netns exec, which execs it: same pid.
	fmt.Printf("CHILD %s %d\n", n.Name, p.Pid())
	if how == "panic" {
		panic("the test panics")
	}
	t.Fatal("the test fails")
}

// A namespace this package made for a process that is gone (a test binary
// killed by -timeout runs no cleanup) is removed by the next ForTest, with
// the process left inside it; a live process's namespace stays.
func TestForTestRemovesStaleNamespaces(t *testing.T) {
	live := ForTest(t, "nl")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	// New with the name a dead process's NewUnique would have made.
	stale, err := New(fmt.Sprintf("ns-%d-1", dead.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stale.Close() })
	if err := syscall.Kill(dead.Process.Pid, 0); err != syscall.ESRCH {
		t.Skipf("pid %d was reused already", dead.Process.Pid)
	}
	left, err := stale.Start(context.Background(), "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	// Someone else's namespace with a name of the same shape is not ours.
	other := fmt.Sprintf("other-%d-1", dead.Process.Pid)
	if out, err := exec.Command("ip", "netns", "add", other).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", other, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", other).Run() })

	ForTest(t, "nn")
	if exists(t, stale.Name) {
		t.Errorf("stale namespace %s not removed", stale.Name)
	}
	if _, err := os.Stat(filepath.Join(etcDir, stale.Name)); !os.IsNotExist(err) {
		t.Errorf("%s left behind (%v)", filepath.Join(etcDir, stale.Name), err)
	}
	select {
	case <-left.done:
	case <-time.After(5 * time.Second):
		t.Errorf("the process in the stale namespace still runs")
	}
	if !exists(t, live.Name) {
		t.Errorf("live namespace %s removed", live.Name)
	}
	if !exists(t, other) {
		t.Errorf("%s, not made by this package, removed", other)
	}
}
