package storetest_test

import (
	"bytes"
	"context"
	"errors"
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
		{"create-drops-data", "Create/RoundTrip"},
		{"create-keeps-version", "Create/RoundTrip"},
		{"create-shares-data", "Create/StoresACopy"},
		{"create-sets-argument-version", "Create/LeavesArgumentAlone"},
		{"create-overwrites", "Create/Exists"},
		{"create-moves-expiry", "Create/Exists"},
		{"create-racy", "Create/ConcurrentOneWinner"},
		{"create-sees-expired", "Create/AfterExpiry"},
		{"key-truncated", "Create/IDsAreSeparate"},
		{"get-missing-nil", "Get/NotFound"},
		{"get-shares-data", "Get/ReturnsACopy"},
		{"no-expiry", "Get/Expires"},
		{"empty-data-refused", "Get/NoData"},
		{"version-not-bumped", "Update/Replaces"},
		{"update-ignores-version", "Update/Conflict"},
		{"update-missing-is-version-0", "Update/NotFound"},
		{"update-revives-expired", "Update/Expired"},
		{"update-keeps-expiry", "Update/ExtendsLife"},
		{"update-only-extends", "Update/ShortensLife"},
		{"update-shares-data", "Update/StoresACopy"},
		{"update-bumps-argument", "Update/LeavesArgumentAlone"},
		{"update-racy", "Update/ConcurrentOneWinner"},
		{"tombstone-hidden", "Update/Tombstone"},
		{"tombstone-no-expiry", "Update/Tombstone"},
		{"tombstone-not-reserving", "Update/TombstoneReservesID"},
		{"get-torn", "Data/ReadModifyWrite"},
		{"truncates-large-data", "Data/Large"},
		{"data-outlives-record", "Data/Expires"},
		{"update-keeps-empty-data", "Data/EmptiedByUpdate"},
		{"ignore-ctx", "Context/Canceled"},
		{"ignore-ctx", "Context/DeadlineExceeded"},
		{"ctx-after-write", "Context/Canceled"},
		{"get-torn", "Concurrency/Mixed"},
		{"update-racy", "Concurrency/Mixed"},
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

// refStore is the simplest Store that keeps the contract (one mutex over
// one map; expired entries are ignored, never swept), with switches that
// break one clause each.
type refStore struct {
	bug  string
	mu   sync.Mutex
	recs map[string]*refEntry
}

type refEntry struct {
	rec *anonymous.Record
	exp time.Time
	// forever marks an entry that never expires (a bug).
	forever bool
}

func newRefStore(bug string) *refStore {
	return &refStore{bug: bug, recs: map[string]*refEntry{}}
}

func (s *refStore) has(bug string) bool { return s.bug == bug }

// key is where id's record is kept.
func (s *refStore) key(id string) string {
	if s.has("key-truncated") && len(id) > 20 {
		return id[:20] // a fixed-width column too narrow for a ULID
	}
	return id
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

// live returns id's entry unless there is none or it has expired.
func (s *refStore) live(id string) *refEntry {
	e := s.recs[s.key(id)]
	if e == nil || (!e.forever && !s.has("no-expiry") && !time.Now().Before(e.exp)) {
		return nil
	}
	return e
}

// tombstone reports whether rec is a deleted or linked guest's record.
func tombstone(rec *anonymous.Record) bool { return rec.Deleted || rec.LinkedTo != "" }

func clone(rec *anonymous.Record) *anonymous.Record {
	c := *rec
	c.Data = bytes.Clone(rec.Data)
	return &c
}

// copyIn returns the copy of rec a write keeps, sharing its Data's bytes
// with the caller when shares names the bug planted.
func (s *refStore) copyIn(rec *anonymous.Record, shares string) *anonymous.Record {
	c := clone(rec)
	if s.has(shares) {
		shallow := *rec // Data's bytes are still the caller's
		c = &shallow
	}
	if s.has("truncates-large-data") && len(c.Data) > 1<<16-1 {
		c.Data = c.Data[:1<<16-1] // a 16-bit length prefix
	}
	return c
}

func (s *refStore) Create(ctx context.Context, rec *anonymous.Record) error {
	if err := s.before(ctx); err != nil {
		return err
	}
	if s.has("empty-data-refused") && rec.Data != nil && len(rec.Data) == 0 {
		return errors.New("refstore: empty value")
	}
	if s.has("create-racy") {
		// Check, then act, with the lock dropped in between.
		s.mu.Lock()
		e := s.live(rec.User.ID)
		s.mu.Unlock()
		if e != nil {
			return anonymous.ErrExists
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.recs[s.key(rec.User.ID)]
	e := s.live(rec.User.ID)
	if s.has("create-sees-expired") {
		e = old
	}
	switch {
	case e == nil, s.has("create-overwrites"), s.has("create-racy"):
	case s.has("tombstone-not-reserving") && tombstone(e.rec):
	default:
		if s.has("create-moves-expiry") {
			e.exp = rec.Session.ExpiresAt
		}
		return s.after(ctx, anonymous.ErrExists)
	}
	c := s.copyIn(rec, "create-shares-data")
	switch {
	case s.has("create-drops-data"):
		c.Data = nil
	case s.has("data-outlives-record") && len(c.Data) == 0 && old != nil:
		c.Data = old.rec.Data // data kept under a key of its own, with no expiry
	}
	if !s.has("create-keeps-version") {
		c.Version = 1
	}
	if s.has("create-sets-argument-version") {
		rec.Version = 1
	}
	s.recs[s.key(rec.User.ID)] = &refEntry{rec: c, exp: rec.Session.ExpiresAt}
	return s.after(ctx, nil)
}

func (s *refStore) Get(ctx context.Context, id string) (*anonymous.Record, error) {
	if err := s.before(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(id)
	if e == nil || (s.has("tombstone-hidden") && tombstone(e.rec)) {
		if s.has("get-missing-nil") {
			return nil, s.after(ctx, nil)
		}
		return nil, s.after(ctx, anonymous.ErrNotFound)
	}
	if s.has("get-torn") {
		// The data and the rest of the record in two round trips.
		data := bytes.Clone(e.rec.Data)
		s.mu.Unlock()
		time.Sleep(time.Millisecond)
		s.mu.Lock()
		if e = s.live(id); e == nil {
			return nil, s.after(ctx, anonymous.ErrNotFound)
		}
		c := clone(e.rec)
		c.Data = data
		return c, s.after(ctx, nil)
	}
	if s.has("get-shares-data") {
		shallow := *e.rec // Data's bytes are still the store's
		return &shallow, s.after(ctx, nil)
	}
	return clone(e.rec), s.after(ctx, nil)
}

func (s *refStore) Update(ctx context.Context, rec *anonymous.Record) error {
	if err := s.before(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(rec.User.ID)
	if s.has("update-revives-expired") {
		e = s.recs[s.key(rec.User.ID)]
	}
	switch {
	case e == nil && s.has("update-missing-is-version-0") && rec.Version == 0:
		e = &refEntry{rec: &anonymous.Record{}}
	case e == nil:
		return s.after(ctx, anonymous.ErrNotFound)
	case e.rec.Version != rec.Version && !s.has("update-ignores-version"):
		return s.after(ctx, anonymous.ErrConflict)
	}
	if s.has("update-racy") {
		// Check, then act, with the lock dropped in between.
		s.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		s.mu.Lock()
	}
	c := s.copyIn(rec, "update-shares-data")
	if s.has("update-keeps-empty-data") && len(c.Data) == 0 {
		c.Data = e.rec.Data // an empty field taken for "unchanged"
	}
	if !s.has("version-not-bumped") {
		c.Version = rec.Version + 1
	}
	if s.has("update-bumps-argument") {
		rec.Version++
	}
	exp := rec.Session.ExpiresAt
	switch {
	case s.has("update-keeps-expiry"):
		exp = e.exp
	case s.has("update-only-extends") && exp.Before(e.exp):
		exp = e.exp
	}
	forever := s.has("tombstone-no-expiry") && tombstone(c)
	s.recs[s.key(rec.User.ID)] = &refEntry{rec: c, exp: exp, forever: forever}
	return s.after(ctx, nil)
}
