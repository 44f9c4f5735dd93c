package lease

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The table's fixed-size records live outside Go's heap, in anonymous
// mappings the kernel may back with huge pages (MADV_HUGEPAGE). Go's heap
// gets 4 KiB pages unless the system runs transparent huge pages in
// "always" mode, and on the virtual machines this is measured on a 4 KiB
// page's first touch costs about 10 µs: the 1.2 GB of records of ten
// million leases took 300,000 page faults, some 3 s of the start-up.
// Touched through 2 MiB pages, memory the VM had used before took 32 ms
// for 512 MiB instead of 1.5 s; memory it had never used still costs about
// 2 ms per MB (104 MB in 236 ms, 402 ms through 4 KiB pages). A
// record holds no Go pointer (its byte fields are in a Go slice beside it,
// Table.blobs), so the collector needs to see none of it, and it is not
// scanned either.

// chunkBytes is the size of one mapping of records: a multiple of the
// 2 MiB huge page, so that the kernel aligns it to one.
const chunkBytes = 8 << 20

// chunkRecords is how many records a chunk holds.
const chunkRecords = chunkBytes / int(unsafe.Sizeof(record{}))

// mappings are the chunks a Table mapped, unmapped when the Table is
// collected (runtime.AddCleanup in newChunk).
type mappings struct {
	mem [][]byte
	// unmapped is set once the cleanup has run (a test waits for it).
	unmapped atomic.Bool
}

func (m *mappings) unmap() {
	for _, b := range m.mem {
		_ = unix.Munmap(b)
	}
	m.mem = nil
	m.unmapped.Store(true)
}

// newChunk returns room for chunkRecords records, zeroed: mapped when the
// system lets it (then the Table's cleanup unmaps it), else from Go's
// heap.
func (t *Table) newChunk() []record {
	mem, err := unix.Mmap(-1, 0, chunkBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		// Under a tight address space or memory lock limit, Go's heap
		// serves as before.
		return make([]record, chunkRecords)
	}
	// Advice only: without transparent huge pages (or with them off)
	// the mapping works with 4 KiB pages.
	_ = unix.Madvise(mem, unix.MADV_HUGEPAGE)
	if t.maps == nil {
		t.maps = &mappings{}
		runtime.AddCleanup(t, (*mappings).unmap, t.maps)
	}
	t.maps.mem = append(t.maps.mem, mem)
	return unsafe.Slice((*record)(unsafe.Pointer(&mem[0])), chunkRecords)
}
