package bench

import (
	"os"
	"testing"
)

func TestParsePerfdhcpRenewals(t *testing.T) {
	out, err := os.ReadFile("testdata/perfdhcp-renew.txt")
	if err != nil {
		t.Fatal(err)
	}
	do, ra, renew, err := parsePerfdhcp(out)
	if err != nil {
		t.Fatal(err)
	}
	if do != (Exchange{11999, 11999, 0}) || ra != (Exchange{11999, 11999, 0}) || renew != (Exchange{11936, 11930, 6}) {
		t.Fatalf("DO %+v RA %+v renew %+v", do, ra, renew)
	}
	if _, _, _, err := parsePerfdhcp([]byte("perfdhcp: cannot open socket\n")); err == nil {
		t.Fatal("output without statistics accepted")
	}
}
