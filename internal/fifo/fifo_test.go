package fifo

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestQueueMatchesASlice runs random pushes, pops and filters against a
// plain slice used as a queue.
func TestQueueMatchesASlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var q Queue[int]
	var want []int
	next := 0
	for step := range 100000 {
		switch op := rng.IntN(20); {
		case op < 10:
			q.Push(next)
			want = append(want, next)
			next++
		case op < 17 && len(want) > 0:
			if got := q.Front(); got != want[0] {
				t.Fatalf("step %d: front %d, want %d", step, got, want[0])
			}
			q.Pop()
			want = want[1:]
		case op < 19 && len(want) > 0:
			n := 1 + rng.IntN(len(want))
			if got := q.PopInto(nil, n); !slices.Equal(got, want[:n]) {
				t.Fatalf("step %d: popped %v, want %v", step, got, want[:n])
			}
			want = want[n:]
		case op == 19 && rng.IntN(50) == 0:
			odd := func(v int) bool { return v%2 == 1 }
			q.Keep(odd)
			want = slices.DeleteFunc(want, func(v int) bool { return !odd(v) })
		}
		if q.Len() != len(want) {
			t.Fatalf("step %d: len %d, want %d", step, q.Len(), len(want))
		}
		for i := range want {
			if q.At(i) != want[i] {
				t.Fatalf("step %d: entry %d is %d, want %d", step, i, q.At(i), want[i])
			}
		}
	}
}

// TestSteadyLengthReusesMemory: a queue whose length stays the same (one in,
// one out, as offers are made and lapse) stops allocating.
func TestSteadyLengthReusesMemory(t *testing.T) {
	type ref struct {
		ip    uint32
		until int64
	}
	var q Queue[ref]
	for range 1000 {
		q.Push(ref{})
	}
	allocs := testing.AllocsPerRun(1, func() {
		for range 100000 {
			q.Push(ref{})
			q.Pop()
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations in 100,000 pushes and pops at a steady length", allocs)
	}
	if q.Len() != 1000 {
		t.Fatalf("len %d, want 1000", q.Len())
	}
}
