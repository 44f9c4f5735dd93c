package loadgen

import (
	"math/bits"
	"time"
)

// Latency is a histogram of durations with about 3% resolution from a
// microsecond to beyond the timeout: 32 sub-buckets per power of two of
// microseconds. It is not safe for concurrent use.
type Latency struct {
	counts [40 * subBuckets]uint64
	n      uint64
}

const subBits = 5
const subBuckets = 1 << subBits

func bucket(us uint64) int {
	if us < subBuckets {
		return int(us)
	}
	exp := bits.Len64(us) - subBits // ≥ 1
	return min(exp*subBuckets+int(us>>(exp-1))-subBuckets, len(Latency{}.counts)-1)
}

// bucketValue is the upper bound of bucket i in microseconds.
func bucketValue(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	exp := i / subBuckets
	return uint64(i%subBuckets+subBuckets)<<(exp-1) + 1<<(exp-1) - 1
}

// Add records one duration.
func (l *Latency) Add(d time.Duration) {
	l.counts[bucket(uint64(max(d, 0)/time.Microsecond))]++
	l.n++
}

// Merge adds o's counts to l.
func (l *Latency) Merge(o *Latency) {
	for i, c := range o.counts {
		l.counts[i] += c
	}
	l.n += o.n
}

// Count is how many durations were recorded.
func (l *Latency) Count() uint64 { return l.n }

// Quantile returns the duration below which a fraction q of the recorded
// ones fall (rounded up to its bucket), or 0 when none were recorded.
func (l *Latency) Quantile(q float64) time.Duration {
	if l.n == 0 {
		return 0
	}
	want := uint64(q*float64(l.n) + 0.5)
	want = max(want, 1)
	var seen uint64
	for i, c := range l.counts {
		seen += c
		if seen >= want {
			return time.Duration(bucketValue(i)) * time.Microsecond
		}
	}
	return time.Duration(bucketValue(len(l.counts)-1)) * time.Microsecond
}
