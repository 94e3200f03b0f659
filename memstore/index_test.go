package memstore

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestIndex runs random inserts, updates and removals against a map, with
// tags from a small range so that ids collide, clusters form and wrap
// around the table's end.
func TestIndex(t *testing.T) {
	for _, tags := range []uint32{1, 3, 64, 1<<32 - 1} {
		t.Run(fmt.Sprint("tags=", tags), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(uint64(tags), 7))
			var (
				x     index
				a     arena
				want  = map[string]uint32{} // id → ref
				tagOf = map[string]uint32{}
				ids   []string
			)
			newID := func() string {
				id := fmt.Sprint("id-", len(ids))
				ids = append(ids, id)
				tagOf[id] = uint32(rnd.Uint64N(uint64(tags))) | uint32(rnd.IntN(2))<<31
				return id
			}
			record := func(id string) uint32 {
				r, b, _ := a.put(entrySize(id, nil))
				writeEntry(b, id, 1, time.Now().Add(time.Hour), nil)
				return r
			}
			ops := 20_000
			if tags <= 64 { // long clusters: slow probes
				ops = 4_000
			}
			for op := range ops {
				switch k := rnd.IntN(10); {
				case k < 5 || len(want) == 0: // insert
					id := newID()
					if _, ok := x.find(tagOf[id], id, &a); ok {
						t.Fatalf("op %d: found %s before inserting it", op, id)
					}
					r := record(id)
					x.insert(tagOf[id], r)
					want[id] = r
				case k < 7: // update
					id := ids[rnd.IntN(len(ids))]
					i, ok := x.find(tagOf[id], id, &a)
					if _, in := want[id]; ok != in {
						t.Fatalf("op %d: find(%s) = %v, want %v", op, id, ok, in)
					}
					if ok {
						r := record(id)
						x.set(i, r)
						want[id] = r
					}
				default: // remove
					id := ids[rnd.IntN(len(ids))]
					i, ok := x.find(tagOf[id], id, &a)
					if _, in := want[id]; ok != in {
						t.Fatalf("op %d: find(%s) = %v, want %v", op, id, ok, in)
					}
					if ok {
						x.remove(i)
						delete(want, id)
					}
				}
				if op%997 == 0 || op == ops-1 {
					checkIndex(t, &x, &a, want, tagOf)
				}
			}
			rebuilt := x.rebuilt(func(r uint32) uint32 { return r })
			if n := len(rebuilt.slots); n < 2*x.n || n > indexMin && n >= 4*x.n {
				t.Errorf("rebuilt %d records into %d slots, want the fewest that hold them half full", x.n, n)
			}
			checkIndex(t, &rebuilt, &a, want, tagOf)
		})
	}
}

// checkIndex checks that x holds exactly want, each record at a slot its
// probe reaches, and is at most three quarters full.
func checkIndex(t *testing.T, x *index, a *arena, want map[string]uint32, tagOf map[string]uint32) {
	t.Helper()
	if x.n != len(want) || 4*x.n > 3*len(x.slots) {
		t.Fatalf("index holds %d in %d slots, want %d", x.n, len(x.slots), len(want))
	}
	used := 0
	for _, s := range x.slots {
		if s != 0 {
			used++
		}
	}
	if used != x.n {
		t.Fatalf("%d slots in use, n = %d", used, x.n)
	}
	for id, r := range want {
		i, ok := x.find(tagOf[id], id, a)
		if !ok || x.ref(i) != r {
			t.Fatalf("find(%s) = slot %d (ref %#x), %v; want ref %#x", id, i, x.ref(i), ok, r)
		}
	}
}
