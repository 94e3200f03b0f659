package memstore

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// An arena keeps one shard's encoded records. A record lives in a block,
// carved from a byte chunk: a 2-byte length, the record, and room to spare
// up to the block's size class. Blocks are named by a ref, a uint32 (chunk
// index and offset), so nothing that points at a record is a pointer: the
// garbage collector sees some thousands of noscan chunks, not a million
// records. Freed blocks go on a free list of their class, linked through
// the blocks themselves, and are reused by the next record of that class.
// A record too large for a block is an allocation of its own, named by a
// ref with bigRef set.
//
// A new chunk holds a quarter of what the arena holds already, from
// chunkMin to chunkMax bytes, so that a growing arena leaves little of its
// last chunk unused. Chunks are never returned, except by compaction,
// which copies the live records into a fresh arena once most of one is
// free.
type arena struct {
	chunks [][]byte
	top    int                // bytes carved from the last chunk
	free   [numClasses]uint32 // per class, 1 + the ref of the first free block; 0 for none
	size   int                // bytes in chunks
	used   int                // bytes in blocks that hold records

	big     [][]byte // records larger than maxBlock
	bigFree []uint32 // indexes of nil entries in big
}

const (
	blockAlign  = 16       // blocks' sizes and offsets are multiples of it
	blockHeader = 2        // a block starts with its record's length, little-endian
	maxBlock    = 8 << 10  // the largest block; a larger record is allocated apart
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
// (a guest without data fits a 224- to 256-byte block).
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

// class returns the class of a block holding a record of n bytes, and
// false when the record is too large for a block.
func class(n int) (uint8, bool) {
	n += blockHeader
	if n > maxBlock {
		return 0, false
	}
	return classOf[(n+blockAlign-1)/blockAlign], true
}

// get returns the record at r: the arena's own bytes, valid until the
// record is replaced or dropped.
func (a *arena) get(r uint32) []byte {
	if r&bigRef != 0 {
		return a.big[r&^bigRef]
	}
	chunk := a.chunks[r>>offBits]
	off := int(r&(1<<offBits-1)) * blockAlign
	n := int(binary.LittleEndian.Uint16(chunk[off:]))
	return chunk[off+blockHeader : off+blockHeader+n]
}

// put stores a copy of rec and returns its ref; false when the arena has
// as many chunks as refs can name.
func (a *arena) put(rec []byte) (uint32, bool) {
	c, ok := class(len(rec))
	if !ok {
		b := bytes.Clone(rec)
		if n := len(a.bigFree); n > 0 {
			i := a.bigFree[n-1]
			a.bigFree = a.bigFree[:n-1]
			a.big[i] = b
			return bigRef | i, true
		}
		if len(a.big) == bigRef-1 {
			return 0, false
		}
		a.big = append(a.big, b)
		return bigRef | uint32(len(a.big)-1), true
	}
	r, ok := a.block(c)
	if !ok {
		return 0, false
	}
	a.write(r, rec)
	a.used += classes[c]
	return r, true
}

// write puts rec in the block at r, which is of rec's class.
func (a *arena) write(r uint32, rec []byte) {
	chunk := a.chunks[r>>offBits]
	off := int(r&(1<<offBits-1)) * blockAlign
	prev := int(binary.LittleEndian.Uint16(chunk[off:]))
	binary.LittleEndian.PutUint16(chunk[off:], uint16(len(rec)))
	n := copy(chunk[off+blockHeader:], rec)
	if prev > n { // no trace of a longer record that was here before
		clear(chunk[off+blockHeader+n : off+blockHeader+prev])
	}
}

// replace stores rec in place of the record at r and returns its ref: r
// when rec fits r's block, else a new one, r being freed.
func (a *arena) replace(r uint32, rec []byte) (uint32, bool) {
	if r&bigRef == 0 {
		old, _ := class(len(a.get(r)))
		if c, ok := class(len(rec)); ok && c == old {
			a.write(r, rec)
			return r, true
		}
	}
	nr, ok := a.put(rec)
	if ok {
		a.drop(r)
	}
	return nr, ok
}

// drop frees the record at r, and clears its bytes.
func (a *arena) drop(r uint32) {
	if r&bigRef != 0 {
		i := r &^ bigRef
		clear(a.big[i])
		a.big[i] = nil
		a.bigFree = append(a.bigFree, i)
		return
	}
	rec := a.get(r)
	c, _ := class(len(rec))
	clear(rec)
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

// move stores the record at r of old in a and returns its new ref. A big
// record moves without a copy.
func (a *arena) move(old *arena, r uint32) uint32 {
	if r&bigRef != 0 {
		a.big = append(a.big, old.big[r&^bigRef])
		return bigRef | uint32(len(a.big)-1)
	}
	nr, _ := a.put(old.get(r)) // a holds fewer records than old did: there is room
	return nr
}
