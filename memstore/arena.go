package memstore

import (
	"encoding/binary"
	"math/bits"
)

// An arena keeps one shard's entries (entry.go). An entry lives in a
// block, carved from a byte chunk: a 2-byte length, the entry, and room to
// spare up to the block's size class. Blocks are named by a ref, a uint32
// (chunk index and offset), so nothing that points at an entry is a
// pointer: the garbage collector sees some thousands of noscan chunks, not
// a million entries. Freed blocks go on a free list of their class, linked
// through the blocks themselves, and are reused by the next entry of that
// class. An entry too large for a block is an allocation of its own, named
// by a ref with bigRef set.
//
// A new chunk holds a quarter of what the arena holds already, from
// chunkMin to chunkMax bytes, so that a growing arena leaves little of its
// last chunk unused. Chunks are never returned, except by compaction,
// which copies the live entries into a fresh arena once most of one is
// free.
type arena struct {
	chunks [][]byte
	top    int                // bytes carved from the last chunk
	free   [numClasses]uint32 // per class, 1 + the ref of the first free block; 0 for none
	size   int                // bytes in chunks
	used   int                // bytes in blocks that hold entries

	big     [][]byte // entries larger than maxBlock
	bigFree []uint32 // indexes of nil entries in big
}

const (
	blockAlign  = 16       // blocks' sizes and offsets are multiples of it
	blockHeader = 2        // a block starts with its entry's length, little-endian
	maxBlock    = 8 << 10  // the largest block; a larger entry is allocated apart
	chunkMin    = 1 << 10  // the first chunk's size
	chunkMax    = 64 << 10 // chunks' largest size
	offBits     = 12       // a ref's low bits: the block's offset in its chunk, in blockAligns
	bigRef      = 1 << 31  // a ref with this bit is an index into big
	maxChunks   = bigRef >> offBits
	compactMin  = 256 << 10 // free bytes an arena tolerates before compaction
)

// numClasses is the number of block sizes.
const numClasses = 55

// classes are the blocks' sizes: every 16 bytes up to 256, then eight
// steps per doubling, so that a block wastes at most an eighth of its size
// (a guest's entry without data fits a 240- to 320-byte block).
var classes = func() (cs [numClasses]int) {
	i := 0
	for n := 2 * blockAlign; n <= maxBlock; i++ {
		cs[i] = n // an index out of range if numClasses is too small
		step := blockAlign
		if n >= 256 {
			step = 1 << (bits.Len(uint(n)) - 1) / 8
		}
		n += step
	}
	if i != numClasses {
		panic("memstore: numClasses is not the number of classes")
	}
	return cs
}()

// classOf[(n+blockAlign-1)/blockAlign] is the smallest class of at least n
// bytes.
var classOf = func() (t [maxBlock/blockAlign + 1]uint8) {
	c := 0
	for i := range t {
		for classes[c] < i*blockAlign {
			c++
		}
		t[i] = uint8(c)
	}
	return t
}()

// class returns the class of a block holding an entry of n bytes, and
// false when the entry is too large for a block.
func class(n int) (uint8, bool) {
	n += blockHeader
	if n > maxBlock {
		return 0, false
	}
	return classOf[(n+blockAlign-1)/blockAlign], true
}

// get returns the entry at r: the arena's own bytes, valid until the
// entry is replaced or dropped.
func (a *arena) get(r uint32) []byte {
	if r&bigRef != 0 {
		return a.big[r&^bigRef]
	}
	chunk := a.chunks[r>>offBits]
	off := int(r&(1<<offBits-1)) * blockAlign
	n := int(binary.LittleEndian.Uint16(chunk[off:]))
	return chunk[off+blockHeader : off+blockHeader+n]
}

// put returns a block for an entry of n bytes: its ref, and its n bytes,
// for the caller to fill before it lets go of the shard's lock; false when
// the arena has as many chunks as refs can name.
func (a *arena) put(n int) (uint32, []byte, bool) {
	c, ok := class(n)
	if !ok {
		b := make([]byte, n)
		if k := len(a.bigFree); k > 0 {
			i := a.bigFree[k-1]
			a.bigFree = a.bigFree[:k-1]
			a.big[i] = b
			return bigRef | i, b, true
		}
		if len(a.big) == bigRef-1 {
			return 0, nil, false
		}
		a.big = append(a.big, b)
		return bigRef | uint32(len(a.big)-1), b, true
	}
	r, ok := a.block(c)
	if !ok {
		return 0, nil, false
	}
	a.used += classes[c]
	return r, a.resize(r, n), true
}

// resize sets the length of the entry in the block at r, which is of n's
// class, to n, and returns its bytes.
func (a *arena) resize(r uint32, n int) []byte {
	chunk := a.chunks[r>>offBits]
	off := int(r&(1<<offBits-1)) * blockAlign
	prev := int(binary.LittleEndian.Uint16(chunk[off:]))
	binary.LittleEndian.PutUint16(chunk[off:], uint16(n))
	if prev > n { // no trace of a longer entry that was here before
		clear(chunk[off+blockHeader+n : off+blockHeader+prev])
	}
	return chunk[off+blockHeader : off+blockHeader+n]
}

// replace returns a block for an entry of n bytes that takes the place of
// the entry at r, as put does: r's own when n fits its class, else a new
// one, r being freed.
func (a *arena) replace(r uint32, n int) (uint32, []byte, bool) {
	if r&bigRef == 0 {
		old, _ := class(len(a.get(r)))
		if c, ok := class(n); ok && c == old {
			return r, a.resize(r, n), true
		}
	}
	nr, b, ok := a.put(n)
	if ok {
		a.drop(r)
	}
	return nr, b, ok
}

// drop frees the entry at r, and clears its bytes.
func (a *arena) drop(r uint32) {
	if r&bigRef != 0 {
		i := r &^ bigRef
		clear(a.big[i])
		a.big[i] = nil
		a.bigFree = append(a.bigFree, i)
		return
	}
	e := a.get(r)
	c, _ := class(len(e))
	clear(e)
	a.push(c, r)
	a.used -= classes[c]
}

// push puts the block at r on the free list of class c: the block's
// length is zero, and the 4 bytes after it link to the next free block.
func (a *arena) push(c uint8, r uint32) {
	b := a.block4(r)
	binary.LittleEndian.PutUint16(b, 0)
	binary.LittleEndian.PutUint32(b[blockHeader:], a.free[c])
	a.free[c] = r + 1
}

// pop takes the first block off the free list of class c, if there is
// one.
func (a *arena) pop(c uint8) (uint32, bool) {
	if a.free[c] == 0 {
		return 0, false
	}
	r := a.free[c] - 1
	b := a.block4(r)
	a.free[c] = binary.LittleEndian.Uint32(b[blockHeader:])
	clear(b[blockHeader:])
	return r, true
}

// block4 returns the first bytes of the block at r: its length, and room
// for a free list's link.
func (a *arena) block4(r uint32) []byte {
	off := int(r&(1<<offBits-1)) * blockAlign
	return a.chunks[r>>offBits][off : off+blockHeader+4]
}

// block returns a free block of class c: a freed one, else one carved from
// the last chunk, or from a new chunk.
func (a *arena) block(c uint8) (uint32, bool) {
	if r, ok := a.pop(c); ok {
		return r, true
	}
	size := classes[c]
	if len(a.chunks) == 0 || a.top+size > len(a.chunks[len(a.chunks)-1]) {
		if len(a.chunks) == maxChunks {
			return 0, false
		}
		a.retireTop()
		// A quarter of the arena, at least; append rounds it up to what
		// the Go allocator allocates.
		n := min(max(a.size/4, size, chunkMin), chunkMax)
		chunk := append([]byte(nil), make([]byte, n)...)
		chunk = chunk[:min(cap(chunk), chunkMax)]
		a.chunks = append(a.chunks, chunk)
		a.size += len(chunk)
		a.top = 0
	}
	r := a.ref(a.top)
	a.top += size
	return r, true
}

// ref names the block at offset off of the last chunk.
func (a *arena) ref(off int) uint32 {
	return uint32(len(a.chunks)-1)<<offBits | uint32(off/blockAlign)
}

// retireTop puts what is left of the last chunk on the free lists, as the
// largest blocks that fit.
func (a *arena) retireTop() {
	if len(a.chunks) == 0 {
		return
	}
	last := len(a.chunks[len(a.chunks)-1])
	for c := numClasses - 1; c >= 0; c-- {
		for a.top+classes[c] <= last {
			a.push(uint8(c), a.ref(a.top))
			a.top += classes[c]
		}
	}
}

// wasteful reports whether compaction would free enough to be worth it:
// more than half of the chunks' bytes, and at least compactMin.
func (a *arena) wasteful() bool {
	free := a.size - a.used
	return free > a.used && free >= compactMin
}

// move stores the entry at r of old in a and returns its new ref. A big
// entry moves without a copy.
func (a *arena) move(old *arena, r uint32) uint32 {
	if r&bigRef != 0 {
		a.big = append(a.big, old.big[r&^bigRef])
		return bigRef | uint32(len(a.big)-1)
	}
	e := old.get(r)
	nr, b, _ := a.put(len(e)) // a holds fewer entries than old did: there is room
	copy(b, e)
	return nr
}
