// Package storetest checks an anonymous.Store implementation against the
// contract documented on anonymous.Store, the way testing/fstest checks an
// fs.FS.
//
// A Store implementation runs the whole suite from one test, handing Run a
// function that returns a fresh, empty store for each subtest and registers
// the store's cleanup with t.Cleanup:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) anonymous.Store {
//			s := mystore.New()
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Every clause of the contract is its own subtest, grouped by method or
// concern (Create/RoundTrip, Update/Conflict, Recovery/UpdateReplyLost,
// ...), so -run picks any of them and a failure names the clause that was
// broken.
//
// A Store is a small versioned key-value store of opaque bytes: it keeps
// the Value it is given byte for byte, whatever the bytes, at least 64 KiB
// of them; a nil and an empty Value are alike. Keys are what package
// anonymous uses, guest ids: non-empty printable ASCII of at most 64 bytes
// without '{' or '}'. The suite compares what Get returns by Value, Version
// and Durable (which Get returns false); it does not look at the Expires Get
// returns, which a store may leave zero. Expiries are checked by waiting
// them out: every expiry the suite hands a store is in UTC and a whole
// number of milliseconds, and an entry must be readable until it and gone
// from it on, to within a few tens of milliseconds, so a store that keeps
// expiries in whole seconds fails.
//
// The Recovery group runs a real anonymous.Manager on the store, wrapped in
// a fault injector that loses a write's reply or resends the write, as a
// network and a retrying client do; it checks that a visitor's click counts
// once and that its guest survives. It holds the store to reading its own
// writes at once, however the writes' replies fared.
//
// The Transact group runs only when the store is also an
// anonymous.TxStore (a store without Transact gets no such subtests). It
// holds Transact to its contract: a missing or expired entry is
// ErrNotFound without a call of fn; fn is given the entry as Get returns
// it, and runs at most once; the entry fn returns is written as the next
// version, byte for byte, expiring at its Expires, and fn's error writes
// nothing and is returned (errors.Is finds it); a done context fails the
// call. While one Transact's fn holds the entry, another answers
// ErrClaimed at once or waits for it and then sees its write; concurrent
// Transacts lose no update, and a plain Update racing a Transact never
// succeeds on the same version as it.
//
// The suite waits out real expiries of a few hundred milliseconds; the
// subtests that wait run in parallel, so the whole suite takes about two
// seconds, a little more with the Transact group. newStore must therefore
// be safe to call from parallel subtests, and stores that share a backend
// (one Redis server, say) must keep their data apart, for example with a
// random key prefix per store. Run returns when every subtest has
// finished.
package storetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/oklog/ulid/v2"
)

const (
	// short is an expiry the suite waits out.
	short = 200 * time.Millisecond
	// slack is how far from an expiry the suite checks it: before it the
	// entry must be there, after it gone. It absorbs clock granularity and
	// scheduling.
	slack = 50 * time.Millisecond
	// long is an expiry no subtest lives to see.
	long = time.Hour
	// racers is how many goroutines race for one write; rounds how often.
	racers = 32
	rounds = 8
	// writers is how many goroutines read, change and write one entry at
	// once.
	writers = 64
	// largeValue is the size of a value every store must keep.
	largeValue = 64 << 10
)

// test is one clause of the contract. waits marks tests that sleep through
// an expiry: they run in parallel with the rest of their group.
type test struct {
	name  string
	waits bool
	fn    func(t *testing.T, s anonymous.Store)
}

// Run checks the Store that newStore returns against the anonymous.Store
// contract, one subtest per clause, and, when the store is an
// anonymous.TxStore, against Transact's. newStore is called once per
// subtest with that subtest's t, and once with Run's own t to learn whether
// the store is a TxStore; it must return an empty store, register its
// cleanup with t.Cleanup, and be safe to call from parallel subtests. Run
// returns when every subtest has finished.
func Run(t *testing.T, newStore func(t *testing.T) anonymous.Store) {
	t.Helper()
	groups := []struct {
		name  string
		tests []test
	}{
		{"Create", createTests},
		{"Get", getTests},
		{"Update", updateTests},
		{"Context", contextTests},
		{"Concurrency", concurrencyTests},
		{"Recovery", recoveryTests},
	}
	for _, g := range groups {
		runGroup(t, g.name, g.tests, newStore)
	}
	if _, ok := newStore(t).(anonymous.TxStore); ok {
		runGroup(t, "Transact", txTests, newStore)
	}
}

// runGroup runs tests as the subtests of group name, each on a store of
// its own.
func runGroup(t *testing.T, name string, tests []test, newStore func(t *testing.T) anonymous.Store) {
	t.Run(name, func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if tc.waits {
					t.Parallel()
				}
				tc.fn(t, newStore(t))
			})
		}
	})
}

// newKey returns a new key like the guest ids package anonymous uses: a
// ULID, with random entropy from crypto/rand. It is safe for concurrent
// use.
func newKey() string {
	return ulid.MustNew(ulid.Timestamp(time.Now()), rand.Reader).String()
}

// now returns the current time in UTC truncated to the millisecond: the
// precision of every expiry the suite hands a store. It is safe for
// concurrent use.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// expiry returns an instant at least d from now whose fraction of a second
// is between 0.1 and 0.7 s, so that a store that keeps expiries in whole
// seconds, rounding either way, is off by more than slack.
func expiry(d time.Duration) time.Time {
	t := now().Add(d)
	switch f := t.Sub(t.Truncate(time.Second)); {
	case f < 100*time.Millisecond:
		t = t.Add(100*time.Millisecond - f)
	case f > 700*time.Millisecond:
		t = t.Add(time.Second + 100*time.Millisecond - f)
	}
	return t
}

// randomValue returns n random bytes.
func randomValue(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return b
}

// describe describes how got differs from want, briefly for large values;
// it is empty when they hold the same bytes (a nil and an empty value are
// alike).
func describe(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	if len(got) <= 64 && len(want) <= 64 {
		return fmt.Sprintf("Value = %q, want %q", got, want)
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("Value = %d bytes, want %d bytes, the first difference at byte %d", len(got), len(want), i)
}

// create creates e under key and returns what Get must now return: a copy
// of e.Value at version 1.
func create(t *testing.T, s anonymous.Store, key string, e anonymous.Entry) anonymous.Entry {
	t.Helper()
	want := anonymous.Entry{Value: bytes.Clone(e.Value), Version: 1, Expires: e.Expires}
	if err := s.Create(t.Context(), key, e); err != nil {
		t.Fatalf("Create(%q) = %v, want nil", key, err)
	}
	return want
}

// fresh creates an entry with value v under a new key, expiring at exp,
// and returns the key and what Get must now return.
func fresh(t *testing.T, s anonymous.Store, v string, exp time.Time) (string, anonymous.Entry) {
	t.Helper()
	key := newKey()
	return key, create(t, s, key, anonymous.Entry{Value: []byte(v), Expires: exp})
}

// update replaces the entry under key with e, over version e.Version, and
// returns what Get must now return: a copy of e.Value at the next version.
func update(t *testing.T, s anonymous.Store, key string, e anonymous.Entry) anonymous.Entry {
	t.Helper()
	want := anonymous.Entry{Value: bytes.Clone(e.Value), Version: e.Version + 1, Expires: e.Expires}
	if err := s.Update(t.Context(), key, e); err != nil {
		t.Fatalf("Update(%q) of version %d = %v, want nil", key, e.Version, err)
	}
	return want
}

// next returns the write that replaces cur (as Get returned it) with value
// v, expiring at exp.
func next(cur anonymous.Entry, v []byte, exp time.Time) anonymous.Entry {
	return anonymous.Entry{Value: v, Version: cur.Version, Expires: exp}
}

// get returns the entry under key, failing t if there is none.
func get(t *testing.T, s anonymous.Store, key string) anonymous.Entry {
	t.Helper()
	e, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q) = %v, want the entry", key, err)
	}
	return e
}

// differs describes how got, as Get returned it, differs from want; it is
// empty when they match. Expires is not compared.
func differs(got, want anonymous.Entry) string {
	var d []string
	if s := describe(got.Value, want.Value); s != "" {
		d = append(d, s)
	}
	if got.Version != want.Version {
		d = append(d, fmt.Sprintf("Version = %d, want %d", got.Version, want.Version))
	}
	if got.Durable {
		d = append(d, "Durable = true, want false (Get returns it false)")
	}
	return strings.Join(d, "; ")
}

// same fails t unless the store holds want under key.
func same(t *testing.T, s anonymous.Store, key string, want anonymous.Entry, after string) {
	t.Helper()
	got, err := s.Get(t.Context(), key)
	switch {
	case err != nil:
		t.Errorf("after %s, Get(%q) = %v, want version %d", after, key, err, want.Version)
	default:
		if d := differs(got, want); d != "" {
			t.Errorf("after %s, Get(%q) returned another entry: %s", after, key, d)
		}
	}
}

// alive is same for an entry that expires at until: a Get that ends at or
// after until, delayed by the scheduler, may find it gone and proves
// nothing.
func alive(t *testing.T, s anonymous.Store, key string, want anonymous.Entry, until time.Time, after string) {
	t.Helper()
	got, err := s.Get(t.Context(), key)
	d := differs(got, want)
	if err != nil {
		d = err.Error()
	}
	switch {
	case d == "":
	case !time.Now().Before(until):
		t.Logf("after %s, Get(%q) ended past the entry's expiry (inconclusive): %s", after, key, d)
	default:
		t.Errorf("after %s, Get(%q), which ended %v before the entry's expiry: %s", after, key, time.Until(until).Round(time.Millisecond), d)
	}
}

// gone fails t unless Get reports ErrNotFound for key.
func gone(t *testing.T, s anonymous.Store, key, after string) {
	t.Helper()
	e, err := s.Get(t.Context(), key)
	switch {
	case err == nil:
		t.Errorf("after %s, Get(%q) returned version %d (%s), want ErrNotFound", after, key, e.Version, describe(e.Value, nil))
	case !errors.Is(err, anonymous.ErrNotFound):
		t.Errorf("after %s, Get(%q) = %v, want ErrNotFound", after, key, err)
	}
}

// is fails t unless err matches target (nil meaning no error).
func is(t *testing.T, call string, err, target error) {
	t.Helper()
	switch {
	case target == nil && err != nil:
		t.Errorf("%s = %v, want nil", call, err)
	case target != nil && !errors.Is(err, target):
		t.Errorf("%s = %v, want an error matching %v", call, err, target)
	}
}

// sleepUntil sleeps until when.
func sleepUntil(when time.Time) { time.Sleep(time.Until(when)) }

// race runs f(0) to f(n-1) in n goroutines released at once and returns
// their errors.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// oneWinner checks that exactly one error in errs is nil and all others
// match lost, and returns the winner's index (-1 if there is none).
func oneWinner(t *testing.T, call string, errs []error, lost error) int {
	t.Helper()
	winner, wins := -1, 0
	for i, err := range errs {
		switch {
		case err == nil:
			winner, wins = i, wins+1
		case !errors.Is(err, lost):
			t.Errorf("%s: racer %d got %v, want nil or an error matching %v", call, i, err, lost)
		}
	}
	if wins != 1 {
		t.Errorf("%s: %d of %d racers succeeded, want exactly one", call, wins, len(errs))
	}
	return winner
}
