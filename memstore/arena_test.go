package memstore

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestArena exercises blocks directly: classes, reuse of freed blocks, and
// chunk growth.
func TestArena(t *testing.T) {
	for i, c := range classes {
		if c%blockAlign != 0 || i > 0 && c <= classes[i-1] {
			t.Fatalf("class %d: %d bytes, after %d", i, c, classes[max(i-1, 0)])
		}
	}
	if classes[numClasses-1] != maxBlock {
		t.Fatalf("classes go up to %d, want %d", classes[numClasses-1], maxBlock)
	}
	for n := range maxBlock - blockHeader + 1 {
		c, ok := class(n)
		if !ok || classes[c] < n+blockHeader || c > 0 && classes[c-1] >= n+blockHeader {
			t.Fatalf("class(%d) = %d (%d bytes), %v", n, c, classes[c], ok)
		}
	}
	if _, ok := class(maxBlock - blockHeader + 1); ok {
		t.Fatalf("an entry past maxBlock has a class")
	}

	var a arena
	rnd := rand.New(rand.NewPCG(1, 2))
	live := map[uint32][]byte{}
	for i := range 20_000 {
		switch {
		case len(live) > 0 && rnd.IntN(3) == 0: // drop one
			for r := range live {
				a.drop(r)
				delete(live, r)
				break
			}
		case len(live) > 0 && rnd.IntN(3) == 0: // replace one
			for r := range live {
				rec := bytes.Repeat([]byte{byte(i)}, rnd.IntN(600))
				nr, b, ok := a.replace(r, len(rec))
				if !ok || len(b) != len(rec) {
					t.Fatalf("replace: %d bytes, %v; want %d", len(b), ok, len(rec))
				}
				copy(b, rec)
				delete(live, r)
				if _, dup := live[nr]; dup {
					t.Fatalf("replace returned ref %#x, which holds another record", nr)
				}
				live[nr] = rec
				break
			}
		default:
			n := rnd.IntN(600)
			if i%500 == 0 {
				n = maxBlock + rnd.IntN(1000)
			}
			rec := bytes.Repeat([]byte{byte(i)}, n)
			r, b, ok := a.put(len(rec))
			if !ok || len(b) != len(rec) || !bytes.Equal(b, make([]byte, n)) {
				t.Fatalf("put: %d bytes, %v; want %d zero bytes", len(b), ok, len(rec))
			}
			copy(b, rec)
			if _, dup := live[r]; dup {
				t.Fatalf("put returned ref %#x, which holds another record", r)
			}
			live[r] = rec
		}
	}
	used := 0
	for r, want := range live {
		if got := a.get(r); !bytes.Equal(got, want) {
			t.Fatalf("record %#x: %d bytes, want %d", r, len(got), len(want))
		}
		if c, ok := class(len(want)); ok {
			used += classes[c]
		}
	}
	if used != a.used {
		t.Errorf("used = %d, want %d", a.used, used)
	}
	if a.size > 2*a.used+2*chunkMax {
		t.Errorf("%d bytes of chunks for %d in use: freed blocks not reused", a.size, a.used)
	}
	for _, c := range a.chunks {
		if len(c) > chunkMax {
			t.Errorf("a chunk of %d bytes", len(c))
		}
	}
}
