package netns

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestVethPingDoAndCleanup(t *testing.T) {
	a := ForTest(t, "nt")
	b, err := NewUnique("nt")
	if err != nil {
		t.Fatal(err)
	}
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
