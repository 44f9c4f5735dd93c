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
// renewals and DropLimit of DORA exchanges are lost. perfdhcp is the
// outside check on our generator; its ceiling is the server's DORA rate.
func (r *Rig) RenewReferee(ctx context.Context, s Server, o CompareOptions) RefereeResult {
	out := RefereeResult{Server: s.Name()}
	for rate := o.Start; ctx.Err() == nil; rate *= 2 {
		res, _, err := r.measure(ctx, s, rate, rate, o)
		if err != nil {
			out.Err = err.Error()
			break
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
			break
		}
		if renewed > out.Rate {
			out.Best, out.Rate = res, renewed
		}
	}
	return out
}
