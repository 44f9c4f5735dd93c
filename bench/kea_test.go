package bench

import (
	"encoding/json"
	"testing"
)

// TestKeaConfig: both rows' configurations are JSON kea-dhcp4 reads, and
// only kea-mt turns multi-threading on.
func TestKeaConfig(t *testing.T) {
	for _, k := range []Kea{{}, {MT: true}, {Raw: true, MT: true}} {
		var c struct {
			Dhcp4 struct {
				MT *struct {
					Enable bool `json:"enable-multi-threading"`
					Pool   *int `json:"thread-pool-size"`
				} `json:"multi-threading"`
				Ifaces struct {
					Socket string `json:"dhcp-socket-type"`
				} `json:"interfaces-config"`
				Subnets []json.RawMessage `json:"subnet4"`
			}
		}
		if err := json.Unmarshal([]byte(KeaConfig("/tmp/k", k.Raw, k.MT)), &c); err != nil {
			t.Fatalf("%s: %v", k.Name(), err)
		}
		if mt := c.Dhcp4.MT != nil && c.Dhcp4.MT.Enable && c.Dhcp4.MT.Pool != nil; mt != k.MT {
			t.Errorf("%s: multi-threading %+v", k.Name(), c.Dhcp4.MT)
		}
		if want := map[bool]string{true: "raw", false: "udp"}[k.Raw]; c.Dhcp4.Ifaces.Socket != want || len(c.Dhcp4.Subnets) != 2 {
			t.Errorf("%s: socket %q, %d subnets", k.Name(), c.Dhcp4.Ifaces.Socket, len(c.Dhcp4.Subnets))
		}
	}
	if (Kea{}).Name() != "kea" || (Kea{MT: true}).Name() != "kea-mt" {
		t.Fatal("row names")
	}
}
