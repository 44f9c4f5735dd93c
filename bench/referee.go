package bench

import (
	"context"
	"fmt"
)

// RefereeResult is perfdhcp's view of a server's renewals.
type RefereeResult struct {
	Server string       `json:"server"`
	Best   PerfResult   `json:"best"`
	Rate   float64      `json:"renewals-per-second"`
	Steps  []PerfResult `json:"steps"`
	Err    string       `json:"error,omitempty"`
}

// RenewLossLimit is the renewal loss a referee step may have.
const RenewLossLimit = 0.001

// RenewReferee runs perfdhcp with renewals against s (`-r R -f R`: it
// renews the leases it takes at the rate it takes them, and cannot renew
// faster), doubling R from o.Start while at most RenewLossLimit of
// renewals and DropLimit of DORA exchanges are lost, then bisecting
// o.Bisect times between the last rate that passed and the first that
// failed. perfdhcp is the outside check on our generator; its ceiling is
// the server's DORA rate. Doubling alone halved a result on one unlucky
// step: near the DORA ceiling (8000/s on the 2-CPU VM) a step passes or
// fails by a few percent from run to run, and a failed 8000 step left
// 4000 (xdhcpd-xdp-native's 3994 in the 2026-11-23 report; five runs of
// the same binary since: 8000 failed twice and passed three times).
func (r *Rig) RenewReferee(ctx context.Context, s Server, o CompareOptions) RefereeResult {
	out := RefereeResult{Server: s.Name()}
	// findRate's loss is 0 for a step within both limits, 1 otherwise.
	findRate(ctx, o.Start, 0, o.Bisect, func(rate int) (float64, float64) {
		if out.Err != "" {
			return 0, 1
		}
		res, _, err := r.measure(ctx, s, rate, rate, o)
		if err != nil {
			out.Err = err.Error()
			return 0, 1
		}
		out.Steps = append(out.Steps, res)
		renewed := float64(res.Renew.Received) / res.Duration.Seconds()
		loss := 1.0
		if res.Renew.Sent > 0 {
			loss = 1 - float64(res.Renew.Received)/float64(res.Renew.Sent)
		}
		ok := loss <= RenewLossLimit && res.DropRatio() <= DropLimit && res.Renew.Sent > 0
		fmt.Fprintf(o.Log, "  %-20s perfdhcp -r %d -f %d: %6.0f renewals/s (loss %.2f%%), DORA drops %.1f%% %s\n",
			s.Name(), rate, rate, renewed, 100*loss, 100*res.DropRatio(), map[bool]string{true: "ok", false: "over the limit"}[ok])
		if !ok {
			return renewed, 1
		}
		if renewed > out.Rate {
			out.Best, out.Rate = res, renewed
		}
		return renewed, 0
	})
	return out
}
