package bench

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// histText renders a Prometheus histogram's series as /metrics does, from
// per-bucket (not cumulative) counts.
func histText(name, labels string, les []string, counts []int, sum float64) string {
	var b strings.Builder
	cum := 0
	sep := ""
	if labels != "" {
		sep = ","
	}
	for i, le := range les {
		cum += counts[i]
		fmt.Fprintf(&b, "%s_bucket{%s%sle=%q} %d\n", name, labels, sep, le, cum)
	}
	if labels != "" {
		labels = "{" + labels + "}"
	}
	fmt.Fprintf(&b, "%s_sum%s %g\n%s_count%s %d\n", name, labels, sum, name, labels, cum)
	return b.String()
}

func TestServerSideBetween(t *testing.T) {
	les := []string{"0.001", "0.005", "0.01", "0.05", "+Inf"}
	before := histText("xdhcp_slowpath_ack_seconds", "", les, []int{10, 0, 0, 0, 0}, 0.005) +
		histText("xdhcp_slowpath_wait_seconds", `class="priority"`, les, []int{5, 0, 0, 0, 0}, 0.001) +
		histText("xdhcp_slowpath_wait_seconds", `class="bulk"`, les, []int{0, 0, 0, 0, 100}, 100) +
		histText("xdhcp_slowpath_store_wait_seconds", "", les, []int{10, 0, 0, 0, 0}, 0.005) +
		histText("xdhcp_slowpath_reply_seconds", "", les, []int{20, 0, 0, 0, 0}, 0.01) +
		histText("xdhcp_store_commit_seconds", "", les, []int{1, 0, 0, 0, 0}, 0.001) +
		histText("xdhcp_store_commit_leases", "", []string{"1", "4", "+Inf"}, []int{1, 0, 0}, 1) +
		"xdhcp_slowpath_dropped_total{reason=\"stale\"} 3\nxdhcp_slowpath_dropped_total{reason=\"overload\"} 7\nxdhcp_slowpath_dropped_total{reason=\"malformed\"} 1\n" +
		"xdhcp_slowpath_store_behind_seconds_total 0.5\n" +
		"xdhcp_slowpath_acks_on_horizon_total 4\n"
	// Between the scrapes: 100 ACKs, 98 within 5 ms and 2 within 50 ms;
	// 100 priority waits within 1 ms (the bulk socket's are not read);
	// of the ACKs' time, 97 within 1 ms in the store and 3 within 10 ms;
	// 10 commits of 3 ms, 30 leases in all; in the 2 s between them, 20
	// requests dropped stale, 200 for overload (malformed ones are not
	// counted), reading paused for 0.5 s; 25 of the 100 ACKs left on
	// their horizon; 100 replies sent, 49 within 5 ms, 50 within 10 ms
	// and one later than 50 ms.
	after := histText("xdhcp_slowpath_ack_seconds", "", les, []int{10, 98, 0, 2, 0}, 1) +
		histText("xdhcp_slowpath_wait_seconds", `class="priority"`, les, []int{105, 0, 0, 0, 0}, 0.05) +
		histText("xdhcp_slowpath_wait_seconds", `class="bulk"`, les, []int{0, 0, 0, 0, 500}, 600) +
		histText("xdhcp_slowpath_store_wait_seconds", "", les, []int{107, 0, 3, 0, 0}, 0.1) +
		histText("xdhcp_slowpath_reply_seconds", "", les, []int{20, 49, 50, 0, 1}, 2) +
		histText("xdhcp_store_commit_seconds", "", les, []int{1, 10, 0, 0, 0}, 0.031) +
		histText("xdhcp_store_commit_leases", "", []string{"1", "4", "+Inf"}, []int{1, 10, 0}, 31) +
		"xdhcp_slowpath_dropped_total{reason=\"stale\"} 23\nxdhcp_slowpath_dropped_total{reason=\"overload\"} 207\nxdhcp_slowpath_dropped_total{reason=\"malformed\"} 50\n" +
		"xdhcp_slowpath_store_behind_seconds_total 1\n" +
		"xdhcp_slowpath_acks_on_horizon_total 29\n"
	ss := serverSideBetween(before, after, 2*time.Second)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"ack p50", ss.AckP50, 5}, {"ack p99", ss.AckP99, 50}, {"wait p50", ss.WaitP50, 1}, {"wait p99", ss.WaitP99, 1},
		{"store p50", ss.StoreP50, 1}, {"store p99", ss.StoreP99, 10},
		{"sent p50", ss.SentP50, 10}, {"sent p99", ss.SentP99, 10},
		{"commit p99", ss.CommitP99, 5}, {"commit mean", ss.CommitMean, 3}, {"leases per commit", ss.LeasesPerTx, 3},
		{"stale/s", ss.Stale, 10}, {"overload/s", ss.Overload, 100}, {"share behind", ss.Behind, 0.25},
		{"share on the horizon", ss.OnHorizon, 0.25},
	} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s: %v ms, want %v", c.name, c.got, c.want)
		}
	}
	if none := serverSideBetween(after, after, time.Second); *none != (ServerSide{}) {
		t.Errorf("no observations between the scrapes: %+v", none)
	}
	// Past the last finite bound: that bound (JSON has no +Inf).
	if p99 := serverSideBetween(before, strings.Replace(after, `class="bulk"`, `class="priority"`, -1), time.Second).WaitP99; p99 != 50 {
		t.Errorf("waits past the last bound: p99 %v ms, want 50", p99)
	}
}
