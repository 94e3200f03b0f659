package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/guestpass/anonymous"
)

// The clauses of Create, Get and Update, one test each, in the order of the
// contract's text.

var createTests = []test{
	{name: "RoundTrip", fn: func(t *testing.T, s anonymous.Store) {
		// Values a careless encoding loses: every byte value (NUL, CR LF,
		// invalid UTF-8), 64 KiB, a single NUL, and no bytes at all.
		every := make([]byte, 512)
		for i := range 256 {
			every[i], every[511-i] = byte(i), byte(i)
		}
		for i, c := range []struct {
			name  string
			value []byte
		}{
			{"every byte value, up and down", every},
			{"64 KiB of random bytes", randomValue(largeValue)},
			{"a single NUL", []byte{0}},
			{"a nil Value", nil},
			{"an empty Value", []byte{}},
		} {
			// Durable on every other write: a store may heed it or not,
			// and Get returns it false.
			key := newKey()
			want := create(t, s, key, anonymous.Entry{Value: c.value, Expires: now().Add(long), Durable: i%2 == 0})
			same(t, s, key, want, "Create of "+c.name)
		}
	}},
	{name: "StoresACopy", fn: func(t *testing.T, s anonymous.Store) {
		// The package reuses its buffers once a call returns, and a store
		// leaves the caller's bytes alone.
		v := []byte("cart: 3 items")
		key := newKey()
		want := create(t, s, key, anonymous.Entry{Value: v, Expires: now().Add(long)})
		if string(v) != "cart: 3 items" {
			t.Errorf("Create changed the bytes it was given to %q", v)
		}
		flip(v)
		same(t, s, key, want, "changing the bytes passed to Create")
	}},
	{name: "IgnoresVersion", fn: func(t *testing.T, s anonymous.Store) {
		// Every new entry is version 1, whatever Version the Entry held.
		for _, v := range []uint64{0, 1, 41, math.MaxUint64} {
			key := newKey()
			want := create(t, s, key, anonymous.Entry{Value: []byte("v"), Version: v, Expires: now().Add(long)})
			same(t, s, key, want, fmt.Sprintf("Create with Version %d", v))
		}
	}},
	{name: "Exists", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		key, first := fresh(t, s, "first", now().Add(long))
		// The loser's bytes and its short expiry must not reach the store.
		loser := anonymous.Entry{Value: []byte("second"), Expires: expiry(short), Durable: true}
		is(t, "a second Create of one key", s.Create(ctx, key, loser), anonymous.ErrExists)
		same(t, s, key, first, "a Create that returned ErrExists")
		second := update(t, s, key, next(first, []byte("updated"), now().Add(long)))
		is(t, "a Create over version 2", s.Create(ctx, key, loser), anonymous.ErrExists)
		same(t, s, key, second, "a Create over version 2")
		sleepUntil(loser.Expires.Add(slack))
		same(t, s, key, second, "the expiry of Creates that returned ErrExists")
	}},
	{name: "ConcurrentOneWinner", fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		for range rounds {
			key := newKey()
			errs := race(racers, func(i int) error {
				return s.Create(ctx, key, anonymous.Entry{Value: fmt.Appendf(nil, "racer %d", i), Expires: now().Add(long)})
			})
			if w := oneWinner(t, "concurrent Create of one key", errs, anonymous.ErrExists); w >= 0 {
				same(t, s, key, anonymous.Entry{Value: fmt.Appendf(nil, "racer %d", w), Version: 1}, "concurrent Creates (the winner's)")
			}
		}
	}},
	{name: "AfterExpiry", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		// An expired entry no longer exists, so its key is free, and the
		// new entry starts again at version 1.
		exp := expiry(short)
		key, old := fresh(t, s, "old", exp)
		update(t, s, key, next(old, []byte("old, updated"), exp))
		sleepUntil(exp.Add(slack))
		reborn := create(t, s, key, anonymous.Entry{Value: []byte("new"), Expires: now().Add(long)})
		same(t, s, key, reborn, "Create over an expired entry")
	}},
	{name: "KeysAreSeparate", fn: func(t *testing.T, s anonymous.Store) {
		// Keys that differ in one character, in case, by a trailing space,
		// or one a prefix of the other, are as different as any two; so
		// are keys of every character a key may hold.
		id := newKey()
		keys := []string{id, sibling(id), strings.ToLower(id), id[:len(id)-1], id + "0",
			"a", "A", "a ", " a", "a:b", "a*", "?", strings.Repeat("k", 63), strings.Repeat("k", 64)}
		var printable []byte
		for c := byte(' '); c <= '~'; c++ {
			if c != '{' && c != '}' {
				printable = append(printable, c)
			}
		}
		keys = append(keys, string(printable[:64]), string(printable[64:]))
		want := map[string]anonymous.Entry{}
		for _, k := range keys {
			want[k] = create(t, s, k, anonymous.Entry{Value: []byte("value of " + k), Expires: now().Add(long)})
		}
		for _, k := range keys {
			same(t, s, k, want[k], fmt.Sprintf("creating %d keys", len(keys)))
		}
		gone(t, s, sibling(sibling(id)), fmt.Sprintf("creating %d other keys", len(keys)))
		want[id] = update(t, s, id, next(want[id], []byte("updated"), now().Add(long)))
		for _, k := range keys {
			same(t, s, k, want[k], fmt.Sprintf("updating %q", id))
		}
	}},
}

var getTests = []test{
	{name: "NotFound", fn: func(t *testing.T, s anonymous.Store) {
		gone(t, s, newKey(), "nothing")
		fresh(t, s, "another", now().Add(long))
		gone(t, s, newKey(), "creating another key")
	}},
	{name: "ReturnsACopy", fn: func(t *testing.T, s anonymous.Store) {
		// The package decodes in place what Get returns.
		key, want := fresh(t, s, "cart: 3 items", now().Add(long))
		flip(get(t, s, key).Value)
		same(t, s, key, want, "changing the bytes Get returned")
		if a, b := get(t, s, key).Value, get(t, s, key).Value; len(a) > 0 && len(b) > 0 && &a[0] == &b[0] {
			t.Errorf("two Gets returned the same bytes")
		}
	}},
	{name: "Expires", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		// To the millisecond, give or take slack: an expiry kept in whole
		// seconds, rounded either way, is off by 100 ms or more.
		exp := expiry(short)
		key, want := fresh(t, s, "v", exp)
		sleepUntil(exp.Add(-slack))
		alive(t, s, key, want, exp, "waiting out all but the last moments of the entry's life")
		sleepUntil(exp.Add(slack))
		gone(t, s, key, "the entry's Expires")
	}},
	{name: "EmptyValue", fn: func(t *testing.T, s anonymous.Store) {
		// An empty value is a value, not a missing entry, and an Update to
		// one empties the entry.
		for _, v := range [][]byte{nil, {}} {
			key := newKey()
			e := create(t, s, key, anonymous.Entry{Value: v, Expires: now().Add(long)})
			same(t, s, key, e, fmt.Sprintf("Create with Value %#v", v))
			e = update(t, s, key, next(e, []byte("cart: 1 item"), now().Add(long)))
			e = update(t, s, key, next(e, v, now().Add(long)))
			same(t, s, key, e, fmt.Sprintf("an Update to Value %#v", v))
		}
	}},
}

var updateTests = []test{
	{name: "Replaces", fn: func(t *testing.T, s anonymous.Store) {
		// Each Update is one more version, also one that changes nothing
		// but the expiry (a visit that slides it).
		key, v := fresh(t, s, "v1", now().Add(long))
		v = update(t, s, key, next(v, []byte("cart: 1 item"), now().Add(2*long)))
		same(t, s, key, v, "Update of version 1")
		v = update(t, s, key, next(v, randomValue(largeValue), now().Add(2*long)))
		same(t, s, key, v, "Update of version 2 to 64 KiB")
		v = update(t, s, key, next(v, bytes.Clone(v.Value), now().Add(3*long)))
		same(t, s, key, v, "an Update of version 3 that changed only the expiry")
	}},
	{name: "Conflict", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		// Only the version read may be replaced; a refused Update changes
		// nothing, not even the expiry.
		ctx := t.Context()
		key, v1 := fresh(t, s, "v1", now().Add(long))
		v2 := update(t, s, key, next(v1, []byte("first"), now().Add(long)))
		stale := next(v1, []byte("stale"), expiry(short))
		is(t, "Update of version 1 after version 2 was written", s.Update(ctx, key, stale), anonymous.ErrConflict)
		same(t, s, key, v2, "an Update of a replaced version")
		for _, v := range []uint64{0, 3, 1<<32 + 2, math.MaxUint64} {
			ahead := stale
			ahead.Version = v
			is(t, fmt.Sprintf("Update of version %d while version 2 is stored", v), s.Update(ctx, key, ahead), anonymous.ErrConflict)
		}
		same(t, s, key, v2, "Updates of versions never stored")
		sleepUntil(stale.Expires.Add(slack))
		same(t, s, key, v2, "the expiry of Updates that returned ErrConflict")
		same(t, s, key, update(t, s, key, next(v2, []byte("second"), now().Add(long))), "Update of version 2")
	}},
	{name: "NotFound", fn: func(t *testing.T, s anonymous.Store) {
		// Update writes over an entry, never creates one: not even as
		// version 1 of a version 0, which no entry has.
		key := newKey()
		for _, v := range []uint64{0, 1} {
			e := anonymous.Entry{Value: []byte("v"), Version: v, Expires: now().Add(long)}
			is(t, fmt.Sprintf("Update of version %d of a key never created", v), s.Update(t.Context(), key, e), anonymous.ErrNotFound)
		}
		gone(t, s, key, "Updates of a key never created")
	}},
	{name: "ExpiredNotRevived", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		exp := expiry(short)
		key, v := fresh(t, s, "old", exp)
		sleepUntil(exp.Add(slack))
		is(t, "Update of an expired entry", s.Update(t.Context(), key, next(v, []byte("revived"), now().Add(long))), anonymous.ErrNotFound)
		gone(t, s, key, "an Update of an expired entry")
		same(t, s, key, create(t, s, key, anonymous.Entry{Value: []byte("new"), Expires: now().Add(long)}),
			"a Create after an Update of an expired entry")
	}},
	{name: "ExtendsLife", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		exp := expiry(short)
		key, v := fresh(t, s, "v", exp)
		later := exp.Add(2 * short)
		v = update(t, s, key, next(v, []byte("extended"), later))
		sleepUntil(exp.Add(slack))
		alive(t, s, key, v, later, "the expiry that Update replaced")
		sleepUntil(later.Add(slack))
		gone(t, s, key, "the expiry Update set")
	}},
	{name: "ShortensLife", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		key, v := fresh(t, s, "v", now().Add(long))
		exp := expiry(short)
		update(t, s, key, next(v, []byte("shortened"), exp))
		sleepUntil(exp.Add(slack))
		gone(t, s, key, "the earlier expiry Update set")
	}},
	{name: "FullChangesNothing", fn: func(t *testing.T, s anonymous.Store) {
		// A store with a cap may refuse an Update that grows the entry,
		// ErrStoreFull; then nothing changed. A store without one takes it.
		key, v := fresh(t, s, "v", now().Add(long))
		big := next(v, randomValue(4*largeValue), now().Add(long))
		switch err := s.Update(t.Context(), key, big); {
		case errors.Is(err, anonymous.ErrStoreFull):
			same(t, s, key, v, "an Update answered ErrStoreFull")
		case err != nil:
			t.Fatalf("Update of %d bytes: %v", len(big.Value), err)
		default:
			same(t, s, key, anonymous.Entry{Value: big.Value, Version: v.Version + 1}, "an Update of a large value")
		}
	}},
	{name: "StoresACopy", fn: func(t *testing.T, s anonymous.Store) {
		key, v := fresh(t, s, "v", now().Add(long))
		b := []byte("cart: 3 items")
		want := update(t, s, key, next(v, b, now().Add(long)))
		if string(b) != "cart: 3 items" {
			t.Errorf("Update changed the bytes it was given to %q", b)
		}
		flip(b)
		same(t, s, key, want, "changing the bytes passed to Update")
	}},
	{name: "ConcurrentOneWinner", fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		for range rounds {
			key, v := fresh(t, s, "v", now().Add(long))
			errs := race(racers, func(i int) error {
				return s.Update(ctx, key, next(v, fmt.Appendf(nil, "racer %d", i), now().Add(long)))
			})
			if w := oneWinner(t, "concurrent Update of one version", errs, anonymous.ErrConflict); w >= 0 {
				same(t, s, key, anonymous.Entry{Value: fmt.Appendf(nil, "racer %d", w), Version: 2}, "concurrent Updates (the winner's)")
			}
		}
	}},
}

// flip changes every byte of b.
func flip(b []byte) {
	for i := range b {
		b[i] ^= 0xff
	}
}

// sibling returns a key like key but for its last character: the next one
// of the ULID alphabet.
func sibling(key string) string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	last := strings.IndexByte(alphabet, key[len(key)-1])
	return key[:len(key)-1] + string(alphabet[(last+1)%len(alphabet)])
}
