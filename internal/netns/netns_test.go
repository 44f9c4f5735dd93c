package netns

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
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
