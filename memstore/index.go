package memstore

// An index finds one shard's entries by key. It is a hash table with open
// addressing and linear probing, whose slots are uint64s: the upper 32
// bits of the key's hash (its tag, whose low bits also place it), and 1 +
// the ref of its entry in the shard's arena; 0 is an empty slot. No slot
// holds a pointer, and a lookup usually reads one cache line of slots. A
// tag only says that an entry may be the one sought: the entry's own key
// decides, so keys whose hashes collide live side by side, and a lookup
// that meets another key's entry under its tag probes on.
type index struct {
	slots []uint64 // a power of two of them, or none
	n     int      // slots in use
}

// indexMin is the slots of a new index.
const indexMin = 8

// find returns the slot of the entry of key, whose tag is tag, and true;
// or, when there is none, false.
func (x *index) find(tag uint32, key string, a *arena) (int, bool) {
	if x.n == 0 {
		return 0, false
	}
	mask := len(x.slots) - 1
	for i := int(tag) & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		switch {
		case s == 0:
			return 0, false
		case uint32(s>>32) == tag && hasKey(a.get(uint32(s)-1), key):
			return i, true
		}
	}
}

// ref returns the ref that slot i holds.
func (x *index) ref(i int) uint32 { return uint32(x.slots[i]) - 1 }

// set makes slot i name the entry at r.
func (x *index) set(i int, r uint32) {
	x.slots[i] = x.slots[i]&^(1<<32-1) | uint64(r+1)
}

// insert adds the entry at r, of a key with tag tag that the index does
// not hold. It keeps the index at most three quarters full.
func (x *index) insert(tag uint32, r uint32) {
	if 4*(x.n+1) > 3*len(x.slots) {
		x.resize(max(2*len(x.slots), indexMin))
	}
	x.place(uint64(tag)<<32 | uint64(r+1))
	x.n++
}

// place puts slot s in the first empty slot from its tag's.
func (x *index) place(s uint64) {
	mask := len(x.slots) - 1
	i := int(uint32(s>>32)) & mask
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = s
}

// resize moves the slots into a table of n slots, a power of two above
// the slots in use.
func (x *index) resize(n int) {
	old := x.slots
	x.slots = make([]uint64, n)
	for _, s := range old {
		if s != 0 {
			x.place(s)
		}
	}
}

// remove empties slot i, and moves back the slots after it that probing
// would no longer reach, so that the index needs no tombstones.
func (x *index) remove(i int) {
	mask := len(x.slots) - 1
	x.n--
	for j := i; ; {
		x.slots[i] = 0
		for {
			j = (j + 1) & mask
			s := x.slots[j]
			if s == 0 {
				return
			}
			// s stays at j when its home h lies cyclically in (i, j]: a probe
			// from h reaches j without crossing the hole at i.
			h := int(uint32(s>>32)) & mask
			if i <= j && (i < h && h <= j) || i > j && (i < h || h <= j) {
				continue
			}
			x.slots[i] = s
			i = j
			break
		}
	}
}

// rebuilt returns a copy of the index in the smallest table that holds it
// at most half full, its refs changed by move.
func (x *index) rebuilt(move func(uint32) uint32) index {
	n := indexMin
	for n < 2*x.n {
		n *= 2
	}
	fresh := index{slots: make([]uint64, n), n: x.n}
	for _, s := range x.slots {
		if s != 0 {
			fresh.place(s&^(1<<32-1) | uint64(move(uint32(s)-1)+1))
		}
	}
	return fresh
}
