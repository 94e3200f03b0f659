package storetest

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
)

// contextTests call every method with a context that is already done: each
// must return an error matching the context's error and change nothing.
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
		key := newKey()
		is(t, "Create", s.Create(done, key, anonymous.Entry{Value: []byte("v"), Expires: now().Add(long)}), want)
		gone(t, s, key, "a Create with a done context")
	})
	t.Run("Get", func(t *testing.T) {
		key, _ := fresh(t, s, "v", now().Add(long))
		_, err := s.Get(done, key)
		is(t, "Get", err, want)
	})
	t.Run("Update", func(t *testing.T) {
		key, e := fresh(t, s, "v", now().Add(long))
		w := next(e, []byte("changed"), now().Add(2*long))
		is(t, "Update", s.Update(done, key, w), want)
		same(t, s, key, e, "an Update with a done context")
		// Nor did it take the version: the caller's next write succeeds.
		same(t, s, key, update(t, s, key, w), "an Update after an Update with a done context")
	})
}

var concurrencyTests = []test{
	{name: "Counter", fn: func(t *testing.T, s anonymous.Store) {
		// Many requests add to one counter at once, each reading it and
		// writing it back by compare-and-swap, again after a conflict (two
		// tabs adding to one cart): none of their additions is lost.
		ctx := t.Context()
		key, _ := fresh(t, s, "0", now().Add(long))
		for i, err := range race(writers, func(int) error { return increment(ctx, s, key) }) {
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
		}
		got := get(t, s, key)
		if n, err := counter(got.Value); err != nil || n != writers || got.Version != 1+writers {
			t.Errorf("after %d concurrent increments, Value = %q (%v) at version %d, want %d at version %d",
				writers, got.Value, err, got.Version, writers, 1+writers)
		}
	}},
	{name: "Mixed", fn: func(t *testing.T, s anonymous.Store) {
		// Every method at once on shared and private keys, for the race
		// detector; each call must still give an answer the contract
		// allows. Every write of a shared key adds one to the counter in
		// its value, so every Get must find a counter one less than the
		// version, and no write may be lost.
		ctx := t.Context()
		shared := make([]string, 4)
		writes := make([]atomic.Int64, len(shared))
		for i := range shared {
			shared[i], _ = fresh(t, s, "0", now().Add(long))
		}
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				rnd := mrand.New(mrand.NewPCG(uint64(g), 0))
				for range 100 {
					i := rnd.IntN(len(shared))
					var err error
					switch rnd.IntN(4) {
					case 0:
						_, err = read(ctx, s, shared[i])
					case 1:
						// One try to add one; losing to another writer is fine.
						var e anonymous.Entry
						if e, err = read(ctx, s, shared[i]); err == nil {
							n, _ := counter(e.Value)
							switch err = s.Update(ctx, shared[i], next(e, strconv.AppendInt(nil, n+1, 10), now().Add(long))); {
							case err == nil:
								writes[i].Add(1)
							case errors.Is(err, anonymous.ErrConflict):
								err = nil
							}
						}
					case 2:
						switch err = s.Create(ctx, shared[i], anonymous.Entry{Value: []byte("0"), Expires: now().Add(long)}); {
						case err == nil:
							err = fmt.Errorf("a Create over key %s succeeded, want ErrExists", shared[i])
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
		for i, key := range shared {
			n := writes[i].Load()
			want := anonymous.Entry{Value: strconv.AppendInt(nil, n, 10), Version: 1 + uint64(n)}
			same(t, s, key, want, fmt.Sprintf("concurrent use (%d writes of the key)", n))
		}
	}},
}

// counter reads the decimal counter kept in a value.
func counter(v []byte) (int64, error) { return strconv.ParseInt(string(v), 10, 64) }

// read gets a shared key of Mixed and checks its counter.
func read(ctx context.Context, s anonymous.Store, key string) (anonymous.Entry, error) {
	e, err := s.Get(ctx, key)
	if err != nil {
		return e, fmt.Errorf("a Get: %v", err)
	}
	if n, err := counter(e.Value); err != nil || uint64(n)+1 != e.Version {
		return e, fmt.Errorf("Get(%q) returned Value %q at version %d, want a counter of %d", key, e.Value, e.Version, e.Version-1)
	}
	return e, nil
}

// increment adds one to the counter under key the way package anonymous
// changes a guest: read, change, write back if nobody wrote meanwhile, and
// start again if somebody did.
func increment(ctx context.Context, s anonymous.Store, key string) error {
	// Each conflict is another writer's success: no writer can lose more
	// often than there are writers.
	for range 4 * writers {
		e, err := s.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("a Get: %v", err)
		}
		n, err := counter(e.Value)
		if err != nil {
			return fmt.Errorf("a Get returned Value %q: %v", e.Value, err)
		}
		switch err := s.Update(ctx, key, next(e, strconv.AppendInt(nil, n+1, 10), now().Add(long))); {
		case err == nil:
			return nil
		case !errors.Is(err, anonymous.ErrConflict):
			return fmt.Errorf("an Update of version %d: %v", e.Version, err)
		}
	}
	return fmt.Errorf("an Update returned ErrConflict %d times in a row", 4*writers)
}

// lifetime takes a private key through a guest's life: created, updated
// twice, read, and still taken.
func lifetime(ctx context.Context, s anonymous.Store) error {
	key := newKey()
	e := anonymous.Entry{Value: []byte("new"), Expires: now().Add(long)}
	if err := s.Create(ctx, key, e); err != nil {
		return fmt.Errorf("a Create: %v", err)
	}
	for v := uint64(1); v <= 2; v++ {
		e.Version, e.Value = v, fmt.Appendf(nil, "version %d", v+1)
		if err := s.Update(ctx, key, e); err != nil {
			return fmt.Errorf("an Update of version %d: %v", v, err)
		}
	}
	got, err := s.Get(ctx, key)
	switch {
	case err != nil:
		return fmt.Errorf("a Get of a key just written: %v", err)
	case string(got.Value) != "version 3" || got.Version != 3:
		return fmt.Errorf("a Get of %q written as version 3 returned %q at version %d", key, got.Value, got.Version)
	}
	if err := s.Create(ctx, key, anonymous.Entry{Value: []byte("again"), Expires: now().Add(long)}); !errors.Is(err, anonymous.ErrExists) {
		return fmt.Errorf("a Create over a live key: %v, want ErrExists", err)
	}
	return nil
}
