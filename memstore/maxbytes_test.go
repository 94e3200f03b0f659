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

// cost returns what one entry of key(0) and value v counts against
// MaxBytes, measured on a store of its own.
func cost(t *testing.T, v string) int64 {
	s := newStore(t, memstore.Options{})
	if err := s.Create(t.Context(), key(0), entry(v, time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	return s.Bytes()
}

// Past MaxBytes a Create, and an Update that grows an entry, store
// nothing: ErrStoreFull. A Durable write (a link's, a delete's) still has a
// headroom of 1 %, at least 64 KiB; an Update that shrinks always goes.
func TestMaxBytes(t *testing.T) {
	ctx := t.Context()
	one := cost(t, "v")
	s := newStore(t, memstore.Options{MaxBytes: 2 * one})
	exp := time.Now().Add(time.Hour)
	for i := range 2 {
		if err := s.Create(ctx, key(i), entry("v", exp)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Create(ctx, key(2), entry("v", exp)); !errors.Is(err, anonymous.ErrStoreFull) {
		t.Errorf("Create past MaxBytes: %v, want ErrStoreFull", err)
	}
	if _, err := s.Get(ctx, key(2)); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Get after a refused Create = %v, want ErrNotFound", err)
	}
	if err := s.Update(ctx, key(0), anonymous.Entry{Value: []byte("a cart grows"), Version: 1, Expires: exp}); !errors.Is(err, anonymous.ErrStoreFull) {
		t.Errorf("Update growing past MaxBytes: %v, want ErrStoreFull", err)
	}
	if e, err := s.Get(ctx, key(0)); err != nil || string(e.Value) != "v" || e.Version != 1 {
		t.Errorf("the entry after a refused Update: %q version %d, %v", e.Value, e.Version, err)
	}
	if err := s.Update(ctx, key(0), anonymous.Entry{Version: 1, Expires: exp}); err != nil {
		t.Errorf("Update shrinking in a full store: %v", err)
	}
	durable := anonymous.Entry{Value: make([]byte, 1000), Expires: exp, Durable: true}
	n := 0
	for ; n < 200; n++ {
		if err := s.Create(ctx, key(100+n), durable); err != nil {
			if !errors.Is(err, anonymous.ErrStoreFull) {
				t.Fatal(err)
			}
			break
		}
	}
	if n < 60 || n > 66 {
		t.Errorf("%d Durable Creates of 1 KB fit the headroom, want about 64 (64 KiB)", n)
	}
	if got, limit := s.Bytes(), 2*one+64<<10; got > limit {
		t.Errorf("Bytes = %d, over MaxBytes and headroom, %d", got, limit)
	}
}

// Past MaxBytes the store stores nothing, until expired entries are freed.
func TestMaxBytesUntilSwept(t *testing.T) {
	one := cost(t, "v")
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, memstore.Options{MaxBytes: 3 * one, SweepInterval: time.Minute})
		for i := range 3 {
			if err := s.Create(ctx, key(i), entry("v", time.Now().Add(time.Duration(i+1)*30*time.Second))); err != nil {
				t.Fatalf("Create %d: %v", i, err)
			}
		}
		if err := s.Create(ctx, key(3), entry("v", time.Now().Add(time.Hour))); !errors.Is(err, anonymous.ErrStoreFull) {
			t.Fatalf("Create past MaxBytes: %v, want ErrStoreFull", err)
		}
		time.Sleep(61 * time.Second) // two expired and swept
		synctest.Wait()
		if got := s.Bytes(); got != one {
			t.Errorf("Bytes after the sweep = %d, want one entry's %d", got, one)
		}
		for i := range 2 {
			if err := s.Create(ctx, key(10+i), entry("v", time.Now().Add(time.Hour))); err != nil {
				t.Errorf("Create %d after the sweep: %v", i, err)
			}
		}
		if err := s.Create(ctx, key(20), entry("v", time.Now().Add(time.Hour))); !errors.Is(err, anonymous.ErrStoreFull) {
			t.Errorf("Create past MaxBytes again: %v, want ErrStoreFull", err)
		}
	})
}

// The cap holds exactly when Creates race on every shard.
func TestMaxBytesConcurrent(t *testing.T) {
	ctx := t.Context()
	const entries, workers = 100, 32
	one := cost(t, "v")
	s := newStore(t, memstore.Options{MaxBytes: entries * one})
	exp := time.Now().Add(time.Hour)
	var created atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range 10 {
				// Keys of one length, so that every entry costs one.
				switch err := s.Create(ctx, key(1000+w*10+i), entry("v", exp)); {
				case err == nil:
					created.Add(1)
				case !errors.Is(err, anonymous.ErrStoreFull):
					t.Errorf("Create = %v", err)
				}
			}
		})
	}
	wg.Wait()
	if n := created.Load(); n != entries || s.Bytes() != entries*one {
		t.Errorf("%d concurrent Creates stored %d entries, %d bytes; want %d, %d", workers*10, n, s.Bytes(), entries, entries*one)
	}
}
