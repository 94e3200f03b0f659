package memstore_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
	"github.com/guestpass/anonymous/storetest"
)

// newStore returns a store with options o, closed when the test ends.
func newStore(t testing.TB, o memstore.Options) *memstore.Store {
	t.Helper()
	s, err := memstore.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) anonymous.Store {
		s, err := memstore.New(memstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close = %v", err)
			}
		})
		return s
	})
}

// TestNewOptions checks that New answers invalid options with an error,
// not a panic, and starts no sweeper for them (the bubble fails if a
// goroutine outlives it), and takes the documented special values.
func TestNewOptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, o := range []memstore.Options{
			{SweepInterval: -time.Nanosecond},
			{SweepInterval: -time.Minute, MaxBytes: 1 << 20},
		} {
			s, err := memstore.New(o)
			if err == nil || s != nil {
				t.Errorf("New(%+v) = %p, %v; want nil and an error", o, s, err)
				continue
			}
			if !strings.Contains(err.Error(), "SweepInterval") {
				t.Errorf("New(%+v) error %q does not name SweepInterval", o, err)
			}
		}
		for _, o := range []memstore.Options{
			{},
			{MaxBytes: -1},
			{MaxBytes: 1},
			{SweepInterval: time.Nanosecond},
		} {
			s, err := memstore.New(o)
			if err != nil {
				t.Errorf("New(%+v) = %v", o, err)
				continue
			}
			s.Close()
		}
	})
}

// key returns the i-th of a test's keys, as long as a guest id.
func key(i int) string { return fmt.Sprintf("01JDQ5Z8M3X9Y7K2V4%08d", i) }

func entry(value string, expires time.Time) anonymous.Entry {
	return anonymous.Entry{Value: []byte(value), Expires: expires}
}

// TestSweeper runs in a synctest bubble, whose fake clock makes the
// sweeper's minutes pass at once. The sweeper frees entries by the expiry
// of their last write.
func TestSweeper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, memstore.Options{}) // the default sweep, once a minute
		start := time.Now()
		expired, extended, shortened, kept := key(1), key(2), key(3), key(4)
		for k, exp := range map[string]time.Duration{expired: 30 * time.Second, extended: 40 * time.Second, shortened: time.Hour, kept: time.Hour} {
			if err := s.Create(ctx, k, entry(k, start.Add(exp))); err != nil {
				t.Fatalf("Create = %v", err)
			}
		}
		for k, exp := range map[string]time.Duration{extended: 90 * time.Second, shortened: 20 * time.Second} {
			if err := s.Update(ctx, k, anonymous.Entry{Value: []byte(k), Version: 1, Expires: start.Add(exp)}); err != nil {
				t.Fatalf("Update = %v", err)
			}
		}

		time.Sleep(50 * time.Second)
		// Expired but not swept yet: hidden from Get, still in memory.
		for _, k := range []string{expired, shortened} {
			if _, err := s.Get(ctx, k); !errors.Is(err, anonymous.ErrNotFound) {
				t.Errorf("Get of an expired entry before the sweep = %v, want ErrNotFound", err)
			}
		}
		if n := s.Len(); n != 4 {
			t.Errorf("Len before the first sweep = %d, want 4", n)
		}

		time.Sleep(11 * time.Second) // past the sweep at 1m
		synctest.Wait()
		if n := s.Len(); n != 2 {
			t.Errorf("Len after the first sweep = %d, want 2 (the extended and the kept entry)", n)
		}
		if err := s.Create(ctx, extended, entry("new", time.Now().Add(time.Hour))); !errors.Is(err, anonymous.ErrExists) {
			t.Errorf("Create over an entry extended past the sweep = %v, want ErrExists", err)
		}

		time.Sleep(time.Minute) // past the extension, and the sweep at 2m
		synctest.Wait()
		if n := s.Len(); n != 1 {
			t.Errorf("Len after the second sweep = %d, want 1", n)
		}
		if e, err := s.Get(ctx, kept); err != nil || string(e.Value) != kept {
			t.Errorf("Get of an unexpired entry after two sweeps = %q, %v", e.Value, err)
		}
	})
}

func TestSweepInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStore(t, memstore.Options{SweepInterval: time.Second})
		if err := s.Create(t.Context(), key(1), entry("v", time.Now().Add(time.Second))); err != nil {
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
		s, err := memstore.New(memstore.Options{SweepInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
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
		// A closed store still answers, and still hides expired entries.
		ctx := t.Context()
		if err := s.Create(ctx, key(1), entry("v", time.Now().Add(time.Second))); err != nil {
			t.Fatalf("Create after Close = %v", err)
		}
		if _, err := s.Get(ctx, key(1)); err != nil {
			t.Errorf("Get after Close = %v", err)
		}
		time.Sleep(time.Second)
		if _, err := s.Get(ctx, key(1)); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("Get of an expired entry after Close = %v, want ErrNotFound", err)
		}
	})
}

// TestExpiryFollowsTheClock checks expiries against time.Now, moved by a
// synctest bubble's sleeps, to the nanosecond.
func TestExpiryFollowsTheClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, memstore.Options{})
		exp := time.Now().Add(time.Minute + time.Nanosecond)
		if err := s.Create(ctx, key(1), entry("v", exp)); err != nil {
			t.Fatalf("Create = %v", err)
		}
		time.Sleep(time.Minute)
		e, err := s.Get(ctx, key(1))
		if err != nil || !e.Expires.Equal(exp) {
			t.Errorf("Get a nanosecond before expiry = %v expiring %v, want %v", err, e.Expires, exp)
		}
		time.Sleep(time.Nanosecond)
		if _, err := s.Get(ctx, key(1)); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("Get at expiry = %v, want ErrNotFound", err)
		}
		if err := s.Update(ctx, key(1), anonymous.Entry{Version: 1, Expires: exp.Add(time.Hour)}); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("Update at expiry = %v, want ErrNotFound", err)
		}
		// An expired entry is as good as absent: its key is free again.
		if err := s.Create(ctx, key(1), entry("w", exp.Add(time.Hour))); err != nil {
			t.Errorf("Create at expiry = %v", err)
		}
		if e, err := s.Get(ctx, key(1)); err != nil || string(e.Value) != "w" || e.Version != 1 {
			t.Errorf("Get after a Create over an expired entry = %q version %d, %v; want w version 1", e.Value, e.Version, err)
		}
	})
}

// guestSize is about the size of a new guest's record without data, as
// package anonymous encodes it (TestGuestSize measures it).
const guestSize = 190

// BenchmarkGet is a returning guest's store read on one goroutine.
func BenchmarkGet(b *testing.B) {
	s, keys := filled(b)
	ctx := b.Context()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(ctx, keys[i%len(keys)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkGetParallel is returning guests' store reads on every core.
func BenchmarkGetParallel(b *testing.B) {
	s, keys := filled(b)
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(keys))
		for pb.Next() {
			if _, err := s.Get(ctx, keys[i%len(keys)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// filled returns a store holding 10,000 guest-sized entries and their keys.
func filled(b *testing.B) (*memstore.Store, []string) {
	s := newStore(b, memstore.Options{})
	keys := make([]string, 10_000)
	value := bytes.Repeat([]byte{'g'}, guestSize)
	for i := range keys {
		keys[i] = key(i)
		if err := s.Create(b.Context(), keys[i], anonymous.Entry{Value: value, Expires: time.Now().Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	return s, keys
}

// TestConcurrentUpdates has goroutines increment counters by reading,
// changing and writing them back, while others create entries that expire
// and a sweeper compacts: no increment is lost, and no read sees a torn
// value. Each counter's value changes size with its count, so that entries
// move between blocks of every class, and past them.
func TestConcurrentUpdates(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, memstore.Options{SweepInterval: time.Millisecond, MaxBytes: -1})
	const counters, workers, increments = 8, 16, 200
	exp := time.Now().Add(time.Hour)
	for c := range counters {
		if err := s.Create(ctx, key(c), anonymous.Entry{Value: counterValue(0), Expires: exp}); err != nil {
			t.Fatal(err)
		}
	}
	var churn atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range increments {
				k := key((w + i) % counters)
				for {
					e, err := s.Get(ctx, k)
					if err != nil {
						t.Errorf("Get(%s) = %v", k, err)
						return
					}
					n, ok := count(e.Value)
					if !ok {
						t.Errorf("Get(%s) returned a torn value of %d bytes", k, len(e.Value))
						return
					}
					e.Value = counterValue(n + 1)
					err = s.Update(ctx, k, e)
					if err == nil {
						break
					}
					if !errors.Is(err, anonymous.ErrConflict) {
						t.Errorf("Update(%s) = %v", k, err)
						return
					}
				}
				// An entry that expires at once, for the sweeper to free.
				c := key(1000 + int(churn.Add(1)))
				if err := s.Create(ctx, c, entry("churn", time.Now())); err != nil {
					t.Errorf("Create(%s) = %v", c, err)
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for c := range counters {
		e, err := s.Get(ctx, key(c))
		n, ok := count(e.Value)
		if err != nil || !ok || e.Version != uint64(n)+1 {
			t.Fatalf("counter %d: %d at version %d, %v", c, n, e.Version, err)
		}
		total += n
	}
	if total != workers*increments {
		t.Errorf("the counters sum to %d, want %d: updates were lost", total, workers*increments)
	}
}

// counterValue is the value of a counter at n: n, then up to 8.5 KiB of
// padding, 64 KiB more every 50th count, each byte n's low byte.
func counterValue(n int) []byte {
	pad := n % 97 * 89
	if n%50 == 49 {
		pad += 64 << 10
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(n))
	return append(b, bytes.Repeat([]byte{byte(n)}, pad)...)
}

// count reads a counterValue back; false when the value is not one.
func count(b []byte) (int, bool) {
	if len(b) < 8 {
		return 0, false
	}
	n := int(binary.LittleEndian.Uint64(b))
	return n, bytes.Equal(b, counterValue(n))
}
