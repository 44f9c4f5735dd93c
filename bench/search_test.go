package bench

import (
	"context"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
)

// TestSearchBest: the result is the highest answered rate of any phase
// within the loss limit, including phases the generator could not offer
// in full and the open loop, and never a phase over the limit or with a
// wrong answer.
func TestSearchBest(t *testing.T) {
	tests := []struct {
		name     string
		server   func(sent float64) (answered float64, wrong int64)
		paced    float64 // the most the generator sends a second when pacing
		open     float64 // and when not
		want     float64
		wantOpen bool
	}{
		// Every phase falls short of its target from 650k/s on, yet nothing
		// is lost: the open loop's 700k counts.
		{"generator-bound", func(s float64) (float64, int64) { return s * 0.9998, 0 }, 650_000, 700_000, 699_860, true},
		// Doubling passes 51.2k and fails 102.4k; bisecting fails 76.8k and
		// 64k and passes 57.6k; the open loop loses most.
		{"server-bound", func(s float64) (float64, int64) { return min(s, 60_000), 0 }, 650_000, 700_000, 57_600, false},
		// 9.6k passes; 10.4k and up are answered in full but one wrongly.
		{"wrong answers never count", func(s float64) (float64, int64) {
			if s > 10_000 {
				return s, 1
			}
			return s, 0
		}, 650_000, 700_000, 9_600, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phase := func(rate int) (loadgen.Result, error) {
				sent := tt.open
				if rate > 0 {
					sent = min(float64(rate), tt.paced)
				}
				ans, wrong := tt.server(sent)
				return loadgen.Result{Scenario: loadgen.Renew, TargetRate: rate, Seconds: 1, Started: int64(sent), PacketsSent: int64(sent),
					Answered: int64(ans), Wrong: wrong, Dropped: int64(sent - ans), Rate: ans, Loss: (sent - ans) / sent}, nil
			}
			o := ScenarioOptions{MaxLoss: 0.001, StartRate: 100, settle: time.Microsecond}
			res := (&Rig{}).search(context.Background(), o, ScenarioResult{Scenario: loadgen.Renew}, "test", phase)
			if res.Err != "" {
				t.Fatal(res.Err)
			}
			if res.Best.Rate != tt.want {
				t.Errorf("best %.0f answered/s, want %.0f", res.Best.Rate, tt.want)
			}
			if (res.Best.TargetRate == 0) != tt.wantOpen {
				t.Errorf("best phase at target %d/s; want the open loop: %v", res.Best.TargetRate, tt.wantOpen)
			}
			for _, st := range append(res.Steps, *res.OpenLoop) {
				if st.Rate > res.Best.Rate && within(st, o.MaxLoss) {
					t.Errorf("a phase answered %.0f/s within the limit, more than the result", st.Rate)
				}
			}
		})
	}
}
