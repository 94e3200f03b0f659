package storetest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/storetest"
)

// bugEnv names the bug TestConformance plants in its store; a child process
// of TestSuiteCatchesBugs sets it.
const bugEnv = "STORETEST_BUG"

// TestConformance runs the suite against refStore: without a bug it must
// pass, which shows the suite asks nothing the contract does not.
func TestConformance(t *testing.T) {
	bug := os.Getenv(bugEnv)
	storetest.Run(t, func(t *testing.T) anonymous.Store { return newRefStore(bug) })
}

// TestSuiteCatchesBugs plants one bug at a time in refStore and checks that
// the subtest for the broken clause fails, so that no clause's subtest
// passes whatever the store does.
func TestSuiteCatchesBugs(t *testing.T) {
	if os.Getenv(bugEnv) != "" {
		t.Fatalf("%s is set: run only TestConformance with it", bugEnv)
	}
	bugs := []struct{ bug, subtest string }{
		{"value-cut-at-nul", "Create/RoundTrip"},
		{"truncates-large-value", "Create/RoundTrip"},
		{"get-returns-durable", "Create/RoundTrip"},
		{"create-shares-value", "Create/StoresACopy"},
		{"seals-in-place", "Create/StoresACopy"},
		{"create-keeps-version", "Create/IgnoresVersion"},
		{"create-overwrites", "Create/Exists"},
		{"create-moves-expiry", "Create/Exists"},
		{"create-racy", "Create/ConcurrentOneWinner"},
		{"create-sees-expired", "Create/AfterExpiry"},
		{"key-truncated", "Create/KeysAreSeparate"},
		{"key-case-folded", "Create/KeysAreSeparate"},
		{"key-trims-space", "Create/KeysAreSeparate"},
		{"get-missing-zero", "Get/NotFound"},
		{"get-shares-value", "Get/ReturnsACopy"},
		{"no-expiry", "Get/Expires"},
		{"expiry-rounded-up-to-second", "Get/Expires"},
		{"expiry-rounded-down-to-second", "Get/Expires"},
		{"empty-value-missing", "Get/EmptyValue"},
		{"update-keeps-empty-value", "Get/EmptyValue"},
		{"version-not-bumped", "Update/Replaces"},
		{"update-skips-same-value", "Update/Replaces"},
		{"truncates-large-value", "Update/Replaces"},
		{"update-ignores-version", "Update/Conflict"},
		{"version-uint32", "Update/Conflict"},
		{"conflict-moves-expiry", "Update/Conflict"},
		{"cache-kept-on-conflict", "Update/Conflict"},
		{"update-missing-creates", "Update/NotFound"},
		{"update-revives-expired", "Update/ExpiredNotRevived"},
		{"update-keeps-expiry", "Update/ExtendsLife"},
		{"update-only-extends", "Update/ShortensLife"},
		{"full-update-applied", "Update/FullChangesNothing"},
		{"update-shares-value", "Update/StoresACopy"},
		{"seals-in-place", "Update/StoresACopy"},
		{"update-racy", "Update/ConcurrentOneWinner"},
		{"ignore-ctx", "Context/Canceled"},
		{"ignore-ctx", "Context/DeadlineExceeded"},
		{"ctx-after-write", "Context/Canceled"},
		{"update-racy", "Concurrency/Counter"},
		{"get-torn", "Concurrency/Counter"},
		{"get-torn", "Concurrency/Mixed"},
		{"update-replica-lag", "Update/Replaces"},
		{"update-replica-lag", "Recovery/UpdateReplyLost"},
		{"update-replica-lag", "Recovery/UpdateResent"},
		{"update-replica-lag", "Recovery/UpdateResentAfterOtherWrite"},
		{"cache-kept-on-conflict", "Recovery/UpdateResentAfterOtherWrite"},
		{"replica-lag", "Create/RoundTrip"},
		{"replica-lag", "Recovery/CreateReplyLost"},
		{"replica-lag", "Recovery/CreateResent"},
		{"transact-calls-fn-on-missing", "Transact/NotFound"},
		{"transact-calls-fn-on-expired", "Transact/Expired"},
		{"transact-hides-version", "Transact/SeesEntry"},
		{"transact-same-version", "Transact/Commits"},
		{"transact-keeps-expiry", "Transact/Commits"},
		{"transact-shares-value", "Transact/Commits"},
		{"transact-writes-on-error", "Transact/RollsBack"},
		{"transact-hides-error", "Transact/RollsBack"},
		{"transact-keeps-lock-on-error", "Transact/RollsBack"},
		{"transact-retries-fn", "Transact/OnceOnly"},
		{"transact-retries-on-conflict", "Transact/OnceOnly"},
		{"ignore-ctx", "Transact/DoneContext"},
		{"transact-ignores-lock", "Transact/Claimed"},
		{"transact-lost-update", "Transact/Counter"},
		{"transact-blind-write", "Transact/UpdateRace"},
	}
	// The children mostly sleep through expiries, so they all run at once
	// rather than -test.parallel at a time.
	outs := make([][]byte, len(bugs))
	errs := make([]error, len(bugs))
	var wg sync.WaitGroup
	for i, b := range bugs {
		wg.Go(func() {
			group, name, _ := strings.Cut(b.subtest, "/")
			cmd := exec.CommandContext(t.Context(), os.Args[0],
				"-test.run=^TestConformance$/^"+group+"$/^"+name+"$", "-test.count=1", "-test.timeout=1m")
			cmd.Env = append(os.Environ(), bugEnv+"="+b.bug)
			outs[i], errs[i] = cmd.CombinedOutput()
		})
	}
	wg.Wait()
	for i, b := range bugs {
		t.Run(b.bug+"@"+strings.ReplaceAll(b.subtest, "/", "."), func(t *testing.T) {
			out := outs[i]
			if exit := (*exec.ExitError)(nil); !errors.As(errs[i], &exit) {
				t.Fatalf("suite with bug %s: err = %v, want a failing test run\n%s", b.bug, errs[i], out)
			}
			if want := "--- FAIL: TestConformance/" + b.subtest + " "; !bytes.Contains(out, []byte(want)) {
				t.Errorf("suite with bug %s: no %q in\n%s", b.bug, want, out)
			}
			if bytes.Contains(out, []byte("panic:")) {
				t.Errorf("suite with bug %s panicked:\n%s", b.bug, out)
			}
		})
	}
}

// lag is how far behind the primary the replica of bugs replica-lag and
// update-replica-lag reads, and how long the cache of bug cache-kept-on-conflict keeps an entry.
const lag = time.Second

// refStore is the simplest Store that keeps the contract (one mutex over
// one map; expired entries are ignored, never swept), with switches that
// break one clause each.
type refStore struct {
	bug     string
	mu      sync.Mutex
	entries map[string]*refEntry
	// cache is the write cache of bug cache-kept-on-conflict.
	cache map[string]*refEntry
	// locked holds the keys a Transact holds.
	locked map[string]bool
}

type refEntry struct {
	value   []byte
	version uint64
	exp     time.Time
	durable bool
	// at is when the entry reached the primary, and prev the entry it
	// replaced: what the lagging replica of bugs replica-lag and
	// update-replica-lag still serves, for lag after at.
	at   time.Time
	prev *refEntry
}

func newRefStore(bug string) *refStore {
	return &refStore{bug: bug, entries: map[string]*refEntry{}, cache: map[string]*refEntry{}, locked: map[string]bool{}}
}

func (s *refStore) has(bug string) bool { return s.bug == bug }

// refCap is the largest value refStore lets an Update grow an entry to: a
// store with a cap, as memstore has one.
const refCap = 128 << 10

// key is where key's entry is kept.
func (s *refStore) key(key string) string {
	switch {
	case s.has("key-truncated") && len(key) > 20:
		return key[:20] // a fixed-width column too narrow for a ULID
	case s.has("key-case-folded"):
		return strings.ToLower(key) // a case-insensitive collation
	case s.has("key-trims-space"):
		return strings.TrimRight(key, " ") // a PAD SPACE collation
	}
	return key
}

// before and after bracket every method: a done context stops it before it
// does anything, unless a bug says otherwise.
func (s *refStore) before(ctx context.Context) error {
	if s.has("ignore-ctx") || s.has("ctx-after-write") {
		return nil
	}
	return ctx.Err()
}

func (s *refStore) after(ctx context.Context, err error) error {
	if s.has("ctx-after-write") && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// alive reports whether e is an entry that has not expired.
func (s *refStore) alive(e *refEntry) bool {
	return e != nil && (s.has("no-expiry") || time.Now().Before(e.exp))
}

// live returns key's entry unless there is none or it has expired.
func (s *refStore) live(key string) *refEntry {
	if e := s.entries[s.key(key)]; s.alive(e) {
		return e
	}
	return nil
}

// expiry is the expiry the store keeps for t.
func (s *refStore) expiry(t time.Time) time.Time {
	switch {
	case s.has("expiry-rounded-up-to-second") && !t.Equal(t.Truncate(time.Second)):
		return t.Truncate(time.Second).Add(time.Second) // EXPIREAT of a ceiling
	case s.has("expiry-rounded-down-to-second"):
		return t.Truncate(time.Second) // EXPIREAT of Unix()
	}
	return t
}

// seal is the store's in-place obfuscation of bug seals-in-place.
func seal(b []byte) {
	for i := range b {
		b[i] ^= 0x5a
	}
}

// entry is the entry a write of e keeps as version v, sharing e's bytes
// when shares names the bug planted.
func (s *refStore) entry(e anonymous.Entry, v uint64, shares string) *refEntry {
	value := bytes.Clone(e.Value)
	switch {
	case s.has(shares):
		value = e.Value
	case s.has("seals-in-place"):
		seal(e.Value) // sealing in place, then copying the sealed bytes
		value = bytes.Clone(e.Value)
	case s.has("value-cut-at-nul"):
		if i := bytes.IndexByte(value, 0); i >= 0 {
			value = value[:i] // a C string
		}
	case s.has("truncates-large-value") && len(value) > 1<<16-1:
		value = value[:1<<16-1] // a 16-bit length prefix
	}
	return &refEntry{value: value, version: v, exp: s.expiry(e.Expires), durable: e.Durable, at: time.Now()}
}

// put keeps n under key.
func (s *refStore) put(key string, n *refEntry) {
	k := s.key(key)
	if old := s.entries[k]; old != nil {
		if time.Since(old.at) >= lag {
			old.prev = nil // the replica has old, and needs nothing older
		}
		n.prev = old
	}
	s.entries[k] = n
}

func (s *refStore) Create(ctx context.Context, key string, e anonymous.Entry) error {
	if err := s.before(ctx); err != nil {
		return err
	}
	if s.has("create-racy") {
		// Check, then act, with the lock dropped in between.
		s.mu.Lock()
		cur := s.live(key)
		s.mu.Unlock()
		if cur != nil {
			return anonymous.ErrExists
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.live(key)
	if s.has("create-sees-expired") {
		cur = s.entries[s.key(key)]
	}
	if cur != nil && !s.has("create-overwrites") && !s.has("create-racy") {
		if s.has("create-moves-expiry") {
			cur.exp = s.expiry(e.Expires)
		}
		return s.after(ctx, anonymous.ErrExists)
	}
	v := uint64(1)
	if s.has("create-keeps-version") {
		v = max(e.Version, 1)
	}
	n := s.entry(e, v, "create-shares-value")
	if s.has("update-replica-lag") {
		n.at = time.Time{} // a Create waits for the replica to have it
	}
	delete(s.cache, s.key(key))
	s.put(key, n)
	return s.after(ctx, nil)
}

func (s *refStore) Get(ctx context.Context, key string) (anonymous.Entry, error) {
	if err := s.before(ctx); err != nil {
		return anonymous.Entry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[s.key(key)]
	switch {
	case s.has("cache-kept-on-conflict") && s.cache[s.key(key)] != nil && time.Since(s.cache[s.key(key)].at) < lag:
		e = s.cache[s.key(key)]
	case s.has("replica-lag") || s.has("update-replica-lag"):
		for e != nil && time.Since(e.at) < lag {
			e = e.prev
		}
	}
	if !s.alive(e) || (s.has("empty-value-missing") && len(e.value) == 0) {
		if s.has("get-missing-zero") {
			return anonymous.Entry{}, s.after(ctx, nil)
		}
		return anonymous.Entry{}, s.after(ctx, anonymous.ErrNotFound)
	}
	value := bytes.Clone(e.value)
	switch {
	case s.has("get-shares-value"):
		value = e.value
	case s.has("seals-in-place"):
		seal(value)
	case s.has("get-torn"):
		// The value and the version in two round trips.
		s.mu.Unlock()
		time.Sleep(time.Millisecond)
		s.mu.Lock()
		if e = s.live(key); e == nil {
			return anonymous.Entry{}, s.after(ctx, anonymous.ErrNotFound)
		}
	}
	return anonymous.Entry{Value: value, Version: e.version, Expires: e.exp,
		Durable: s.has("get-returns-durable") && e.durable}, s.after(ctx, nil)
}

func (s *refStore) Update(ctx context.Context, key string, e anonymous.Entry) error {
	if err := s.before(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.has("cache-kept-on-conflict") {
		// Written to the cache first, and left there whatever happens.
		s.cache[s.key(key)] = s.entry(e, e.Version+1, "")
	}
	cur := s.live(key)
	if s.has("update-revives-expired") {
		cur = s.entries[s.key(key)]
	}
	stored := func(v uint64) bool {
		if s.has("version-uint32") {
			return uint32(v) == uint32(e.Version)
		}
		return v == e.Version || s.has("update-ignores-version")
	}
	switch {
	case cur == nil && s.has("update-missing-creates"):
	case cur == nil:
		return s.after(ctx, anonymous.ErrNotFound)
	case !stored(cur.version):
		if s.has("conflict-moves-expiry") {
			cur.exp = s.expiry(e.Expires) // PEXPIREAT sent before the CAS
		}
		return s.after(ctx, anonymous.ErrConflict)
	}
	if s.has("update-racy") {
		// Check, then act, with the lock dropped in between.
		s.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		s.mu.Lock()
	}
	if cur != nil && len(e.Value) > refCap && len(e.Value) > len(cur.value) {
		// Full: refStore refuses to grow an entry past refCap.
		if s.has("full-update-applied") {
			s.put(key, s.entry(e, e.Version+1, ""))
		}
		return s.after(ctx, anonymous.ErrStoreFull)
	}
	if s.has("update-skips-same-value") && cur != nil && bytes.Equal(cur.value, e.Value) {
		return s.after(ctx, nil) // nothing changed, so nothing written
	}
	v := e.Version + 1
	if s.has("version-not-bumped") {
		v = e.Version
	}
	n := s.entry(e, v, "update-shares-value")
	if cur != nil {
		switch {
		case s.has("update-keeps-empty-value") && len(n.value) == 0:
			n.value = cur.value // an empty field taken for "unchanged"
		case s.has("update-keeps-expiry"):
			n.exp = cur.exp
		case s.has("update-only-extends") && n.exp.Before(cur.exp):
			n.exp = cur.exp
		}
	}
	s.put(key, n)
	return s.after(ctx, nil)
}

// Transact takes key's lock, a try-lock that answers ErrClaimed when
// another Transact holds it, and hands fn a copy of the entry. It writes
// fn's entry only when fn succeeded and the entry is still the version fn
// was given: Update does not wait for the lock, and one that lands while fn
// runs fails the write (ErrConflict).
func (s *refStore) Transact(ctx context.Context, key string, fn func(context.Context, anonymous.Entry) (anonymous.Entry, error)) (err error) {
	if err := s.before(ctx); err != nil {
		return err
	}
	cur, err := s.lock(key)
	if err != nil {
		return err
	}
	defer func() {
		if err == nil || !s.has("transact-keeps-lock-on-error") {
			s.unlock(key)
		}
	}()
	for tries := 1; ; tries++ {
		in := cur
		in.Value = bytes.Clone(cur.Value)
		if s.has("transact-hides-version") {
			in.Version = 0
		}
		n, err := fn(ctx, in)
		switch {
		case err != nil && s.has("transact-retries-fn") && tries < 3:
			continue // a retry loop meant for serialization failures
		case err != nil && s.has("transact-writes-on-error"):
			s.write(key, cur, n)
			return fmt.Errorf("refstore: transact %s: %w", key, err)
		case err != nil && s.has("transact-hides-error"):
			return fmt.Errorf("refstore: transact %s: rolled back (%v)", key, err)
		case err != nil:
			return fmt.Errorf("refstore: transact %s: %w", key, err)
		}
		err = s.write(key, cur, n)
		if errors.Is(err, anonymous.ErrConflict) && s.has("transact-retries-on-conflict") && tries < 3 {
			s.unlock(key)
			if cur, err = s.lock(key); err == nil {
				continue // read again and run fn again
			}
		}
		return s.after(ctx, err)
	}
}

// lock takes key's lock and returns its entry.
func (s *refStore) lock(key string) (anonymous.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.key(key)
	e := s.live(key)
	if s.has("transact-calls-fn-on-expired") {
		e = s.entries[k]
	}
	switch {
	case e == nil && s.has("transact-calls-fn-on-missing"):
		return anonymous.Entry{}, nil // the zero entry, for want of a row
	case e == nil:
		return anonymous.Entry{}, anonymous.ErrNotFound
	case s.locked[k] && !s.has("transact-ignores-lock") && !s.has("transact-lost-update"):
		return anonymous.Entry{}, fmt.Errorf("refstore: transact %s: %w", key, anonymous.ErrClaimed)
	}
	s.locked[k] = true
	return anonymous.Entry{Value: e.value, Version: e.version, Expires: e.exp}, nil
}

// unlock releases key's lock.
func (s *refStore) unlock(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.locked, s.key(key))
}

// write writes n over cur, the entry a Transact locked, as the next version.
func (s *refStore) write(key string, cur, n anonymous.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(key)
	blind := s.has("transact-blind-write") || s.has("transact-lost-update")
	switch {
	case e == nil:
		return fmt.Errorf("refstore: transact %s: %w", key, anonymous.ErrNotFound)
	case e.version != cur.Version && !blind:
		return fmt.Errorf("refstore: transact %s: %w", key, anonymous.ErrConflict)
	}
	v := cur.Version + 1
	if s.has("transact-same-version") {
		v = cur.Version
	}
	w := s.entry(n, v, "transact-shares-value")
	if s.has("transact-keeps-expiry") {
		w.exp = e.exp
	}
	s.put(key, w)
	return nil
}
