package memstore_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

// A full store keeps a headroom of 1 %, at least 16, for Durable Creates (a
// link's): a flood that fills the store cannot keep a visitor from logging
// in with the cart its cookie holds. Updates take no room.
func TestMaxGuestsHeadroomForDurable(t *testing.T) {
	ctx := t.Context()
	s := memstore.New(memstore.Options{MaxGuests: 2})
	defer s.Close()
	exp := time.Now().Add(time.Hour)
	for i := range 2 {
		if err := s.Create(ctx, key(i), entry("v", exp)); err != nil {
			t.Fatal(err)
		}
	}
	durable := anonymous.Entry{Value: []byte("claimed"), Expires: exp, Durable: true}
	for i := range 16 {
		if err := s.Create(ctx, key(100+i), durable); err != nil {
			t.Fatalf("Durable Create %d past MaxGuests: %v, want it stored in the headroom", i, err)
		}
	}
	if err := s.Create(ctx, key(200), durable); !errors.Is(err, anonymous.ErrStoreFull) {
		t.Errorf("Durable Create past the headroom: %v, want ErrStoreFull", err)
	}
	if err := s.Create(ctx, key(201), entry("v", exp)); !errors.Is(err, anonymous.ErrStoreFull) {
		t.Errorf("Create past MaxGuests: %v, want ErrStoreFull", err)
	}
	if _, err := s.Get(ctx, key(201)); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Get after a refused Create = %v, want ErrNotFound", err)
	}
	if n := s.Len(); n != 18 {
		t.Errorf("Len = %d, want 18", n)
	}
	if err := s.Update(ctx, key(0), anonymous.Entry{Value: make([]byte, 1000), Version: 1, Expires: exp}); err != nil {
		t.Errorf("Update in a full store: %v", err)
	}
}

// Past MaxGuests the store stores nothing, until expired entries are freed.
func TestMaxGuests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := memstore.New(memstore.Options{MaxGuests: 3, SweepInterval: time.Minute})
		defer s.Close()
		for i := range 3 {
			if err := s.Create(ctx, key(i), entry("v", time.Now().Add(time.Duration(i+1)*30*time.Second))); err != nil {
				t.Fatalf("Create %d: %v", i, err)
			}
		}
		if err := s.Create(ctx, key(3), entry("v", time.Now().Add(time.Hour))); !errors.Is(err, anonymous.ErrStoreFull) {
			t.Fatalf("Create past MaxGuests: %v, want ErrStoreFull", err)
		}
		if n := s.Len(); n != 3 {
			t.Errorf("Len %d, want 3", n)
		}
		time.Sleep(61 * time.Second) // two expired and swept
		synctest.Wait()
		for i := range 2 {
			if err := s.Create(ctx, key(10+i), entry("v", time.Now().Add(time.Hour))); err != nil {
				t.Errorf("Create %d after the sweep: %v", i, err)
			}
		}
		if err := s.Create(ctx, key(20), entry("v", time.Now().Add(time.Hour))); !errors.Is(err, anonymous.ErrStoreFull) {
			t.Errorf("Create past MaxGuests again: %v, want ErrStoreFull", err)
		}
	})
}

// TestMaxGuestsConcurrent checks that the cap, and the headroom, hold
// exactly when Creates race on every shard.
func TestMaxGuestsConcurrent(t *testing.T) {
	ctx := t.Context()
	const maxGuests, headroom, workers = 100, 16, 32
	s := memstore.New(memstore.Options{MaxGuests: maxGuests})
	defer s.Close()
	exp := time.Now().Add(time.Hour)
	race := func(durable bool, first int) int {
		var created atomic.Int64
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range 10 {
					err := s.Create(ctx, key(first+w*10+i), anonymous.Entry{Value: []byte("v"), Expires: exp, Durable: durable})
					switch {
					case err == nil:
						created.Add(1)
					case !errors.Is(err, anonymous.ErrStoreFull):
						t.Errorf("Create = %v", err)
					}
				}
			})
		}
		wg.Wait()
		return int(created.Load())
	}
	if n := race(false, 0); n != maxGuests {
		t.Errorf("%d concurrent Creates stored %d entries, want MaxGuests, %d", workers*10, n, maxGuests)
	}
	if n := race(true, 10_000); n != headroom {
		t.Errorf("%d concurrent Durable Creates in a full store stored %d entries, want the headroom, %d", workers*10, n, headroom)
	}
	if n := s.Len(); n != maxGuests+headroom {
		t.Errorf("Len = %d, want %d", n, maxGuests+headroom)
	}
}
