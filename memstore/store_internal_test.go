package memstore

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/storetest"
)

// key returns the i-th of a test's keys, as long as a guest id.
func key(i int) string { return fmt.Sprintf("01JDQ5Z8M3X9Y7K2V4%08d", i) }

// newStore returns a store with options o, closed when the test ends.
func newStore(t testing.TB, o Options) *Store {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// randomValue returns n random bytes, every byte value likely among them.
func randomValue(rnd *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

// TestConformanceCollisions runs the whole suite with keys' hashes cut to
// a bit or none: every key shares its tag with others, so that lookups
// must tell entries apart by their keys, and probe past other keys'
// entries.
func TestConformanceCollisions(t *testing.T) {
	for _, mask := range []uint64{0, 1 << 63, shardCount - 1} {
		t.Run(fmt.Sprintf("mask=%#x", mask), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) anonymous.Store {
				s := newStore(t, Options{})
				s.mask = mask
				return s
			})
		})
	}
}

// TestKeysApart stores keys that are prefixes of one another, of every
// length a key may have, in one shard under one tag: each keeps its own
// value.
func TestKeysApart(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, Options{})
	s.mask = 0
	long := strings.Repeat("k", maxKey)
	keys := []string{"a", "ab", "abc", "b", "A", key(1), key(1)[:25], long[:64], long[:maxKey-1], long}
	exp := time.Now().Add(time.Hour)
	for _, k := range keys {
		if err := s.Create(ctx, k, anonymous.Entry{Value: []byte(k), Expires: exp}); err != nil {
			t.Fatalf("Create(%q) = %v", k, err)
		}
	}
	for _, k := range keys {
		if e, err := s.Get(ctx, k); err != nil || string(e.Value) != k {
			t.Errorf("Get(%.20q) = %.20q, %v; want its own value", k, e.Value, err)
		}
	}
	for _, k := range []string{"", "abcd", "B", key(2), long + "k"} {
		if _, err := s.Get(ctx, k); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("Get(%.20q) of a key never stored = %v, want ErrNotFound", k, err)
		}
	}
	if err := s.Create(ctx, long+"k", anonymous.Entry{Expires: exp}); err == nil {
		t.Errorf("Create of a key of %d bytes = nil, want an error", maxKey+1)
	}
	if n := s.Len(); n != len(keys) {
		t.Errorf("Len = %d, want %d", n, len(keys))
	}
}

// TestCollisionsSwept checks that entries of colliding keys expire, are
// swept, and free their keys.
func TestCollisionsSwept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, Options{})
		s.mask = 0
		for i := range 5 {
			if err := s.Create(ctx, key(i), anonymous.Entry{Value: []byte("old"), Expires: time.Now().Add(time.Duration(i+1) * 10 * time.Second)}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(61 * time.Second)
		synctest.Wait()
		if n := s.Len(); n != 0 {
			t.Errorf("Len after every entry expired and a sweep = %d, want 0", n)
		}
		sh := &s.shards[0]
		sh.mu.RLock()
		if sh.index.n != 0 || slices.ContainsFunc(sh.index.slots, func(s uint64) bool { return s != 0 }) {
			t.Errorf("after the sweep: index %d, %x; want it empty", sh.index.n, sh.index.slots)
		}
		sh.mu.RUnlock()
		for i := range 5 {
			if err := s.Create(ctx, key(i), anonymous.Entry{Value: []byte(key(i)), Expires: time.Now().Add(time.Hour)}); err != nil {
				t.Errorf("Create of a swept key: %v", err)
			}
		}
		for i := range 5 {
			if e, err := s.Get(ctx, key(i)); err != nil || string(e.Value) != key(i) || e.Version != 1 {
				t.Errorf("Get(%s) = %q version %d, %v", key(i), e.Value, e.Version, err)
			}
		}
	})
}

// sizes are values' sizes around every block class's bounds for a guest
// id's key, and past them.
func sizes() []int {
	over := blockHeader + offKey + len(key(0))
	ns := []int{0, 1, 2, 100, 1000, 64 << 10, 1 << 20}
	for _, c := range classes {
		ns = append(ns, max(c-over-1, 0), max(c-over, 0), max(c-over+1, 0))
	}
	return ns
}

// TestValues writes values of every size, each of random bytes, and reads
// them back with their versions and expiries: created at every size, then
// updated through every size, growing and shrinking.
func TestValues(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, Options{MaxBytes: -1})
	rnd := rand.New(rand.NewPCG(3, 4))
	ns := sizes()
	check := func(k string, want anonymous.Entry, after string) {
		t.Helper()
		got, err := s.Get(ctx, k)
		switch {
		case err != nil:
			t.Fatalf("Get after %s: %v", after, err)
		case !bytes.Equal(got.Value, want.Value):
			t.Fatalf("Get after %s: %d bytes of value, not the %d written", after, len(got.Value), len(want.Value))
		case got.Version != want.Version || !got.Expires.Equal(want.Expires) || got.Durable:
			t.Fatalf("Get after %s: version %d, expiry %v, durable %v; want %d, %v, false", after, got.Version, got.Expires, got.Durable, want.Version, want.Expires)
		}
	}
	for i, n := range ns {
		k := key(i)
		// An expiry with nanoseconds, in a zone that is not UTC: the instant
		// comes back.
		exp := time.Now().Add(time.Hour + time.Duration(i)).In(time.FixedZone("here", 3600))
		e := anonymous.Entry{Value: randomValue(rnd, n), Expires: exp, Version: 99, Durable: true}
		if err := s.Create(ctx, k, e); err != nil {
			t.Fatal(err)
		}
		e.Version = 1
		check(k, e, fmt.Sprintf("a Create of %d bytes", n))
		for _, m := range []int{ns[(i+1)%len(ns)], ns[(i+7)%len(ns)], n, 0, n} {
			e.Value, e.Expires = randomValue(rnd, m), e.Expires.Add(time.Nanosecond)
			if err := s.Update(ctx, k, e); err != nil {
				t.Fatalf("Update from %d to %d bytes: %v", n, m, err)
			}
			e.Version++
			check(k, e, fmt.Sprintf("an Update from %d to %d bytes", n, m))
		}
	}
}

// TestOwnCopy checks that the store keeps its own copy of what it is
// given, and gives each Get its own: callers reuse buffers.
func TestOwnCopy(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, Options{})
	for _, n := range []int{10, 200, 3 * maxBlock} {
		k := key(n)
		buf := bytes.Repeat([]byte{'a'}, n)
		want := bytes.Clone(buf)
		exp := time.Now().Add(time.Hour)
		if err := s.Create(ctx, k, anonymous.Entry{Value: buf, Expires: exp}); err != nil {
			t.Fatal(err)
		}
		clear(buf)
		first, err := s.Get(ctx, k)
		if err != nil || !bytes.Equal(first.Value, want) {
			t.Fatalf("%d bytes: Get after the caller reused its buffer = %q, %v", n, first.Value, err)
		}
		clear(first.Value)
		if second, err := s.Get(ctx, k); err != nil || !bytes.Equal(second.Value, want) {
			t.Fatalf("%d bytes: Get after a caller wrote over the first Get's value = %q, %v", n, second.Value, err)
		}
		buf = bytes.Repeat([]byte{'b'}, n)
		want = bytes.Clone(buf)
		if err := s.Update(ctx, k, anonymous.Entry{Value: buf, Version: 1, Expires: exp}); err != nil {
			t.Fatal(err)
		}
		clear(buf)
		if got, err := s.Get(ctx, k); err != nil || !bytes.Equal(got.Value, want) {
			t.Fatalf("%d bytes: Get after the caller reused its buffer for an Update = %q, %v", n, got.Value, err)
		}
	}
}

// TestGetAllocs: a Get allocates once, for its value, at every size; none
// for an empty value.
func TestGetAllocs(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, Options{})
	for i, n := range []int{0, 1, 16, 180, 700, 5000, maxBlock, 64 << 10, 1 << 20} {
		k := key(i)
		if err := s.Create(ctx, k, anonymous.Entry{Value: bytes.Repeat([]byte{'v'}, n), Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		want := 1.0
		if n == 0 {
			want = 0
		}
		if a := testing.AllocsPerRun(100, func() { s.Get(ctx, k) }); a != want {
			t.Errorf("with %d bytes of value, Get allocates %v times, want %v", n, a, want)
		}
	}
}

// TestUpdateAllocations: an Update whose value fits its entry's block
// allocates nothing, so that returning guests' writes make no garbage.
func TestUpdateAllocations(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, Options{})
	k := key(1)
	e := anonymous.Entry{Value: bytes.Repeat([]byte{'v'}, 180), Expires: time.Now().Add(time.Hour)}
	if err := s.Create(ctx, k, e); err != nil {
		t.Fatal(err)
	}
	e.Version = 1
	a := testing.AllocsPerRun(100, func() {
		if err := s.Update(ctx, k, e); err != nil {
			t.Fatal(err)
		}
		e.Version++
	})
	if a != 0 {
		t.Errorf("Update allocates %v times, want 0", a)
	}
}
