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

// txTests are the Transact clauses (see the package doc), which Run adds
// for an anonymous.TxStore only.
var txTests = []test{
	{name: "NotFound", fn: tx(txNotFound)},
	{name: "Expired", waits: true, fn: tx(txExpired)},
	{name: "SeesEntry", fn: tx(txSeesEntry)},
	{name: "Commits", waits: true, fn: tx(txCommits)},
	{name: "RollsBack", waits: true, fn: tx(txRollsBack)},
	{name: "OnceOnly", waits: true, fn: tx(txOnceOnly)},
	{name: "DoneContext", fn: tx(txDoneContext)},
	{name: "Claimed", waits: true, fn: tx(txClaimed)},
	{name: "Counter", waits: true, fn: tx(txCounter)},
	{name: "UpdateRace", waits: true, fn: tx(txUpdateRace)},
}

// tx adapts a Transact clause to the store Run hands it.
func tx(f func(t *testing.T, s anonymous.TxStore)) func(*testing.T, anonymous.Store) {
	return func(t *testing.T, s anonymous.Store) { f(t, s.(anonymous.TxStore)) }
}

const (
	txTimeout = 10 * time.Second // bounds each Transact: one that waits for ever fails
	claimWait = 2 * time.Second  // a second Transact running longer waits for the lock
)

// errFn is the error the clauses' fn returns to roll a Transact back.
var errFn = errors.New("storetest: fn failed")

// recorder is a Transact's fn that records the entries it was called with
// and answers with reply's result. It is safe for concurrent use.
type recorder struct {
	mu    sync.Mutex
	seen  []anonymous.Entry
	reply func(cur anonymous.Entry, call int) (anonymous.Entry, error)
}

// commit returns a recorder whose fn writes value, expiring at exp.
func commit(value []byte, exp time.Time) *recorder {
	return &recorder{reply: func(cur anonymous.Entry, _ int) (anonymous.Entry, error) {
		return anonymous.Entry{Value: value, Version: cur.Version, Expires: exp, Durable: true}, nil
	}}
}

func (r *recorder) fn(_ context.Context, cur anonymous.Entry) (anonymous.Entry, error) {
	r.mu.Lock()
	r.seen = append(r.seen, anonymous.Entry{Value: append([]byte(nil), cur.Value...), Version: cur.Version})
	call := len(r.seen)
	r.mu.Unlock()
	return r.reply(cur, call)
}

// calls returns the entries fn was called with.
func (r *recorder) calls() []anonymous.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen
}

// once fails t unless fn was called exactly once, and returns the entry it
// was given.
func (r *recorder) once(t *testing.T, call string) (anonymous.Entry, bool) {
	t.Helper()
	seen := r.calls()
	if len(seen) != 1 {
		t.Errorf("%s called fn %d times, want once (fn runs at most once per call)", call, len(seen))
		return anonymous.Entry{}, false
	}
	return seen[0], true
}

// never fails t if fn was called.
func (r *recorder) never(t *testing.T, call string) {
	t.Helper()
	if n := len(r.calls()); n > 0 {
		t.Errorf("%s called fn %d times, want ErrNotFound without calling it", call, n)
	}
}

// transact runs s.Transact of key with r's fn, bounded by txTimeout.
func transact(t *testing.T, s anonymous.TxStore, key string, r *recorder) error {
	ctx, cancel := context.WithTimeout(t.Context(), txTimeout)
	defer cancel()
	return s.Transact(ctx, key, r.fn)
}

func txNotFound(t *testing.T, s anonymous.TxStore) {
	fresh(t, s, "another", now().Add(long))
	key := newKey()
	r := commit([]byte("created"), now().Add(long))
	is(t, "Transact of a key never created", transact(t, s, key, r), anonymous.ErrNotFound)
	r.never(t, "Transact of a key never created")
	gone(t, s, key, "a Transact of a key never created")
}

func txExpired(t *testing.T, s anonymous.TxStore) {
	exp := expiry(short)
	key, _ := fresh(t, s, "old", exp)
	sleepUntil(exp.Add(slack))
	r := commit([]byte("revived"), now().Add(long))
	is(t, "Transact of an expired entry", transact(t, s, key, r), anonymous.ErrNotFound)
	r.never(t, "Transact of an expired entry")
	gone(t, s, key, "a Transact of an expired entry")
}

func txSeesEntry(t *testing.T, s anonymous.TxStore) {
	// fn is given the entry as Get returns it: its bytes and its version,
	// here 2; it writes the bytes back unchanged.
	key, v := fresh(t, s, "v1", now().Add(long))
	v = update(t, s, key, next(v, randomValue(largeValue), now().Add(long)))
	r := &recorder{reply: func(cur anonymous.Entry, _ int) (anonymous.Entry, error) {
		return anonymous.Entry{Value: cur.Value, Version: cur.Version, Expires: now().Add(long)}, nil
	}}
	is(t, "Transact of version 2", transact(t, s, key, r), nil)
	if cur, ok := r.once(t, "Transact of version 2"); ok && differs(cur, v) != "" {
		t.Errorf("Transact of version 2 called fn with another entry than Get returns: %s", differs(cur, v))
	}
	same(t, s, key, anonymous.Entry{Value: v.Value, Version: 3}, "a Transact that wrote back the entry fn was given")
}

func txCommits(t *testing.T, s anonymous.TxStore) {
	// fn's entry is written as the next version, byte for byte (the
	// store's own copy), expiring at its Expires; the version it replaced
	// is gone for Update.
	ctx := t.Context()
	key, v := fresh(t, s, "v1", now().Add(long))
	v = update(t, s, key, next(v, []byte("v2"), now().Add(long)))
	value := append([]byte{0, '\r', '\n', 0xff}, randomValue(1024)...)
	want := anonymous.Entry{Value: append([]byte(nil), value...), Version: 3}
	var exp time.Time
	r := &recorder{reply: func(cur anonymous.Entry, _ int) (anonymous.Entry, error) {
		exp = expiry(short) // once locked: a store may wait for its lock (SQLite)
		return anonymous.Entry{Value: value, Version: cur.Version, Expires: exp, Durable: true}, nil
	}}
	is(t, "Transact of version 2", transact(t, s, key, r), nil)
	flip(value)
	same(t, s, key, want, "a Transact that committed over version 2 (and a change of the bytes fn returned)")
	stale := next(v, []byte("stale"), now().Add(long))
	is(t, "Update of version 2 after a Transact committed version 3", s.Update(ctx, key, stale), anonymous.ErrConflict)
	same(t, s, key, want, "an Update of the version a Transact replaced")
	sleepUntil(exp.Add(-slack))
	alive(t, s, key, want, exp, "waiting out all but the last moments of the expiry a Transact set")
	sleepUntil(exp.Add(slack))
	gone(t, s, key, "the expiry a Transact set")
}

func txRollsBack(t *testing.T, s anonymous.TxStore) {
	// fn's error is Transact's (wrapped or not); nothing fn returned is
	// written, not even its expiry; and the entry is not left locked.
	key, v := fresh(t, s, "v1", now().Add(long))
	v = update(t, s, key, next(v, []byte("cart: 2 items"), now().Add(long)))
	exp := expiry(short)
	r := &recorder{reply: func(cur anonymous.Entry, _ int) (anonymous.Entry, error) {
		return anonymous.Entry{Value: []byte("rolled back"), Version: cur.Version, Expires: exp, Durable: true}, errFn
	}}
	if err := transact(t, s, key, r); !errors.Is(err, errFn) {
		t.Errorf("Transact whose fn failed = %v, want fn's error (errors.Is)", err)
	}
	same(t, s, key, v, "a Transact whose fn failed")
	sleepUntil(exp.Add(slack))
	same(t, s, key, v, "the expiry fn returned with its error")
	is(t, "Transact after a Transact whose fn failed", transact(t, s, key, commit([]byte("v3"), now().Add(long))), nil)
	same(t, s, key, anonymous.Entry{Value: []byte("v3"), Version: 3}, "a Transact after a Transact whose fn failed")
}

func txOnceOnly(t *testing.T, s anonymous.TxStore) {
	// Not again on fn's error, nor after a write of the entry by another
	// client while fn ran (a retry loop would run it twice).
	key, _ := fresh(t, s, "v1", now().Add(long))
	r := commit([]byte("v2"), now().Add(long))
	is(t, "Transact", transact(t, s, key, r), nil)
	r.once(t, "Transact that committed")
	r = &recorder{reply: func(anonymous.Entry, int) (anonymous.Entry, error) { return anonymous.Entry{}, errFn }}
	if err := transact(t, s, key, r); !errors.Is(err, errFn) {
		t.Errorf("Transact whose fn failed = %v, want fn's error (errors.Is)", err)
	}
	r.once(t, "Transact whose fn failed")
	key, v := fresh(t, s, "v1", now().Add(long))
	if seen := updateDuring(t, s, key, v, true); len(seen) != 1 {
		t.Errorf("Transact whose fn saw an Update of its entry called fn %d times, want once (fn runs at most once per call)", len(seen))
	}
}

func txDoneContext(t *testing.T, s anonymous.TxStore) {
	// A done context fails the call before fn, and leaves no lock behind.
	key, v := fresh(t, s, "v1", now().Add(long))
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	for _, ctx := range []context.Context{canceled, expired} {
		r := commit([]byte("changed"), now().Add(long))
		call := fmt.Sprintf("Transact with a done context (%v)", ctx.Err())
		is(t, call, s.Transact(ctx, key, r.fn), ctx.Err())
		if n := len(r.calls()); n > 0 {
			t.Errorf("%s called fn %d times, want none", call, n)
		}
		same(t, s, key, v, call)
	}
	is(t, "Transact after Transacts with done contexts", transact(t, s, key, commit([]byte("v2"), now().Add(long))), nil)
}

func txClaimed(t *testing.T, s anonymous.TxStore) {
	// While a first Transact's fn holds the entry, a second one answers
	// ErrClaimed at once, or waits and runs fn on the first one's entry.
	key, v := fresh(t, s, "0", now().Add(long))
	holding, release := make(chan struct{}), make(chan struct{})
	var hold sync.Once
	first := &recorder{reply: func(cur anonymous.Entry, _ int) (anonymous.Entry, error) {
		hold.Do(func() { close(holding) })
		<-release
		return anonymous.Entry{Value: []byte("first"), Version: cur.Version, Expires: now().Add(long)}, nil
	}}
	firstErr := make(chan error, 1)
	go func() { firstErr <- transact(t, s, key, first) }()
	select {
	case <-holding:
	case err := <-firstErr:
		t.Fatalf("a Transact returned %v without calling fn", err)
	}
	second := commit([]byte("second"), now().Add(long))
	secondErr := make(chan error, 1)
	go func() { secondErr <- transact(t, s, key, second) }()
	var err error
	waited := false
	select {
	case err = <-secondErr:
	case <-time.After(claimWait):
		waited = true
	}
	close(release)
	is(t, "the first Transact", <-firstErr, nil)
	if waited {
		err = <-secondErr
	}
	want := anonymous.Entry{Value: []byte("first"), Version: v.Version + 1}
	claimed(t, err, waited, second.calls(), want)
	if err == nil {
		want = anonymous.Entry{Value: []byte("second"), Version: v.Version + 2}
	}
	same(t, s, key, want, "a Transact of an entry another Transact held")
}

// claimed judges the second Transact of Claimed: its error, whether it was
// still running after claimWait, and the entries its fn was given; want is the
// first Transact's entry.
func claimed(t *testing.T, err error, waited bool, seen []anonymous.Entry, want anonymous.Entry) {
	t.Helper()
	const call = "a Transact of an entry another Transact's fn held"
	for _, cur := range seen {
		if d := differs(cur, want); d != "" {
			t.Errorf("%s ran fn on another entry than the one the first committed (%s): want ErrClaimed, or to wait for the lock", call, d)
		}
	}
	switch {
	case errors.Is(err, anonymous.ErrClaimed) && waited:
		t.Errorf("%s answered ErrClaimed only after waiting %v or more: want ErrClaimed at once, or to wait for the lock and run fn", call, claimWait)
	case errors.Is(err, anonymous.ErrClaimed) && len(seen) > 0:
		t.Errorf("%s answered ErrClaimed after calling fn", call)
	case errors.Is(err, anonymous.ErrClaimed):
	case err != nil:
		t.Errorf("%s = %v, want an error matching ErrClaimed, or nil after waiting for the lock", call, err)
	case !waited:
		t.Errorf("%s returned nil while the first held the lock: want ErrClaimed, or to wait for the lock", call)
	}
}

func txCounter(t *testing.T, s anonymous.TxStore) {
	// Many Transacts add one to a counter at once, trying again after
	// ErrClaimed: each nil return is one more version and one more in the
	// counter.
	key, _ := fresh(t, s, "0", now().Add(long))
	var wins atomic.Int64
	for i, err := range race(racers, func(int) error { return txIncrement(t, s, key, &wins) }) {
		if err != nil {
			t.Errorf("Transact racer %d: %v", i, err)
		}
	}
	got, n := get(t, s, key), wins.Load()
	if c, err := counter(got.Value); err != nil || c != n || got.Version != 1+uint64(n) {
		t.Errorf("after %d concurrent Transacts returned nil, Value = %q (%v) at version %d, want %d at version %d (no lost update)",
			n, got.Value, err, got.Version, n, 1+n)
	}
	if n == 0 {
		t.Errorf("none of %d concurrent Transacts returned nil", racers)
	}
}

// txIncrement adds one to the counter under key in a Transact, trying
// again after ErrClaimed for a while, and counts its success in wins.
func txIncrement(t *testing.T, s anonymous.TxStore, key string, wins *atomic.Int64) error {
	r := &recorder{reply: func(cur anonymous.Entry, _ int) (anonymous.Entry, error) {
		n, err := counter(cur.Value)
		if err != nil {
			return anonymous.Entry{}, fmt.Errorf("fn was given Value %q: %v", cur.Value, err)
		}
		time.Sleep(time.Millisecond) // long enough for another Transact to try the lock
		return anonymous.Entry{Value: strconv.AppendInt(nil, n+1, 10), Version: cur.Version, Expires: now().Add(long)}, nil
	}}
	for range 100 {
		switch err := transact(t, s, key, r); {
		case err == nil:
			wins.Add(1)
			return nil
		case !errors.Is(err, anonymous.ErrClaimed):
			return err
		}
		time.Sleep(mrand.N(2 * time.Millisecond))
	}
	return nil // ErrClaimed each time: allowed
}

func txUpdateRace(t *testing.T, s anonymous.TxStore) {
	// A plain Update of the version a Transact's fn was given, made while
	// fn runs or racing the Transact's start: they never both succeed on
	// that version.
	key, v := fresh(t, s, "v1", now().Add(long))
	updateDuring(t, s, key, v, true)
	for range rounds {
		key, v := fresh(t, s, "v1", now().Add(long))
		updateDuring(t, s, key, v, false)
	}
}

// updateDuring races a Transact of key, stored as v, with an Update of
// v.Version: started inside fn (which waits for it up to slack, since a
// store may hold it until the Transact ends), or at the Transact's start.
// It checks the outcome and returns the entries fn was given.
func updateDuring(t *testing.T, s anonymous.TxStore, key string, v anonymous.Entry, inside bool) []anonymous.Entry {
	t.Helper()
	upErr := make(chan error, 1)
	var started sync.Once
	start := func() {
		started.Do(func() {
			go func() { upErr <- s.Update(t.Context(), key, next(v, []byte("update"), now().Add(long))) }()
		})
	}
	r := &recorder{reply: func(cur anonymous.Entry, call int) (anonymous.Entry, error) {
		if inside && call == 1 {
			start()
			select {
			case err := <-upErr:
				upErr <- err
			case <-time.After(slack):
			}
		} else if !inside {
			time.Sleep(time.Millisecond)
		}
		return anonymous.Entry{Value: []byte("transact"), Version: cur.Version, Expires: now().Add(long)}, nil
	}}
	if !inside {
		start()
	}
	txErr := transact(t, s, key, r)
	start() // if fn was never called
	seen := r.calls()
	raced(t, s, key, v, txErr, <-upErr, seen)
	return seen
}

// raced checks the entry under key after a Transact and an Update of v
// raced, given their errors and the entries fn was given.
func raced(t *testing.T, s anonymous.TxStore, key string, v anonymous.Entry, txErr, upErr error, seen []anonymous.Entry) {
	t.Helper()
	if upErr != nil && !errors.Is(upErr, anonymous.ErrConflict) {
		t.Errorf("Update racing a Transact = %v, want nil or ErrConflict", upErr)
	}
	want := v
	switch {
	case txErr == nil && upErr == nil:
		if len(seen) == 0 || seen[len(seen)-1].Version == v.Version {
			t.Errorf("a Transact and an Update of version %d both succeeded on that version", v.Version)
		}
		want = anonymous.Entry{Value: []byte("transact"), Version: v.Version + 2}
	case txErr == nil:
		want = anonymous.Entry{Value: []byte("transact"), Version: v.Version + 1}
	case upErr == nil:
		want = anonymous.Entry{Value: []byte("update"), Version: v.Version + 1}
	}
	same(t, s, key, want, fmt.Sprintf("a Transact (%v) and an Update (%v) of version %d", txErr, upErr, v.Version))
}
