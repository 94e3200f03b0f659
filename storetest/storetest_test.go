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
		{"create-shares", "Create/StoresACopy"},
		{"create-clears-argument-token", "Create/LeavesArgumentAlone"},
		{"create-keeps-token", "Create/DropsToken"},
		{"create-overwrites", "Create/Exists"},
		{"create-moves-expiry", "Create/Exists"},
		{"create-racy", "Create/ConcurrentOneWinner"},
		{"get-shares", "Get/ReturnsACopy"},
		{"no-expiry", "Get/Expires"},
		{"touch-keeps-updated", "Touch/MovesExpiry"},
		{"touch-record-only", "Touch/ExtendsLife"},
		{"touch-only-extends", "Touch/ShortensLife"},
		{"touch-revoked", "Touch/Revoked"},
		{"claim-racy", "Claim/OneWinner"},
		{"claim-same-owner-refused", "Claim/SameOwnerAgain"},
		{"lease-forever", "Claim/LeaseRunsOut"},
		{"claim-revoked", "Claim/Revoked"},
		{"release-any", "Release/ByOther"},
		{"release-missing-errors", "Release/MissingGuest"},
		{"delete-forgets", "Delete/ReservesID"},
		{"delete-keeps-lease", "Delete/DropsLease"},
		{"delete-missing-errors", "Delete/Missing"},
		{"revoke-deletes", "Revoke/KeepsUser"},
		{"revoke-keeps-hash", "Revoke/KeepsUser"},
		{"revoke-keeps-lease", "Revoke/DropsLease"},
		{"ignore-ctx", "Context/Canceled"},
		{"ignore-ctx", "Context/DeadlineExceeded"},
		{"ctx-after-write", "Context/Canceled"},
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
			if want := "--- FAIL: TestConformance/" + b.subtest; !bytes.Contains(out, []byte(want)) {
				t.Errorf("suite with bug %s: no %q in\n%s", b.bug, want, out)
			}
			if bytes.Contains(out, []byte("panic:")) {
				t.Errorf("suite with bug %s panicked:\n%s", b.bug, out)
			}
		})
	}
}

// refStore is the simplest Store that keeps the contract (one mutex over
// two maps), with switches that break one clause each.
type refStore struct {
	bug    string
	mu     sync.Mutex
	guests map[string]*refEntry
	leases map[string]refLease
}

type refEntry struct {
	rec     *anonymous.Record // nil once deleted: the id stays reserved until exp
	exp     time.Time
	revoked bool
}

type refLease struct {
	owner string
	until time.Time
}

func newRefStore(bug string) *refStore {
	return &refStore{bug: bug, guests: map[string]*refEntry{}, leases: map[string]refLease{}}
}

func (s *refStore) has(bug string) bool { return s.bug == bug }

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

// live returns id's entry, deleted or not, unless it has expired.
func (s *refStore) live(id string) *refEntry {
	e := s.guests[id]
	if e == nil || (!s.has("no-expiry") && !time.Now().Before(e.exp)) {
		return nil
	}
	return e
}

// guest returns id's entry if it is a guest: live and not deleted.
func (s *refStore) guest(id string) *refEntry {
	if e := s.live(id); e != nil && e.rec != nil {
		return e
	}
	return nil
}

func clone(rec *anonymous.Record) *anonymous.Record {
	c := *rec
	return &c
}

func (s *refStore) Create(ctx context.Context, rec *anonymous.Record) error {
	if err := s.before(ctx); err != nil {
		return err
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
	if e := s.live(rec.User.ID); e != nil && !s.has("create-overwrites") && !s.has("create-racy") {
		if s.has("create-moves-expiry") {
			e.exp = rec.Session.ExpiresAt
		}
		return s.after(ctx, anonymous.ErrExists)
	}
	c := rec
	if !s.has("create-shares") {
		c = clone(rec)
	}
	switch {
	case s.has("create-clears-argument-token"):
		c.Session.Token, rec.Session.Token = "", ""
	case !s.has("create-keeps-token"):
		c.Session.Token = ""
	}
	s.guests[rec.User.ID] = &refEntry{rec: c, exp: rec.Session.ExpiresAt}
	return s.after(ctx, nil)
}

func (s *refStore) Get(ctx context.Context, id string) (*anonymous.Record, error) {
	if err := s.before(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.guest(id)
	if e == nil {
		return nil, s.after(ctx, anonymous.ErrNotFound)
	}
	if s.has("get-shares") {
		return e.rec, s.after(ctx, nil)
	}
	return clone(e.rec), s.after(ctx, nil)
}

func (s *refStore) Touch(ctx context.Context, id string, expiresAt, now time.Time) error {
	if err := s.before(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.guest(id)
	if e == nil || (e.revoked && !s.has("touch-revoked")) {
		return s.after(ctx, anonymous.ErrNotFound)
	}
	e.rec.Session.ExpiresAt = expiresAt
	if !s.has("touch-keeps-updated") {
		e.rec.Session.UpdatedAt = now
	}
	switch {
	case s.has("touch-record-only"):
	case s.has("touch-only-extends"):
		if expiresAt.After(e.exp) {
			e.exp = expiresAt
		}
	default:
		e.exp = expiresAt
	}
	return s.after(ctx, nil)
}

func (s *refStore) Claim(ctx context.Context, id, owner string, until time.Time) error {
	if err := s.before(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.guest(id); e == nil || (e.revoked && !s.has("claim-revoked")) {
		return s.after(ctx, anonymous.ErrNotFound)
	}
	l, ok := s.leases[id]
	if ok && (s.has("lease-forever") || time.Now().Before(l.until)) && (l.owner != owner || s.has("claim-same-owner-refused")) {
		return s.after(ctx, anonymous.ErrClaimed)
	}
	if s.has("claim-racy") {
		s.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		s.mu.Lock()
	}
	s.leases[id] = refLease{owner: owner, until: until}
	return s.after(ctx, nil)
}

func (s *refStore) Release(ctx context.Context, id, owner string) error {
	if err := s.before(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.has("release-missing-errors") && s.guest(id) == nil {
		return s.after(ctx, anonymous.ErrNotFound)
	}
	if l, ok := s.leases[id]; ok && (l.owner == owner || s.has("release-any")) {
		delete(s.leases, id)
	}
	return s.after(ctx, nil)
}

func (s *refStore) Delete(ctx context.Context, id string) error {
	if err := s.before(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(id)
	if e == nil {
		if s.has("delete-missing-errors") {
			return s.after(ctx, anonymous.ErrNotFound)
		}
		return s.after(ctx, nil)
	}
	if !s.has("delete-keeps-lease") {
		delete(s.leases, id)
	}
	if s.has("delete-forgets") {
		delete(s.guests, id)
	} else {
		e.rec, e.revoked = nil, false
	}
	return s.after(ctx, nil)
}

func (s *refStore) Revoke(ctx context.Context, id, linkedTo string) error {
	if err := s.before(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.guest(id)
	if e == nil || e.revoked {
		return s.after(ctx, anonymous.ErrNotFound)
	}
	if !s.has("revoke-keeps-lease") {
		delete(s.leases, id)
	}
	if s.has("revoke-deletes") {
		e.rec = nil
		return s.after(ctx, nil)
	}
	e.rec.LinkedTo, e.revoked = linkedTo, true
	if !s.has("revoke-keeps-hash") {
		e.rec.TokenHash = [32]byte{}
	}
	return s.after(ctx, nil)
}
