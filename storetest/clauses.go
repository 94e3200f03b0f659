package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
)

// The clauses of the Store contract, one test each, in the order of the
// contract's text.

var createTests = []test{
	{name: "RoundTrip", fn: func(t *testing.T, s anonymous.Store) {
		// Every field set to something a careless encoding would lose:
		// every boolean true, distinct times, non-ASCII text, IPv6, data
		// holding every byte value, and a version Create must not keep.
		now := Now()
		full := NewRecord("", now.Add(long))
		full.User.Email = "guest+tag@example.com"
		full.User.EmailVerified = true
		full.User.Name = `Ünïcode "guest" 🦊`
		full.User.CreatedAt = now.Add(-3 * time.Second)
		full.User.UpdatedAt = now.Add(-2 * time.Second)
		full.Session.CreatedAt = now.Add(-1500 * time.Millisecond)
		full.Session.UpdatedAt = now.Add(-999 * time.Millisecond)
		full.Session.IPAddress = "2001:db8::1"
		full.Session.UserAgent = "Mozilla/5.0 (X11; Linux x86_64) \"quoted\" \t"
		full.Data = make([]byte, 256)
		for i := range full.Data {
			full.Data[i] = byte(255 - i)
		}
		full.LinkedTo = "user-ü-42"
		full.Deleted = true
		full.ClaimOwner = "owner ü 1"
		full.ClaimUntil = now.Add(90*time.Second + 123*time.Millisecond)
		full.Version = 41
		// A new guest as package anonymous creates it, with data and a
		// claim, at version 0.
		fresh := NewRecord("", now.Add(long))
		fresh.Data = []byte(`{"cart":[1,2,3]}`)
		fresh.ClaimOwner, fresh.ClaimUntil = "owner-2", now.Add(time.Minute)
		for _, rec := range []*anonymous.Record{full, fresh} {
			v := rec.Version
			want := create(t, s, rec)
			same(t, s, want, fmt.Sprintf("Create of a record with Version %d (stored as version 1)", v))
		}
	}},
	{name: "StoresACopy", fn: func(t *testing.T, s anonymous.Store) {
		// The middleware keeps using the record it stored.
		rec := NewRecord("", Now().Add(long))
		rec.Data = []byte("cart: 3 items")
		want := create(t, s, rec)
		rec.User.Name = "changed after Create"
		rec.Session.ExpiresAt = rec.Session.ExpiresAt.Add(time.Hour)
		rec.TokenHash[0] ^= 0xff
		rec.Data[0] ^= 0xff // the bytes, not just the slice
		rec.LinkedTo, rec.Deleted = "changed", true
		rec.ClaimOwner, rec.ClaimUntil = "changed", Now()
		rec.Version = 7
		same(t, s, want, "changing the record passed to Create, and its Data's bytes")
	}},
	{name: "LeavesArgumentAlone", fn: func(t *testing.T, s anonymous.Store) {
		// The caller counts the version of its own copy.
		rec := NewRecord("", Now().Add(long))
		rec.Data = []byte("cart: 3 items")
		rec.Version = 5
		want := clone(rec)
		create(t, s, rec)
		if d := Diff(rec, want); len(d) > 0 {
			t.Errorf("Create changed the record it was given:\n\t%s", strings.Join(d, "\n\t"))
		}
	}},
	{name: "Exists", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		first := create(t, s, NewRecord("", Now().Add(long)))
		// The loser differs in every field, and expires soon: neither its
		// fields nor its expiry may reach the store.
		second := NewRecord(first.User.ID, Now().Add(short))
		second.User.Name, second.User.Email = "Second", "second@example.com"
		second.User.EmailVerified = true
		second.Session.IPAddress, second.Session.UserAgent = "198.51.100.7", "second"
		second.Data = []byte("second")
		second.LinkedTo, second.Deleted = "someone", true
		second.ClaimOwner, second.ClaimUntil = "second", Now().Add(long)
		is(t, "second Create of one id", s.Create(ctx, second), anonymous.ErrExists)
		same(t, s, first, "a Create that returned ErrExists")
		sleepPast(second.Session.ExpiresAt)
		same(t, s, first, "the expiry of a Create that returned ErrExists")
	}},
	{name: "ConcurrentOneWinner", fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		for range rounds {
			id := NewID()
			recs := make([]*anonymous.Record, racers)
			for i := range recs {
				recs[i] = NewRecord(id, Now().Add(long))
				recs[i].User.Name = fmt.Sprint("racer ", i)
				recs[i].Data = fmt.Appendf(nil, "racer %d", i)
			}
			errs := race(racers, func(i int) error { return s.Create(ctx, recs[i]) })
			if w := oneWinner(t, "concurrent Create of one id", errs, anonymous.ErrExists); w >= 0 {
				same(t, s, stored(recs[w], 1), "concurrent Creates (the winner's record)")
			}
		}
	}},
	{name: "AfterExpiry", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		// An expired record no longer exists, so its id is free, and the
		// new record starts again at version 1.
		old := NewRecord("", Now().Add(short))
		old.Data = []byte("old")
		old = create(t, s, old)
		old = update(t, s, edit(old, func(r *anonymous.Record) { r.User.Name = "Old" }))
		sleepPast(old.Session.ExpiresAt)
		rec := NewRecord(old.User.ID, Now().Add(long))
		rec.User.Name, rec.Data = "Reborn", []byte("new")
		same(t, s, create(t, s, rec), "Create over an expired record")
	}},
	{name: "IDsAreSeparate", fn: func(t *testing.T, s anonymous.Store) {
		// Ids that differ in their last character only are as different
		// as any two.
		id := NewID()
		a := NewRecord(id, Now().Add(long))
		a.Data = []byte("a")
		b := NewRecord(sibling(id, 1), Now().Add(long))
		b.Data = []byte("b")
		va, vb := create(t, s, a), create(t, s, b)
		same(t, s, va, "creating two guests")
		same(t, s, vb, "creating two guests")
		gone(t, s, sibling(id, 2), "creating two guests with similar ids")
		va = update(t, s, edit(va, func(r *anonymous.Record) { r.User.Name, r.Data = "A", []byte("A") }))
		same(t, s, va, "updating a guest")
		same(t, s, vb, "updating another guest")
		update(t, s, bury(va, ""))
		same(t, s, vb, "deleting another guest")
	}},
}

var getTests = []test{
	{name: "NotFound", fn: func(t *testing.T, s anonymous.Store) {
		gone(t, s, NewID(), "nothing")
		newGuest(t, s, Now().Add(long))
		gone(t, s, NewID(), "creating another guest")
	}},
	{name: "ReturnsACopy", fn: func(t *testing.T, s anonymous.Store) {
		// The middleware writes the token into the record Get returns, and
		// changes it to write it back.
		rec := NewRecord("", Now().Add(long))
		rec.Data = []byte("cart: 3 items")
		want := create(t, s, rec)
		got := get(t, s, rec.User.ID)
		got.User.Name = "changed"
		got.Session.Token = "changed"
		got.Session.ExpiresAt = got.Session.ExpiresAt.Add(time.Hour)
		got.TokenHash[0] ^= 0xff
		if len(got.Data) > 0 { // else same reports the lost data
			got.Data[0] ^= 0xff // the bytes, not just the slice
		}
		got.LinkedTo, got.Deleted = "changed", true
		got.ClaimOwner, got.ClaimUntil = "changed", Now()
		got.Version = 7
		same(t, s, want, "changing what Get returned, and its Data's bytes")
		if again := get(t, s, rec.User.ID); again == got {
			t.Errorf("two Gets returned the same *Record")
		}
	}},
	{name: "Expires", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(short))
		same(t, s, rec, "Create")
		sleepPast(rec.Session.ExpiresAt)
		gone(t, s, rec.User.ID, "Session.ExpiresAt")
	}},
	{name: "NoData", fn: func(t *testing.T, s anonymous.Store) {
		// A guest without data has a nil Data, or an empty one: both are
		// stored and come back as no data.
		for _, data := range [][]byte{nil, {}} {
			rec := NewRecord("", Now().Add(long))
			rec.Data = data
			same(t, s, create(t, s, rec), fmt.Sprintf("Create with Data %#v", data))
		}
	}},
}

var updateTests = []test{
	{name: "Replaces", fn: func(t *testing.T, s anonymous.Store) {
		// Every field is replaced, and each Update is one more version.
		v := newGuest(t, s, Now().Add(long))
		v = update(t, s, edit(v, func(r *anonymous.Record) {
			r.User.Name, r.User.Email, r.User.EmailVerified = "Renamed", "renamed@example.com", true
			r.User.UpdatedAt, r.Session.UpdatedAt = Now().Add(time.Second), Now().Add(time.Second)
			r.Session.ExpiresAt = Now().Add(2 * long)
			r.Session.IPAddress, r.Session.UserAgent = "2001:db8::2", "renamed"
			r.TokenHash[0] ^= 0xff
			r.Data = []byte("cart: 1 item")
			r.ClaimOwner, r.ClaimUntil = "owner-a", Now().Add(time.Minute)
		}))
		same(t, s, v, "Update of version 1")
		v = update(t, s, edit(v, func(r *anonymous.Record) {
			r.Data = []byte("cart: 2 items")
			r.ClaimOwner, r.ClaimUntil = "", time.Time{}
		}))
		same(t, s, v, "Update of version 2")
		v = update(t, s, edit(v, func(r *anonymous.Record) { r.LinkedTo = "user-42" }))
		same(t, s, v, "Update of version 3")
	}},
	{name: "Conflict", fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		v1 := newGuest(t, s, Now().Add(long))
		v2 := update(t, s, edit(v1, func(r *anonymous.Record) { r.Data = []byte("first") }))
		stale := edit(v1, func(r *anonymous.Record) {
			r.User.Name, r.Data = "stale", []byte("stale")
			r.LinkedTo, r.Deleted = "someone", true
			r.ClaimOwner, r.ClaimUntil = "stale", Now().Add(long)
		})
		is(t, "Update of version 1 after version 2 was written", s.Update(ctx, stale), anonymous.ErrConflict)
		same(t, s, v2, "an Update of a stale version")
		for _, v := range []uint64{0, 3, 1 << 63} {
			ahead := edit(stale, func(r *anonymous.Record) { r.Version = v })
			is(t, fmt.Sprintf("Update of version %d while version 2 is stored", v), s.Update(ctx, ahead), anonymous.ErrConflict)
		}
		same(t, s, v2, "Updates of versions never stored")
		same(t, s, update(t, s, edit(v2, func(r *anonymous.Record) { r.Data = []byte("second") })), "Update of version 2")
	}},
	{name: "NotFound", fn: func(t *testing.T, s anonymous.Store) {
		// Update writes over a record, never creates one: not even for
		// version 0, which is no record's version.
		ctx := t.Context()
		id := NewID()
		for _, v := range []uint64{0, 1} {
			rec := NewRecord(id, Now().Add(long))
			rec.Version = v
			is(t, fmt.Sprintf("Update of version %d of a record never created", v), s.Update(ctx, rec), anonymous.ErrNotFound)
		}
		gone(t, s, id, "Updates of a record never created")
	}},
	{name: "Expired", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(short))
		sleepPast(rec.Session.ExpiresAt)
		next := edit(rec, func(r *anonymous.Record) { r.Session.ExpiresAt = Now().Add(long) })
		is(t, "Update of an expired record", s.Update(t.Context(), next), anonymous.ErrNotFound)
		gone(t, s, rec.User.ID, "an Update of an expired record")
	}},
	{name: "ExtendsLife", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(short))
		exp := Now().Add(2 * short)
		next := update(t, s, edit(rec, func(r *anonymous.Record) { r.Session.ExpiresAt = exp }))
		sleepPast(rec.Session.ExpiresAt)
		same(t, s, next, "the expiry Update replaced")
		sleepPast(exp)
		gone(t, s, rec.User.ID, "the expiry Update set")
	}},
	{name: "ShortensLife", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(long))
		exp := Now().Add(short)
		update(t, s, edit(rec, func(r *anonymous.Record) { r.Session.ExpiresAt = exp }))
		sleepPast(exp)
		gone(t, s, rec.User.ID, "the earlier expiry Update set")
	}},
	{name: "StoresACopy", fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(long))
		next := edit(rec, func(r *anonymous.Record) {
			r.Data = []byte("cart: 3 items")
			r.ClaimOwner, r.ClaimUntil = "owner-a", Now().Add(time.Minute)
		})
		want := update(t, s, next)
		next.User.Name = "changed after Update"
		next.Session.ExpiresAt = next.Session.ExpiresAt.Add(time.Hour)
		next.TokenHash[0] ^= 0xff
		next.Data[0] ^= 0xff // the bytes, not just the slice
		next.LinkedTo, next.Deleted = "changed", true
		next.ClaimOwner = "changed"
		next.Version = 7
		same(t, s, want, "changing the record passed to Update, and its Data's bytes")
	}},
	{name: "LeavesArgumentAlone", fn: func(t *testing.T, s anonymous.Store) {
		// The caller counts the version of its own copy: package anonymous
		// adds one to it after an Update succeeds.
		rec := newGuest(t, s, Now().Add(long))
		next := edit(rec, func(r *anonymous.Record) { r.Data = []byte("cart: 3 items") })
		want := clone(next)
		update(t, s, next)
		if d := Diff(next, want); len(d) > 0 {
			t.Errorf("Update changed the record it was given:\n\t%s", strings.Join(d, "\n\t"))
		}
	}},
	{name: "ConcurrentOneWinner", fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		for range rounds {
			rec := newGuest(t, s, Now().Add(long))
			recs := make([]*anonymous.Record, racers)
			for i := range recs {
				recs[i] = edit(rec, func(r *anonymous.Record) {
					r.User.Name = fmt.Sprint("racer ", i)
					r.Data = fmt.Appendf(nil, "racer %d", i)
				})
			}
			errs := race(racers, func(i int) error { return s.Update(ctx, recs[i]) })
			if w := oneWinner(t, "concurrent Update of one version", errs, anonymous.ErrConflict); w >= 0 {
				same(t, s, stored(recs[w], 2), "concurrent Updates (the winner's record)")
			}
		}
	}},
	{name: "Tombstone", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		// A deleted or linked guest's record is a record like any other:
		// Get returns it, LinkedTo and all, so that a late request of the
		// guest learns whom it became, until it expires.
		exp := Now().Add(short)
		var tombs []*anonymous.Record
		for _, linkedTo := range []string{"", "user-42"} {
			rec := NewRecord("", exp)
			rec.Data = []byte("cart: 3 items")
			tombs = append(tombs, update(t, s, bury(create(t, s, rec), linkedTo)))
		}
		// A guest linked with DisableDeleteAnonymousUser keeps its user and
		// session; only LinkedTo marks it.
		kept := NewRecord("", exp)
		kept.Data = []byte("cart: 3 items")
		tombs = append(tombs, update(t, s, edit(create(t, s, kept), func(r *anonymous.Record) {
			r.TokenHash, r.Data, r.LinkedTo = [32]byte{}, nil, "user-43"
		})))
		for _, tomb := range tombs {
			same(t, s, tomb, fmt.Sprintf("an Update into a tombstone (Deleted %v, LinkedTo %q)", tomb.Deleted, tomb.LinkedTo))
		}
		sleepPast(exp)
		for _, tomb := range tombs {
			gone(t, s, tomb.User.ID, fmt.Sprintf("the expiry of a tombstone (Deleted %v, LinkedTo %q)", tomb.Deleted, tomb.LinkedTo))
		}
	}},
	{name: "TombstoneReservesID", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		// A replayed cookie of a guest not stored yet must not bring a
		// deleted guest back before the guest would have expired.
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(short))
		tomb := update(t, s, bury(rec, "user-42"))
		replay := NewRecord(rec.User.ID, Now().Add(long))
		is(t, "Create of a tombstone's id before its expiry", s.Create(ctx, replay), anonymous.ErrExists)
		same(t, s, tomb, "a Create of a tombstone's id")
		sleepPast(rec.Session.ExpiresAt)
		gone(t, s, rec.User.ID, "the expiry of a tombstone a Create tried to replace")
		same(t, s, create(t, s, replay), "Create of a tombstone's id after its expiry")
	}},
}

var dataTests = []test{
	{name: "ReadModifyWrite", fn: func(t *testing.T, s anonymous.Store) {
		// Many requests add to one guest's data at once, each reading the
		// guest and writing it back, again after a conflict: none of their
		// changes is lost.
		rec := newGuest(t, s, Now().Add(long))
		ctx, id := t.Context(), rec.User.ID
		errs := race(writers, func(int) error { return increment(ctx, s, id) })
		for i, err := range errs {
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
		}
		got := get(t, s, id)
		if n, err := counter(got.Data); err != nil || n != writers || got.Version != 1+writers {
			t.Errorf("after %d concurrent increments, Data = %q (%v) at version %d, want %d at version %d",
				writers, got.Data, err, got.Version, writers, 1+writers)
		}
	}},
	{name: "Large", fn: func(t *testing.T, s anonymous.Store) {
		rec := NewRecord("", Now().Add(long))
		rec.Data = randomData(largeData)
		v := create(t, s, rec)
		same(t, s, v, "Create with 64 KiB of data")
		v = update(t, s, edit(v, func(r *anonymous.Record) { r.Data = randomData(largeData) }))
		same(t, s, v, "Update with 64 KiB of data")
	}},
	{name: "Expires", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		// Data lives and dies with its record: a new guest with an expired
		// one's id has none of its data.
		rec := NewRecord("", Now().Add(short))
		rec.Data = []byte("cart: 3 items")
		create(t, s, rec)
		sleepPast(rec.Session.ExpiresAt)
		gone(t, s, rec.User.ID, "Session.ExpiresAt of a record with data")
		again := create(t, s, NewRecord(rec.User.ID, Now().Add(long)))
		same(t, s, again, "Create with no data over an expired record with data")
	}},
	{name: "EmptiedByUpdate", fn: func(t *testing.T, s anonymous.Store) {
		rec := NewRecord("", Now().Add(long))
		rec.Data = []byte("cart: 3 items")
		v := create(t, s, rec)
		for _, data := range [][]byte{nil, {}} {
			v = update(t, s, edit(v, func(r *anonymous.Record) { r.Data = data }))
			same(t, s, v, fmt.Sprintf("Update with Data %#v", data))
			v = update(t, s, edit(v, func(r *anonymous.Record) { r.Data = []byte("cart: 1 item") }))
		}
	}},
}

// sibling returns an id like id but for its last character: the i-th
// (from 1) other character of the ULID alphabet.
func sibling(id string, i int) string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	last := strings.IndexByte(alphabet, id[len(id)-1])
	return id[:len(id)-1] + string(alphabet[(last+i)%len(alphabet)])
}

// randomData returns n random bytes.
func randomData(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return b
}

// counter reads the decimal counter that increment keeps in a guest's
// data; no data counts as 0.
func counter(data []byte) (int, error) {
	if len(data) == 0 {
		return 0, nil
	}
	return strconv.Atoi(string(data))
}

// increment adds one to the counter in guest id's data the way package
// anonymous changes data: read, change, write back if nobody wrote
// meanwhile, and start again if somebody did.
func increment(ctx context.Context, s anonymous.Store, id string) error {
	// Each conflict is another writer's success: no writer can lose more
	// often than there are writers.
	for range 4 * writers {
		rec, err := s.Get(ctx, id)
		if err != nil {
			return fmt.Errorf("a Get: %v", err)
		}
		n, err := counter(rec.Data)
		if err != nil {
			return fmt.Errorf("a Get returned Data %q: %v", rec.Data, err)
		}
		rec.Data = strconv.AppendInt(nil, int64(n)+1, 10)
		switch err := s.Update(ctx, rec); {
		case err == nil:
			return nil
		case !errors.Is(err, anonymous.ErrConflict):
			return fmt.Errorf("an Update of version %d: %v", rec.Version, err)
		}
	}
	return fmt.Errorf("an Update returned ErrConflict %d times in a row", 4*writers)
}

// contextTests call every method with a context that is already done: each
// must return an error wrapping the context's error and change nothing.
var contextTests = []test{
	{name: "Canceled", fn: func(t *testing.T, s anonymous.Store) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		doneContext(t, s, ctx, context.Canceled)
	}},
	{name: "DeadlineExceeded", fn: func(t *testing.T, s anonymous.Store) {
		ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		defer cancel()
		doneContext(t, s, ctx, context.DeadlineExceeded)
	}},
}

func doneContext(t *testing.T, s anonymous.Store, done context.Context, want error) {
	t.Run("Create", func(t *testing.T) {
		rec := NewRecord("", Now().Add(long))
		rec.Data = []byte("cart: 3 items")
		is(t, "Create", s.Create(done, rec), want)
		gone(t, s, rec.User.ID, "Create with a done context")
	})
	t.Run("Get", func(t *testing.T) {
		rec := newGuest(t, s, Now().Add(long))
		_, err := s.Get(done, rec.User.ID)
		is(t, "Get", err, want)
	})
	t.Run("Update", func(t *testing.T) {
		rec := newGuest(t, s, Now().Add(long))
		next := edit(rec, func(r *anonymous.Record) {
			r.Data = []byte("cart: 3 items")
			r.Session.ExpiresAt = Now().Add(2 * long)
		})
		is(t, "Update", s.Update(done, next), want)
		same(t, s, rec, "Update with a done context")
		// Nor did it take the version: the caller's next write succeeds.
		same(t, s, update(t, s, next), "Update after an Update with a done context")
	})
}

var concurrencyTests = []test{
	{name: "Mixed", fn: func(t *testing.T, s anonymous.Store) {
		// Every method at once on shared and private guests, for the race
		// detector; each call must still give an answer the contract
		// allows. Every write of a shared guest adds one to the counter in
		// its data, so every Get must find a counter one less than the
		// version, and no write may be lost.
		ctx := t.Context()
		shared := make([]*anonymous.Record, 4)
		writes := make([]atomic.Int64, len(shared))
		for i := range shared {
			shared[i] = newGuest(t, s, Now().Add(long))
		}
		check := func(rec *anonymous.Record) error {
			if n, err := counter(rec.Data); err != nil || uint64(n)+1 != rec.Version {
				return fmt.Errorf("Get(%s) returned Data %q at version %d, want a counter of %d", rec.User.ID, rec.Data, rec.Version, rec.Version-1)
			}
			return nil
		}
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				rnd := mrand.New(mrand.NewPCG(uint64(g), 0))
				for range 100 {
					i := rnd.IntN(len(shared))
					id := shared[i].User.ID
					var err error
					switch rnd.IntN(4) {
					case 0:
						var rec *anonymous.Record
						if rec, err = s.Get(ctx, id); err == nil {
							err = check(rec)
						}
					case 1:
						// One try to add one; losing to another writer is fine.
						var rec *anonymous.Record
						if rec, err = s.Get(ctx, id); err == nil {
							if err = check(rec); err == nil {
								n, _ := counter(rec.Data)
								rec.Data = strconv.AppendInt(nil, int64(n)+1, 10)
								switch err = s.Update(ctx, rec); {
								case err == nil:
									writes[i].Add(1)
								case errors.Is(err, anonymous.ErrConflict):
									err = nil
								}
							}
						}
					case 2:
						switch err = s.Create(ctx, NewRecord(id, Now().Add(long))); {
						case err == nil:
							err = fmt.Errorf("a Create over guest %s succeeded, want ErrExists", id)
						case errors.Is(err, anonymous.ErrExists):
							err = nil
						}
					case 3:
						err = lifetime(ctx, s)
					}
					if err != nil {
						t.Errorf("concurrent use: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		for i, rec := range shared {
			want := edit(rec, func(r *anonymous.Record) {
				r.Version = 1 + uint64(writes[i].Load())
				r.Data = strconv.AppendInt(nil, writes[i].Load(), 10)
			})
			if d := Diff(get(t, s, rec.User.ID), want); len(d) > 0 {
				t.Errorf("after concurrent use, guest %s (written %d times) differs:\n\t%s", rec.User.ID, writes[i].Load(), strings.Join(d, "\n\t"))
			}
		}
	}},
}

// lifetime takes a private guest through its whole life: created, given
// data, deleted, and its id still reserved.
func lifetime(ctx context.Context, s anonymous.Store) error {
	rec := NewRecord("", Now().Add(long))
	if err := s.Create(ctx, rec); err != nil {
		return fmt.Errorf("a Create: %v", err)
	}
	rec.Version = 1
	rec.Data = []byte("cart: 1 item")
	if err := s.Update(ctx, rec); err != nil {
		return fmt.Errorf("an Update of version 1: %v", err)
	}
	rec.Version = 2
	tomb := bury(rec, "user-1")
	if err := s.Update(ctx, tomb); err != nil {
		return fmt.Errorf("an Update of version 2: %v", err)
	}
	got, err := s.Get(ctx, rec.User.ID)
	if err != nil {
		return fmt.Errorf("a Get of a tombstone: %v", err)
	}
	if d := Diff(got, stored(tomb, 3)); len(d) > 0 {
		return fmt.Errorf("a Get of a tombstone returned a different record: %s", strings.Join(d, "; "))
	}
	if err := s.Create(ctx, NewRecord(rec.User.ID, Now().Add(long))); !errors.Is(err, anonymous.ErrExists) {
		return fmt.Errorf("a Create over a tombstone: %v, want ErrExists", err)
	}
	return nil
}
