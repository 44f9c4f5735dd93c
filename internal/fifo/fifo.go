// Package fifo is a first-in, first-out queue that reuses its memory.
//
// The slow path's queues (offers by age, commits waiting their turn, the
// lease store's jobs) keep a steady length under load while entries pass
// through them at tens of thousands a second. Slicing the front off
// (q = q[1:]) and appending allocates a new array whenever the end runs
// out of room, however short the queue: a few hundred bytes per DHCP
// exchange, which the garbage collector then paid for.
package fifo

// Queue holds entries in the order pushed. The front is taken by advancing
// an index; before the array would have to grow, the entries still queued
// slide to its start if they fill no more than half of it. The zero Queue
// is empty and ready to use.
type Queue[T any] struct {
	buf  []T
	head int
}

// Len is how many entries are queued.
func (q *Queue[T]) Len() int { return len(q.buf) - q.head }

// Push adds v at the back.
func (q *Queue[T]) Push(v T) {
	if len(q.buf) == cap(q.buf) && q.head > 0 && q.head >= len(q.buf)/2 {
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:]) // let go of what the moved entries referenced
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, v)
}

// Front is the oldest entry; the queue must not be empty.
func (q *Queue[T]) Front() T { return q.buf[q.head] }

// At is the i-th oldest entry, i < Len.
func (q *Queue[T]) At(i int) T { return q.buf[q.head+i] }

// Pop removes the oldest entry; the queue must not be empty.
func (q *Queue[T]) Pop() {
	var zero T
	q.buf[q.head] = zero
	q.advance(1)
}

// PopInto removes the n oldest entries, n <= Len, appending them to dst,
// which it returns.
func (q *Queue[T]) PopInto(dst []T, n int) []T {
	front := q.buf[q.head : q.head+n]
	dst = append(dst, front...)
	clear(front)
	q.advance(n)
	return dst
}

func (q *Queue[T]) advance(n int) {
	q.head += n
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	}
}

// Keep drops, in place, the entries live rejects.
func (q *Queue[T]) Keep(live func(T) bool) {
	n := 0
	for _, v := range q.buf[q.head:] {
		if live(v) {
			q.buf[n] = v
			n++
		}
	}
	clear(q.buf[n:])
	q.buf, q.head = q.buf[:n], 0
}
