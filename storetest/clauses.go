package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
)

// The clauses of the Store contract, one test each, in the order of the
// contract's text.

var createTests = []test{
	{name: "RoundTrip", fn: func(t *testing.T, s anonymous.Store) {
		// Every field set to something a careless encoding would lose:
		// both booleans true, distinct times, non-ASCII text, IPv6.
		now := Now()
		rec := NewRecord("", now.Add(long))
		rec.User.Email = "guest+tag@example.com"
		rec.User.EmailVerified = true
		rec.User.Name = `Ünïcode "guest" 🦊`
		rec.User.CreatedAt = now.Add(-3 * time.Second)
		rec.User.UpdatedAt = now.Add(-2 * time.Second)
		rec.Session.CreatedAt = now.Add(-1500 * time.Millisecond)
		rec.Session.UpdatedAt = now.Add(-999 * time.Millisecond)
		rec.Session.IPAddress = "2001:db8::1"
		rec.Session.UserAgent = "Mozilla/5.0 (X11; Linux x86_64) \"quoted\" \t"
		want := clone(rec)
		create(t, s, rec)
		same(t, s, want, "Create")
	}},
	{name: "StoresACopy", fn: func(t *testing.T, s anonymous.Store) {
		// The middleware keeps using the record it stored.
		rec := NewRecord("", Now().Add(long))
		want := clone(rec)
		create(t, s, rec)
		rec.User.Name = "changed after Create"
		rec.Session.ExpiresAt = rec.Session.ExpiresAt.Add(time.Hour)
		rec.TokenHash[0] ^= 0xff
		rec.LinkedTo = "changed"
		same(t, s, want, "changing the record passed to Create")
	}},
	{name: "LeavesArgumentAlone", fn: func(t *testing.T, s anonymous.Store) {
		rec := NewRecord("", Now().Add(long))
		rec.Session.Token = rec.User.ID + ".secret"
		want := clone(rec)
		create(t, s, rec)
		if d := Diff(rec, want); len(d) > 0 {
			t.Errorf("Create changed the record it was given: %v", d)
		}
	}},
	{name: "DropsToken", fn: func(t *testing.T, s anonymous.Store) {
		// Record.Session.Token is always empty in a store; the package
		// hands Create records that still carry it.
		rec := NewRecord("", Now().Add(long))
		want := clone(rec)
		rec.Session.Token = rec.User.ID + ".plaintext-secret"
		create(t, s, rec)
		same(t, s, want, "Create of a record with Session.Token set (the store must not keep the token)")
	}},
	{name: "Exists", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		first := NewRecord("", Now().Add(long))
		create(t, s, first)
		// The loser differs in every field, and expires soon: neither its
		// data nor its expiry may reach the store.
		second := NewRecord(first.User.ID, Now().Add(short))
		second.User.Name, second.User.Email = "Second", "second@example.com"
		second.User.EmailVerified = true
		second.Session.IPAddress, second.Session.UserAgent = "198.51.100.7", "second"
		second.LinkedTo = "someone"
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
			}
			errs := race(racers, func(i int) error { return s.Create(ctx, recs[i]) })
			if w := oneWinner(t, "concurrent Create of one id", errs, anonymous.ErrExists); w >= 0 {
				same(t, s, recs[w], "concurrent Creates (the winner's record)")
			}
		}
	}},
	{name: "AfterExpiry", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		// An expired guest no longer exists, so its id is free.
		old := newGuest(t, s, Now().Add(short))
		sleepPast(old.Session.ExpiresAt)
		rec := NewRecord(old.User.ID, Now().Add(long))
		rec.User.Name = "Reborn"
		create(t, s, rec)
		same(t, s, rec, "Create over an expired guest")
	}},
	{name: "IDsAreSeparate", fn: func(t *testing.T, s anonymous.Store) {
		a := newGuest(t, s, Now().Add(long))
		b := newGuest(t, s, Now().Add(long))
		same(t, s, a, "creating two guests")
		same(t, s, b, "creating two guests")
		if err := s.Delete(t.Context(), a.User.ID); err != nil {
			t.Fatalf("Delete = %v", err)
		}
		same(t, s, b, "deleting another guest")
	}},
}

var getTests = []test{
	{name: "NotFound", fn: func(t *testing.T, s anonymous.Store) {
		gone(t, s, NewID(), "nothing")
		newGuest(t, s, Now().Add(long))
		gone(t, s, NewID(), "creating another guest")
	}},
	{name: "ReturnsACopy", fn: func(t *testing.T, s anonymous.Store) {
		// The middleware writes the token into the record Get returns.
		rec := newGuest(t, s, Now().Add(long))
		got := get(t, s, rec.User.ID)
		got.User.Name = "changed"
		got.Session.Token = "changed"
		got.Session.ExpiresAt = got.Session.ExpiresAt.Add(time.Hour)
		got.TokenHash[0] ^= 0xff
		got.LinkedTo = "changed"
		same(t, s, rec, "changing what Get returned")
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
	{name: "ExpiredIsGone", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		// Past its expiry a guest is gone for every method, not just Get.
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(short))
		sleepPast(rec.Session.ExpiresAt)
		id := rec.User.ID
		is(t, "Touch of an expired guest", s.Touch(ctx, id, Now().Add(long), Now()), anonymous.ErrNotFound)
		is(t, "Claim of an expired guest", s.Claim(ctx, id, "owner", Now().Add(long)), anonymous.ErrNotFound)
		is(t, "Revoke of an expired guest", s.Revoke(ctx, id, "user"), anonymous.ErrNotFound)
		is(t, "Release on an expired guest", s.Release(ctx, id, "owner"), nil)
		is(t, "Delete of an expired guest", s.Delete(ctx, id), nil)
		gone(t, s, id, "Touch, Claim, Revoke, Release and Delete of an expired guest")
	}},
}

var touchTests = []test{
	{name: "MovesExpiry", fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(long))
		exp, now := Now().Add(2*long), Now().Add(time.Second)
		is(t, "Touch", s.Touch(t.Context(), rec.User.ID, exp, now), nil)
		want := clone(rec)
		want.Session.ExpiresAt, want.Session.UpdatedAt = exp, now
		same(t, s, want, "Touch (only Session.ExpiresAt and Session.UpdatedAt change)")
	}},
	{name: "ExtendsLife", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(short))
		exp := Now().Add(2 * short)
		is(t, "Touch", s.Touch(t.Context(), rec.User.ID, exp, Now()), nil)
		sleepPast(rec.Session.ExpiresAt)
		if got := get(t, s, rec.User.ID); !got.Session.ExpiresAt.Equal(exp) {
			t.Errorf("after Touch, Session.ExpiresAt = %v, want %v", got.Session.ExpiresAt, exp)
		}
		sleepPast(exp)
		gone(t, s, rec.User.ID, "the expiry Touch set")
	}},
	{name: "ShortensLife", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(long))
		exp := Now().Add(short)
		is(t, "Touch to an earlier expiry", s.Touch(t.Context(), rec.User.ID, exp, Now()), nil)
		sleepPast(exp)
		gone(t, s, rec.User.ID, "the earlier expiry Touch set")
	}},
	{name: "NotFound", fn: func(t *testing.T, s anonymous.Store) {
		id := NewID()
		is(t, "Touch of a guest never created", s.Touch(t.Context(), id, Now().Add(long), Now()), anonymous.ErrNotFound)
		gone(t, s, id, "Touch of a guest never created")
	}},
	{name: "Revoked", fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Revoke", s.Revoke(t.Context(), rec.User.ID, "user-1"), nil)
		is(t, "Touch of a revoked guest", s.Touch(t.Context(), rec.User.ID, Now().Add(2*long), Now()), anonymous.ErrNotFound)
		if got := get(t, s, rec.User.ID); !got.Session.ExpiresAt.Equal(rec.Session.ExpiresAt) {
			t.Errorf("Touch of a revoked guest moved its expiry to %v", got.Session.ExpiresAt)
		}
	}},
	{name: "Deleted", fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Delete", s.Delete(t.Context(), rec.User.ID), nil)
		is(t, "Touch of a deleted guest", s.Touch(t.Context(), rec.User.ID, Now().Add(long), Now()), anonymous.ErrNotFound)
		gone(t, s, rec.User.ID, "Touch of a deleted guest")
	}},
}

var claimTests = []test{
	{name: "OneWinner", fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		for round := range rounds {
			rec := newGuest(t, s, Now().Add(long))
			owner := func(i int) string { return fmt.Sprintf("owner-%d-%d", round, i) }
			errs := race(racers, func(i int) error { return s.Claim(ctx, rec.User.ID, owner(i), Now().Add(long)) })
			w := oneWinner(t, "concurrent Claim", errs, anonymous.ErrClaimed)
			if w < 0 {
				continue
			}
			// Once the winner lets go, a second race has one winner again.
			is(t, "Release by the winner", s.Release(ctx, rec.User.ID, owner(w)), nil)
			errs = race(racers, func(i int) error { return s.Claim(ctx, rec.User.ID, owner(racers+i), Now().Add(long)) })
			oneWinner(t, "concurrent Claim after Release", errs, anonymous.ErrClaimed)
		}
	}},
	{name: "Held", fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Claim by a", s.Claim(ctx, rec.User.ID, "a", Now().Add(long)), nil)
		is(t, "Claim by b while a holds the lease", s.Claim(ctx, rec.User.ID, "b", Now().Add(long)), anonymous.ErrClaimed)
		is(t, "second Claim by b", s.Claim(ctx, rec.User.ID, "b", Now().Add(long)), anonymous.ErrClaimed)
		// A guest being linked is still served to its other requests.
		same(t, s, rec, "Claim")
	}},
	{name: "SameOwnerAgain", fn: func(t *testing.T, s anonymous.Store) {
		// ErrClaimed is for another owner's lease only.
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Claim by a", s.Claim(ctx, rec.User.ID, "a", Now().Add(long)), nil)
		is(t, "Claim by a again", s.Claim(ctx, rec.User.ID, "a", Now().Add(long)), nil)
		is(t, "Claim by b", s.Claim(ctx, rec.User.ID, "b", Now().Add(long)), anonymous.ErrClaimed)
	}},
	{name: "LeaseRunsOut", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		// A process that crashed holding a lease does not block the guest
		// for good.
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(long))
		until := Now().Add(short)
		is(t, "Claim by a", s.Claim(ctx, rec.User.ID, "a", until), nil)
		is(t, "Claim by b before a's lease runs out", s.Claim(ctx, rec.User.ID, "b", Now().Add(long)), anonymous.ErrClaimed)
		sleepPast(until)
		is(t, "Claim by b after a's lease ran out", s.Claim(ctx, rec.User.ID, "b", Now().Add(long)), nil)
		is(t, "Claim by a while b holds the lease", s.Claim(ctx, rec.User.ID, "a", Now().Add(long)), anonymous.ErrClaimed)
		same(t, s, rec, "a lease ran out")
	}},
	{name: "NotFound", fn: func(t *testing.T, s anonymous.Store) {
		id := NewID()
		is(t, "Claim of a guest never created", s.Claim(t.Context(), id, "a", Now().Add(long)), anonymous.ErrNotFound)
		gone(t, s, id, "Claim of a guest never created")
	}},
	{name: "Revoked", fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Revoke", s.Revoke(t.Context(), rec.User.ID, "user-1"), nil)
		is(t, "Claim of a revoked guest", s.Claim(t.Context(), rec.User.ID, "a", Now().Add(long)), anonymous.ErrNotFound)
	}},
	{name: "Deleted", fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Delete", s.Delete(t.Context(), rec.User.ID), nil)
		is(t, "Claim of a deleted guest", s.Claim(t.Context(), rec.User.ID, "a", Now().Add(long)), anonymous.ErrNotFound)
	}},
}

var releaseTests = []test{
	{name: "ByOwner", fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Claim by a", s.Claim(ctx, rec.User.ID, "a", Now().Add(long)), nil)
		is(t, "Release by a", s.Release(ctx, rec.User.ID, "a"), nil)
		is(t, "Claim by b after a released", s.Claim(ctx, rec.User.ID, "b", Now().Add(long)), nil)
		same(t, s, rec, "Claim and Release")
	}},
	{name: "ByOther", fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Claim by a", s.Claim(ctx, rec.User.ID, "a", Now().Add(long)), nil)
		is(t, "Release by b of a's lease", s.Release(ctx, rec.User.ID, "b"), nil)
		is(t, "Claim by c after b's Release", s.Claim(ctx, rec.User.ID, "c", Now().Add(long)), anonymous.ErrClaimed)
		is(t, "Release by a", s.Release(ctx, rec.User.ID, "a"), nil)
		is(t, "Claim by c after a's Release", s.Claim(ctx, rec.User.ID, "c", Now().Add(long)), nil)
	}},
	{name: "NoLease", fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Release of an unclaimed guest", s.Release(ctx, rec.User.ID, "a"), nil)
		same(t, s, rec, "Release of an unclaimed guest")
		is(t, "Claim after Release of an unclaimed guest", s.Claim(ctx, rec.User.ID, "b", Now().Add(long)), nil)
	}},
	{name: "Twice", fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Claim by a", s.Claim(ctx, rec.User.ID, "a", Now().Add(long)), nil)
		is(t, "Release by a", s.Release(ctx, rec.User.ID, "a"), nil)
		is(t, "Claim by b", s.Claim(ctx, rec.User.ID, "b", Now().Add(long)), nil)
		// a's second Release must not drop the lease b holds now.
		is(t, "second Release by a", s.Release(ctx, rec.User.ID, "a"), nil)
		is(t, "Claim by c while b holds the lease", s.Claim(ctx, rec.User.ID, "c", Now().Add(long)), anonymous.ErrClaimed)
	}},
	{name: "MissingGuest", fn: func(t *testing.T, s anonymous.Store) {
		// No guest means no lease, and no lease is not an error.
		id := NewID()
		is(t, "Release on a guest never created", s.Release(t.Context(), id, "a"), nil)
		gone(t, s, id, "Release on a guest never created")
	}},
}

var deleteTests = []test{
	{name: "Removes", fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Delete", s.Delete(ctx, rec.User.ID), nil)
		gone(t, s, rec.User.ID, "Delete")
		is(t, "Revoke of a deleted guest", s.Revoke(ctx, rec.User.ID, "user-1"), anonymous.ErrNotFound)
		gone(t, s, rec.User.ID, "Revoke of a deleted guest")
	}},
	{name: "ReservesID", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		// A replayed cookie of a guest not stored yet must not bring a
		// deleted guest back before the guest would have expired.
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(short))
		is(t, "Delete", s.Delete(ctx, rec.User.ID), nil)
		replay := clone(rec)
		replay.Session.ExpiresAt = Now().Add(long)
		is(t, "Create of a deleted guest's id before its expiry", s.Create(ctx, replay), anonymous.ErrExists)
		gone(t, s, rec.User.ID, "Create of a deleted guest's id")
		sleepPast(rec.Session.ExpiresAt)
		is(t, "Create of a deleted guest's id after its expiry", s.Create(ctx, replay), nil)
		same(t, s, replay, "Create of a deleted guest's id after its expiry")
	}},
	{name: "ReservesUntilTouchedExpiry", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		// The reservation lasts until the guest's expiry as Touch moved it.
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(short))
		exp := Now().Add(2 * short)
		is(t, "Touch", s.Touch(ctx, rec.User.ID, exp, Now()), nil)
		is(t, "Delete", s.Delete(ctx, rec.User.ID), nil)
		sleepPast(rec.Session.ExpiresAt)
		again := NewRecord(rec.User.ID, Now().Add(long))
		is(t, "Create of a deleted guest's id before its touched expiry", s.Create(ctx, again), anonymous.ErrExists)
		sleepPast(exp)
		is(t, "Create of a deleted guest's id after its touched expiry", s.Create(ctx, again), nil)
	}},
	{name: "DropsLease", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		// The lease must not outlive the guest and block its successor.
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(short))
		is(t, "Claim by a", s.Claim(ctx, rec.User.ID, "a", Now().Add(long)), nil)
		is(t, "Delete", s.Delete(ctx, rec.User.ID), nil)
		sleepPast(rec.Session.ExpiresAt)
		create(t, s, NewRecord(rec.User.ID, Now().Add(long)))
		is(t, "Claim by b of a new guest with a deleted guest's id", s.Claim(ctx, rec.User.ID, "b", Now().Add(long)), nil)
	}},
	{name: "Missing", fn: func(t *testing.T, s anonymous.Store) {
		id := NewID()
		is(t, "Delete of a guest never created", s.Delete(t.Context(), id), nil)
		gone(t, s, id, "Delete of a guest never created")
	}},
	{name: "Twice", fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Delete", s.Delete(t.Context(), rec.User.ID), nil)
		is(t, "second Delete", s.Delete(t.Context(), rec.User.ID), nil)
		gone(t, s, rec.User.ID, "two Deletes")
		is(t, "Create after two Deletes", s.Create(t.Context(), clone(rec)), anonymous.ErrExists)
	}},
	{name: "Revoked", fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Revoke", s.Revoke(t.Context(), rec.User.ID, "user-1"), nil)
		is(t, "Delete of a revoked guest", s.Delete(t.Context(), rec.User.ID), nil)
		gone(t, s, rec.User.ID, "Delete of a revoked guest")
	}},
}

var revokeTests = []test{
	{name: "KeepsUser", fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Revoke", s.Revoke(t.Context(), rec.User.ID, "user-42"), nil)
		got := get(t, s, rec.User.ID)
		want := clone(rec)
		want.Session, want.TokenHash, want.LinkedTo = got.Session, [32]byte{}, "user-42"
		if d := Diff(got, want); len(d) > 0 {
			t.Errorf("after Revoke, Get returned a different record:\n\t%v", d)
		}
		if !got.Session.ExpiresAt.Equal(rec.Session.ExpiresAt) {
			t.Errorf("after Revoke, Session.ExpiresAt = %v, want %v", got.Session.ExpiresAt, rec.Session.ExpiresAt)
		}
	}},
	{name: "EndsSession", fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Revoke", s.Revoke(ctx, rec.User.ID, "user-42"), nil)
		is(t, "Touch of a revoked guest", s.Touch(ctx, rec.User.ID, Now().Add(2*long), Now()), anonymous.ErrNotFound)
		is(t, "Claim of a revoked guest", s.Claim(ctx, rec.User.ID, "a", Now().Add(long)), anonymous.ErrNotFound)
		is(t, "Create over a revoked guest", s.Create(ctx, NewRecord(rec.User.ID, Now().Add(long))), anonymous.ErrExists)
		if got := get(t, s, rec.User.ID); got.LinkedTo != "user-42" || got.TokenHash != [32]byte{} {
			t.Errorf("after Revoke, Touch, Claim and Create: LinkedTo = %q, TokenHash = %x; want user-42 and zero", got.LinkedTo, got.TokenHash)
		}
	}},
	{name: "WhileClaimed", fn: func(t *testing.T, s anonymous.Store) {
		// The linker revokes while it holds the claim.
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Claim by a", s.Claim(ctx, rec.User.ID, "a", Now().Add(long)), nil)
		is(t, "Revoke while a holds the lease", s.Revoke(ctx, rec.User.ID, "user-42"), nil)
		is(t, "Claim by a after Revoke", s.Claim(ctx, rec.User.ID, "a", Now().Add(long)), anonymous.ErrNotFound)
		is(t, "Release by a after Revoke", s.Release(ctx, rec.User.ID, "a"), nil)
		if got := get(t, s, rec.User.ID); got.LinkedTo != "user-42" {
			t.Errorf("after Revoke, LinkedTo = %q, want user-42", got.LinkedTo)
		}
	}},
	{name: "Expires", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		rec := newGuest(t, s, Now().Add(short))
		is(t, "Revoke", s.Revoke(t.Context(), rec.User.ID, "user-42"), nil)
		sleepPast(rec.Session.ExpiresAt)
		gone(t, s, rec.User.ID, "the Session.ExpiresAt of a revoked guest")
	}},
	{name: "DropsLease", waits: true, fn: func(t *testing.T, s anonymous.Store) {
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(short))
		is(t, "Claim by a", s.Claim(ctx, rec.User.ID, "a", Now().Add(long)), nil)
		is(t, "Revoke", s.Revoke(ctx, rec.User.ID, "user-42"), nil)
		sleepPast(rec.Session.ExpiresAt)
		create(t, s, NewRecord(rec.User.ID, Now().Add(long)))
		is(t, "Claim by b of a new guest with a revoked guest's id", s.Claim(ctx, rec.User.ID, "b", Now().Add(long)), nil)
	}},
	{name: "Twice", fn: func(t *testing.T, s anonymous.Store) {
		// A guest is linked once: a second Revoke finds no session to end.
		ctx := t.Context()
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Revoke", s.Revoke(ctx, rec.User.ID, "user-42"), nil)
		is(t, "second Revoke", s.Revoke(ctx, rec.User.ID, "user-43"), anonymous.ErrNotFound)
		if got := get(t, s, rec.User.ID); got.LinkedTo != "user-42" {
			t.Errorf("after a second Revoke, LinkedTo = %q, want user-42", got.LinkedTo)
		}
	}},
	{name: "NotFound", fn: func(t *testing.T, s anonymous.Store) {
		id := NewID()
		is(t, "Revoke of a guest never created", s.Revoke(t.Context(), id, "user-42"), anonymous.ErrNotFound)
		gone(t, s, id, "Revoke of a guest never created")
	}},
}

// contextTests call every method with a context that is already done: each
// must return the context's error (wrapped or not) and change nothing.
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
	live := t.Context()
	t.Run("Create", func(t *testing.T) {
		rec := NewRecord("", Now().Add(long))
		is(t, "Create", s.Create(done, rec), want)
		gone(t, s, rec.User.ID, "Create with a done context")
	})
	t.Run("Get", func(t *testing.T) {
		rec := newGuest(t, s, Now().Add(long))
		_, err := s.Get(done, rec.User.ID)
		is(t, "Get", err, want)
	})
	t.Run("Touch", func(t *testing.T) {
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Touch", s.Touch(done, rec.User.ID, Now().Add(2*long), Now()), want)
		same(t, s, rec, "Touch with a done context")
	})
	t.Run("Claim", func(t *testing.T) {
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Claim", s.Claim(done, rec.User.ID, "a", Now().Add(long)), want)
		is(t, "Claim by b after a's Claim with a done context", s.Claim(live, rec.User.ID, "b", Now().Add(long)), nil)
	})
	t.Run("Release", func(t *testing.T) {
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Claim by a", s.Claim(live, rec.User.ID, "a", Now().Add(long)), nil)
		is(t, "Release", s.Release(done, rec.User.ID, "a"), want)
		is(t, "Claim by b after a's Release with a done context", s.Claim(live, rec.User.ID, "b", Now().Add(long)), anonymous.ErrClaimed)
	})
	t.Run("Delete", func(t *testing.T) {
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Delete", s.Delete(done, rec.User.ID), want)
		same(t, s, rec, "Delete with a done context")
	})
	t.Run("Revoke", func(t *testing.T) {
		rec := newGuest(t, s, Now().Add(long))
		is(t, "Revoke", s.Revoke(done, rec.User.ID, "user-42"), want)
		same(t, s, rec, "Revoke with a done context")
	})
}

var concurrencyTests = []test{
	{name: "Mixed", fn: func(t *testing.T, s anonymous.Store) {
		// Every method at once on shared and private guests, for the race
		// detector; each call must still give an answer the contract allows.
		ctx := t.Context()
		shared := make([]*anonymous.Record, 4)
		for i := range shared {
			shared[i] = newGuest(t, s, Now().Add(long))
		}
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				owner := fmt.Sprint("owner-", g)
				rnd := rand.New(rand.NewPCG(uint64(g), 0))
				for range 100 {
					id := shared[rnd.IntN(len(shared))].User.ID
					var err error
					switch op := rnd.IntN(6); op {
					case 0:
						_, err = s.Get(ctx, id)
					case 1:
						err = s.Touch(ctx, id, Now().Add(long), Now())
					case 2:
						if err = s.Claim(ctx, id, owner, Now().Add(long)); errors.Is(err, anonymous.ErrClaimed) {
							err = nil
						}
					case 3:
						err = s.Release(ctx, id, owner)
					case 4:
						switch err = s.Create(ctx, NewRecord(id, Now().Add(long))); {
						case err == nil:
							err = fmt.Errorf("create over guest %s succeeded, want ErrExists", id)
						case errors.Is(err, anonymous.ErrExists):
							err = nil
						}
					case 5:
						// A private guest through its whole life.
						rec := NewRecord("", Now().Add(long))
						err = errors.Join(
							s.Create(ctx, rec),
							s.Claim(ctx, rec.User.ID, owner, Now().Add(long)),
							s.Touch(ctx, rec.User.ID, Now().Add(long), Now()),
							s.Revoke(ctx, rec.User.ID, owner),
							s.Delete(ctx, rec.User.ID),
						)
						if _, gerr := s.Get(ctx, rec.User.ID); !errors.Is(gerr, anonymous.ErrNotFound) {
							err = errors.Join(err, fmt.Errorf("after Delete, Get = %v, want ErrNotFound", gerr))
						}
					}
					if err != nil {
						t.Errorf("concurrent use: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		for _, rec := range shared {
			if got := get(t, s, rec.User.ID); got.TokenHash != rec.TokenHash || got.LinkedTo != "" {
				t.Errorf("after concurrent use, guest %s has TokenHash %x and LinkedTo %q, want %x and none",
					rec.User.ID, got.TokenHash, got.LinkedTo, rec.TokenHash)
			}
		}
	}},
}
