package auth

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"
)

// memFloor is a Floor in memory, standing in for the slow path's bbolt
// record across simulated restarts (the same memFloor handed to a new
// Counter). It counts writes and can be made to fail.
type memFloor struct {
	mu     sync.Mutex
	v      uint64
	stores int
	fail   error
}

func (f *memFloor) Load() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.v, nil
}

func (f *memFloor) Store(v uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.v = v
	f.stores++
	return nil
}

func (f *memFloor) get() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.v
}

// stepClock is a clock the test moves; each reading advances it by tick.
type stepClock struct {
	mu   sync.Mutex
	t    time.Time
	tick time.Duration
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.tick)
	return t
}

func (c *stepClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// draw takes n values and checks each is above prev and covered by the
// floor as stored when it was handed out (so a crash right then could not
// lose it).
func draw(t *testing.T, c *Counter, f *memFloor, prev uint64, n int) uint64 {
	t.Helper()
	for i := 0; i < n; i++ {
		v, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		if v <= prev {
			t.Fatalf("value %d after %d: not strictly increasing", v, prev)
		}
		if fl := f.get(); v > fl {
			t.Fatalf("value %d handed out above the stored floor %d", v, fl)
		}
		prev = v
	}
	return prev
}

func TestCounterAcrossRestartsAndClockSteps(t *testing.T) {
	f := &memFloor{}
	clk := &stepClock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC), tick: time.Microsecond}
	c, err := NewCounter(f, CounterOptions{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	last := draw(t, c, f, 0, 1000)
	if first := uint64(clk.t.Add(-1000 * time.Microsecond).UnixNano()); last < first {
		t.Fatalf("values do not follow the clock: last %d, clock at start %d", last, first)
	}
	// The clock steps back an hour while running: values go on from last.
	clk.set(clk.t.Add(-time.Hour))
	last = draw(t, c, f, last, 1000)
	// Restart (a new Counter on the same floor) with the clock stepped
	// back a day: nothing the first run handed out comes again.
	clk.set(clk.t.Add(-24 * time.Hour))
	c2, err := NewCounter(f, CounterOptions{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	last = draw(t, c2, f, last, 1000)
	// Restart again with the clock stuck (tick 0) at the epoch: still
	// above everything, and still increasing.
	clk.set(time.Unix(0, 0))
	clk.tick = 0
	c3, err := NewCounter(f, CounterOptions{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	last = draw(t, c3, f, last, 1000)
	// The clock jumps far ahead, then a restart with it back: still above.
	clk.set(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	last = draw(t, c3, f, last, 1)
	if want := uint64(clk.t.UnixNano()); last != want {
		t.Fatalf("after the clock jumped to %d the counter is at %d", want, last)
	}
	last = draw(t, c3, f, last, 10)
	clk.set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c4, err := NewCounter(f, CounterOptions{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	draw(t, c4, f, last, 10)
}

func TestCounterWritesTheFloorOncePerReserve(t *testing.T) {
	f := &memFloor{}
	// 1e6 values, one every 10 µs: 10 s of clock, with 1 s reserved per
	// write: about 10 writes, not a million.
	clk := &stepClock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC), tick: 10 * time.Microsecond}
	c, err := NewCounter(f, CounterOptions{Now: clk.now, Reserve: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	draw(t, c, f, 0, 1_000_000)
	if f.stores < 10 || f.stores > 11 {
		t.Fatalf("%d floor writes for 10 s of clock with a 1 s reserve", f.stores)
	}
	// A clock that stands still: one write per Reserve worth of values
	// (1000 ns reserved, so one per 1000 values).
	clk.tick = 0
	f.stores = 0
	c, err = NewCounter(f, CounterOptions{Now: clk.now, Reserve: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	draw(t, c, f, f.get(), 10_000)
	if f.stores != 10 {
		t.Fatalf("%d floor writes for 10000 values with a 1000-value reserve", f.stores)
	}
}

func TestCounterStoreFailureHandsOutNothing(t *testing.T) {
	f := &memFloor{}
	clk := &stepClock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC), tick: time.Millisecond}
	c, err := NewCounter(f, CounterOptions{Now: clk.now, Reserve: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	last := draw(t, c, f, 0, 3)
	disk := errors.New("disk full")
	f.mu.Lock()
	f.fail = disk
	f.mu.Unlock()
	// Values inside the reservation still come; the first beyond it fails.
	var failed bool
	for i := 0; i < 20; i++ {
		v, err := c.Next()
		if err != nil {
			if !errors.Is(err, disk) {
				t.Fatalf("error %v does not wrap the floor's", err)
			}
			failed = true
			break
		}
		if v <= last || v > f.get() {
			t.Fatalf("value %d (last %d, floor %d)", v, last, f.get())
		}
		last = v
	}
	if !failed {
		t.Fatal("the counter went past its reservation without storing it")
	}
	f.mu.Lock()
	f.fail = nil
	f.mu.Unlock()
	draw(t, c, f, last, 100)
}

func TestCounterConcurrent(t *testing.T) {
	f := &memFloor{}
	c, err := NewCounter(f, CounterOptions{Reserve: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 5000
	got := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				v, err := c.Next()
				if err != nil {
					t.Error(err)
					return
				}
				got[w] = append(got[w], v)
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for w, vs := range got {
		for i, v := range vs {
			if seen[v] {
				t.Fatalf("value %d handed out twice", v)
			}
			seen[v] = true
			if i > 0 && v <= vs[i-1] {
				t.Fatalf("worker %d saw %d after %d", w, v, vs[i-1])
			}
			if v > f.get() {
				t.Fatalf("value %d above the floor %d", v, f.get())
			}
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d values, want %d", len(seen), workers*each)
	}
}

func TestCounterExhausted(t *testing.T) {
	f := &memFloor{v: math.MaxUint64 - 2}
	c, err := NewCounter(f, CounterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint64{math.MaxUint64 - 1, math.MaxUint64} {
		if v, err := c.Next(); v != want || err != nil {
			t.Fatalf("Next = %d, %v; want %d", v, err, want)
		}
	}
	if f.get() != math.MaxUint64 {
		t.Fatalf("floor %d", f.get())
	}
	if _, err := c.Next(); !errors.Is(err, ErrCounterExhausted) {
		t.Fatalf("past 2^64-1: %v", err)
	}
	if _, err := NewCounter(f, CounterOptions{Reserve: -time.Second}); err == nil {
		t.Fatal("a negative reserve was accepted")
	}
}

// BenchmarkSignForceRenew builds and signs one FORCERENEW per iteration as
// the slow path will: a replay value from the Counter, the message written
// into a reused buffer, Sign. Issue 16's goal is >= 50k/s on one core
// (go test -bench SignForceRenew -cpu 1).
func BenchmarkSignForceRenew(b *testing.B) {
	f := &memFloor{}
	c, err := NewCounter(f, CounterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	key, err := NewKey()
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 576)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r, err := c.Next()
		if err != nil {
			b.Fatal(err)
		}
		msg := forceRenew(buf[:0], uint32(i), r)
		if err := Sign(msg, key); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signed/s")
}
