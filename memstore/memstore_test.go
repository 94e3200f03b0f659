package memstore_test

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
	"github.com/guestpass/anonymous/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) anonymous.Store {
		s := memstore.New()
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close = %v", err)
			}
		})
		return s
	})
}

// TestSweeper runs in a synctest bubble, whose fake clock makes the
// sweeper's minutes pass at once.
func TestSweeper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := memstore.New() // the default sweep, once a minute
		defer s.Close()
		start := time.Now()
		expired := storetest.NewRecord("", start.Add(30*time.Second))
		linked := storetest.NewRecord("", start.Add(40*time.Second))
		deleted := storetest.NewRecord("", start.Add(90*time.Second))
		kept := storetest.NewRecord("", start.Add(time.Hour))
		for _, rec := range []*anonymous.Record{expired, linked, deleted, kept} {
			if err := s.Create(ctx, rec); err != nil {
				t.Fatalf("Create = %v", err)
			}
		}
		// What a link and a delete leave: records until their expiry.
		linked.Version, linked.LinkedTo = 1, "user-1"
		deleted.Version, deleted.Deleted = 1, true
		for _, rec := range []*anonymous.Record{linked, deleted} {
			if err := s.Update(ctx, rec); err != nil {
				t.Fatalf("Update = %v", err)
			}
		}

		time.Sleep(50 * time.Second)
		// Expired but not swept yet: hidden from Get, still in memory.
		if _, err := s.Get(ctx, expired.User.ID); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("Get of an expired guest before the sweep = %v, want ErrNotFound", err)
		}
		if n := s.Len(); n != 4 {
			t.Errorf("Len before the first sweep = %d, want 4", n)
		}

		time.Sleep(11 * time.Second) // past the sweep at 1m
		synctest.Wait()
		// The deleted guest's record lasts until 90s.
		if n := s.Len(); n != 2 {
			t.Errorf("Len after the first sweep = %d, want 2 (a guest and a deleted one)", n)
		}
		if err := s.Create(ctx, storetest.NewRecord(deleted.User.ID, time.Now().Add(time.Hour))); !errors.Is(err, anonymous.ErrExists) {
			t.Errorf("Create of a reserved id after a sweep = %v, want ErrExists", err)
		}

		time.Sleep(time.Minute) // past the reservation, and the sweep at 2m
		synctest.Wait()
		if n := s.Len(); n != 1 {
			t.Errorf("Len after the second sweep = %d, want 1", n)
		}
		if _, err := s.Get(ctx, kept.User.ID); err != nil {
			t.Errorf("Get of an unexpired guest after two sweeps = %v", err)
		}
	})
}

func TestSweepInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memstore.New(memstore.Options{SweepInterval: time.Second})
		defer s.Close()
		if err := s.Create(t.Context(), storetest.NewRecord("", time.Now().Add(time.Second))); err != nil {
			t.Fatalf("Create = %v", err)
		}
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		if n := s.Len(); n != 0 {
			t.Errorf("Len 2.5s after a 1s expiry with a 1s SweepInterval = %d, want 0", n)
		}
	})
}

// TestClose checks that Close is idempotent, safe to call concurrently and
// stops the sweeper: synctest.Test fails when a goroutine outlives its
// bubble.
func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memstore.New(memstore.Options{SweepInterval: time.Millisecond})
		time.Sleep(10 * time.Millisecond) // let the sweeper run a few times
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if err := s.Close(); err != nil {
					t.Errorf("concurrent Close = %v", err)
				}
			})
		}
		wg.Wait()
		if err := s.Close(); err != nil {
			t.Errorf("Close after Close = %v", err)
		}
		// A closed store still answers, and still hides expired guests.
		ctx := t.Context()
		rec := storetest.NewRecord("", time.Now().Add(time.Second))
		if err := s.Create(ctx, rec); err != nil {
			t.Fatalf("Create after Close = %v", err)
		}
		if _, err := s.Get(ctx, rec.User.ID); err != nil {
			t.Errorf("Get after Close = %v", err)
		}
		time.Sleep(time.Second)
		if _, err := s.Get(ctx, rec.User.ID); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("Get of an expired guest after Close = %v, want ErrNotFound", err)
		}
	})
}

// TestExpiryFollowsTheClock checks expiries against time.Now, moved by a
// synctest bubble's sleeps.
func TestExpiryFollowsTheClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := memstore.New()
		t.Cleanup(func() { s.Close() })
		rec := storetest.NewRecord("", time.Now().Add(time.Minute))
		if err := s.Create(ctx, rec); err != nil {
			t.Fatalf("Create = %v", err)
		}
		time.Sleep(59 * time.Second)
		if _, err := s.Get(ctx, rec.User.ID); err != nil {
			t.Errorf("Get a second before expiry = %v", err)
		}
		time.Sleep(time.Second)
		if _, err := s.Get(ctx, rec.User.ID); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("Get at expiry = %v, want ErrNotFound", err)
		}
		rec.Version = 1
		if err := s.Update(ctx, rec); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("Update at expiry = %v, want ErrNotFound", err)
		}
	})
}

// BenchmarkGet is a returning guest's store read on one goroutine.
func BenchmarkGet(b *testing.B) {
	s, ids := filled(b)
	ctx := b.Context()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(ctx, ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkGetParallel is returning guests' store reads on every core.
func BenchmarkGetParallel(b *testing.B) {
	s, ids := filled(b)
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(ids))
		for pb.Next() {
			if _, err := s.Get(ctx, ids[i%len(ids)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// filled returns a store holding 10,000 guests and their ids.
func filled(b *testing.B) (*memstore.Store, []string) {
	s := memstore.New()
	b.Cleanup(func() { s.Close() })
	ids := make([]string, 10_000)
	for i := range ids {
		rec := storetest.NewRecord("", time.Now().Add(time.Hour))
		if err := s.Create(b.Context(), rec); err != nil {
			b.Fatal(err)
		}
		ids[i] = rec.User.ID
	}
	return s, ids
}

// A full store keeps a headroom of 1 %, at least 16, for a link's claimed
// record: a flood that fills the store cannot keep a visitor from logging
// in with the cart its cookie holds.
func TestMaxGuestsHeadroomForLinks(t *testing.T) {
	ctx := t.Context()
	s := memstore.New(memstore.Options{MaxGuests: 2})
	defer s.Close()
	for range 2 {
		if err := s.Create(ctx, storetest.NewRecord("", time.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	claimed := func() *anonymous.Record {
		rec := storetest.NewRecord("", time.Now().Add(time.Hour))
		rec.ClaimOwner, rec.ClaimUntil = "link", time.Now().Add(time.Minute)
		return rec
	}
	for i := range 16 {
		if err := s.Create(ctx, claimed()); err != nil {
			t.Fatalf("claimed Create %d past MaxGuests: %v, want it stored in the headroom", i, err)
		}
	}
	if err := s.Create(ctx, claimed()); !errors.Is(err, anonymous.ErrStoreFull) {
		t.Errorf("claimed Create past the headroom: %v, want ErrStoreFull", err)
	}
	if err := s.Create(ctx, storetest.NewRecord("", time.Now().Add(time.Hour))); !errors.Is(err, anonymous.ErrStoreFull) {
		t.Errorf("unclaimed Create past MaxGuests: %v, want ErrStoreFull", err)
	}
}

// Past MaxGuests the store stores nothing, until expired guests are freed.
func TestMaxGuests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := memstore.New(memstore.Options{MaxGuests: 3, SweepInterval: time.Minute})
		defer s.Close()
		for i := range 3 {
			if err := s.Create(ctx, storetest.NewRecord("", time.Now().Add(time.Duration(i+1)*30*time.Second))); err != nil {
				t.Fatalf("Create %d: %v", i, err)
			}
		}
		if err := s.Create(ctx, storetest.NewRecord("", time.Now().Add(time.Hour))); !errors.Is(err, anonymous.ErrStoreFull) {
			t.Fatalf("Create past MaxGuests: %v, want ErrStoreFull", err)
		}
		if n := s.Len(); n != 3 {
			t.Errorf("Len %d, want 3", n)
		}
		time.Sleep(61 * time.Second) // two expired and swept
		synctest.Wait()
		for i := range 2 {
			if err := s.Create(ctx, storetest.NewRecord("", time.Now().Add(time.Hour))); err != nil {
				t.Errorf("Create %d after the sweep: %v", i, err)
			}
		}
		if err := s.Create(ctx, storetest.NewRecord("", time.Now().Add(time.Hour))); !errors.Is(err, anonymous.ErrStoreFull) {
			t.Errorf("Create past MaxGuests again: %v, want ErrStoreFull", err)
		}
	})
}
