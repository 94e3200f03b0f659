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
//			s := memstore.New()
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Every clause of the contract is its own subtest, grouped by method or
// concern (Create/RoundTrip, Update/Conflict, Data/ReadModifyWrite, ...), so
// -run picks any of them and a failure names the clause that was broken.
//
// A Store is a versioned key-value store of anonymous.Record values: it
// keeps what it is given and knows nothing of leases, links or tokens. The
// suite therefore writes records of every shape, deleted and linked ones
// (tombstones) included, and expects them back field for field. It never
// hands a store a Session.Token, and does not check what a store does with
// one.
//
// The suite waits out real expiries of a few hundred milliseconds; the
// subtests that wait run in parallel, so the whole suite takes about two
// seconds. newStore must therefore be safe to call from parallel subtests,
// and stores that share a backend (one Redis server, say) must keep their
// data apart, for example with a random key prefix per store. Run returns
// when every subtest has finished.
//
// Every time the suite hands a store is in UTC and a whole number of
// milliseconds, so a store that serialises timestamps at millisecond
// precision passes; the zero time.Time (the ClaimUntil of an unclaimed
// guest) must come back as the zero time. Returned times are compared with
// time.Time.Equal.
//
// Record.Data is opaque bytes that must come back byte for byte. A store
// must keep at least 64 KiB of it per record, whatever the bytes; package
// anonymous bounds it at 4 KiB by default. A record without data may come
// back with a nil or an empty Data: the suite, like package anonymous,
// does not tell them apart.
package storetest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
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
	// slack is how long past an expiry the suite waits before checking it
	// took effect, absorbing clock granularity and scheduling.
	slack = 50 * time.Millisecond
	// long is an expiry no subtest lives to see.
	long = time.Hour
	// racers is how many goroutines race for one write; rounds how often.
	racers = 32
	rounds = 8
	// writers is how many goroutines read, change and write one guest's
	// data at once.
	writers = 64
	// largeData is the size of data every store must keep.
	largeData = 64 << 10
)

// test is one clause of the contract. waits marks tests that sleep through
// an expiry: they run in parallel with the rest of their group.
type test struct {
	name  string
	waits bool
	fn    func(t *testing.T, s anonymous.Store)
}

// Run checks the Store that newStore returns against the anonymous.Store
// contract, one subtest per clause. newStore is called once per subtest with
// that subtest's t; it must return an empty store, register its cleanup
// with t.Cleanup, and be safe to call from parallel subtests. Run returns
// when every subtest has finished.
func Run(t *testing.T, newStore func(t *testing.T) anonymous.Store) {
	t.Helper()
	groups := []struct {
		name  string
		tests []test
	}{
		{"Create", createTests},
		{"Get", getTests},
		{"Update", updateTests},
		{"Data", dataTests},
		{"Context", contextTests},
		{"Concurrency", concurrencyTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					if tc.waits {
						t.Parallel()
					}
					tc.fn(t, newStore(t))
				})
			}
		})
	}
}

// NewID returns a new guest id: a ULID with random entropy from
// crypto/rand, like the ids package anonymous generates. It is safe for
// concurrent use.
func NewID() string {
	return ulid.MustNew(ulid.Timestamp(time.Now()), rand.Reader).String()
}

// NewRecord returns a new guest's record as package anonymous would create
// it: id as the user id (a fresh NewID when id is empty), expiresAt (in UTC,
// truncated to the millisecond) as the session's expiry, creation times of
// now, and the hash of a random token. Its Session.Token is empty, as in a
// store; it has no data, no claim, and version 0. It is safe for concurrent
// use.
func NewRecord(id string, expiresAt time.Time) *anonymous.Record {
	if id == "" {
		id = NewID()
	}
	now := Now()
	secret := make([]byte, 32)
	rand.Read(secret) // never fails (crypto/rand, Go 1.24+)
	token := id + "." + base64.RawURLEncoding.EncodeToString(secret)
	return &anonymous.Record{
		User: anonymous.User{
			ID: id, Email: "temp@" + strings.ToLower(id) + ".com", Name: "Anonymous",
			CreatedAt: now, UpdatedAt: now, IsAnonymous: true,
		},
		Session: anonymous.Session{
			ID: NewID(), UserID: id, ExpiresAt: expiresAt.UTC().Truncate(time.Millisecond),
			CreatedAt: now, UpdatedAt: now, IPAddress: "192.0.2.1", UserAgent: "storetest",
		},
		TokenHash: sha256.Sum256([]byte(token)),
	}
}

// Now returns the current time in UTC truncated to the millisecond: the
// precision every time the suite hands a store has. It is safe for
// concurrent use.
func Now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// Diff lists the fields in which got differs from want, comparing times
// with time.Time.Equal and Data byte for byte (a nil and an empty Data are
// alike); it is empty when they match. It is safe for concurrent use.
func Diff(got, want *anonymous.Record) []string {
	var d []string
	str := func(name, g, w string) {
		if g != w {
			d = append(d, fmt.Sprintf("%s = %q, want %q", name, g, w))
		}
	}
	tm := func(name string, g, w time.Time) {
		if !g.Equal(w) {
			d = append(d, fmt.Sprintf("%s = %v, want %v", name, g, w))
		}
	}
	boolean := func(name string, g, w bool) {
		if g != w {
			d = append(d, fmt.Sprintf("%s = %v, want %v", name, g, w))
		}
	}
	gu, wu := &got.User, &want.User
	str("User.ID", gu.ID, wu.ID)
	str("User.Email", gu.Email, wu.Email)
	boolean("User.EmailVerified", gu.EmailVerified, wu.EmailVerified)
	str("User.Name", gu.Name, wu.Name)
	tm("User.CreatedAt", gu.CreatedAt, wu.CreatedAt)
	tm("User.UpdatedAt", gu.UpdatedAt, wu.UpdatedAt)
	boolean("User.IsAnonymous", gu.IsAnonymous, wu.IsAnonymous)
	gs, ws := &got.Session, &want.Session
	str("Session.ID", gs.ID, ws.ID)
	str("Session.Token", gs.Token, ws.Token)
	str("Session.UserID", gs.UserID, ws.UserID)
	tm("Session.ExpiresAt", gs.ExpiresAt, ws.ExpiresAt)
	tm("Session.CreatedAt", gs.CreatedAt, ws.CreatedAt)
	tm("Session.UpdatedAt", gs.UpdatedAt, ws.UpdatedAt)
	str("Session.IPAddress", gs.IPAddress, ws.IPAddress)
	str("Session.UserAgent", gs.UserAgent, ws.UserAgent)
	if got.TokenHash != want.TokenHash {
		d = append(d, fmt.Sprintf("TokenHash = %x, want %x", got.TokenHash, want.TokenHash))
	}
	if s := diffData(got.Data, want.Data); s != "" {
		d = append(d, s)
	}
	str("LinkedTo", got.LinkedTo, want.LinkedTo)
	boolean("Deleted", got.Deleted, want.Deleted)
	str("ClaimOwner", got.ClaimOwner, want.ClaimOwner)
	tm("ClaimUntil", got.ClaimUntil, want.ClaimUntil)
	if got.Version != want.Version {
		d = append(d, fmt.Sprintf("Version = %d, want %d", got.Version, want.Version))
	}
	return d
}

// diffData describes how got differs from want, briefly for large data; it
// is empty when they hold the same bytes.
func diffData(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	if len(got) <= 64 && len(want) <= 64 {
		return fmt.Sprintf("Data = %q, want %q", got, want)
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("Data = %d bytes, want %d bytes, first difference at byte %d", len(got), len(want), i)
}

// clone returns a deep copy of rec.
func clone(rec *anonymous.Record) *anonymous.Record {
	c := *rec
	c.Data = bytes.Clone(rec.Data)
	return &c
}

// stored returns a copy of rec at version v: what Get returns once rec was
// written as version v.
func stored(rec *anonymous.Record, v uint64) *anonymous.Record {
	c := clone(rec)
	c.Version = v
	return c
}

// edit returns a copy of rec changed by fn.
func edit(rec *anonymous.Record, fn func(*anonymous.Record)) *anonymous.Record {
	c := clone(rec)
	fn(c)
	return c
}

// bury returns the record package anonymous writes over rec when the guest
// is deleted (linkedTo empty) or linked: a tombstone that keeps the id
// reserved, and LinkedTo readable, until rec's expiry.
func bury(rec *anonymous.Record, linkedTo string) *anonymous.Record {
	return &anonymous.Record{
		User:     anonymous.User{ID: rec.User.ID, IsAnonymous: true},
		Session:  anonymous.Session{UserID: rec.User.ID, ExpiresAt: rec.Session.ExpiresAt},
		LinkedTo: linkedTo, Deleted: true, Version: rec.Version,
	}
}

// create creates rec and returns what Get must now return: a copy of rec at
// version 1.
func create(t *testing.T, s anonymous.Store, rec *anonymous.Record) *anonymous.Record {
	t.Helper()
	want := stored(rec, 1)
	if err := s.Create(t.Context(), rec); err != nil {
		t.Fatalf("Create(%s) = %v, want nil", rec.User.ID, err)
	}
	return want
}

// newGuest creates a fresh guest expiring at exp and returns it as stored.
func newGuest(t *testing.T, s anonymous.Store, exp time.Time) *anonymous.Record {
	t.Helper()
	return create(t, s, NewRecord("", exp))
}

// update writes rec over version rec.Version and returns what Get must now
// return: a copy of rec at the next version.
func update(t *testing.T, s anonymous.Store, rec *anonymous.Record) *anonymous.Record {
	t.Helper()
	want := stored(rec, rec.Version+1)
	if err := s.Update(t.Context(), rec); err != nil {
		t.Fatalf("Update(%s) of version %d = %v, want nil", rec.User.ID, rec.Version, err)
	}
	return want
}

func get(t *testing.T, s anonymous.Store, id string) *anonymous.Record {
	t.Helper()
	rec, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get(%s) = %v, want the record", id, err)
	}
	if rec == nil {
		t.Fatalf("Get(%s) = nil, nil", id)
	}
	return rec
}

// same fails t unless the store holds want under want.User.ID.
func same(t *testing.T, s anonymous.Store, want *anonymous.Record, after string) {
	t.Helper()
	got, err := s.Get(t.Context(), want.User.ID)
	switch {
	case err != nil:
		t.Errorf("after %s, Get(%s) = %v, want the record", after, want.User.ID, err)
	case got == nil:
		t.Errorf("after %s, Get(%s) = nil, nil", after, want.User.ID)
	default:
		if d := Diff(got, want); len(d) > 0 {
			t.Errorf("after %s, Get returned a different record:\n\t%s", after, strings.Join(d, "\n\t"))
		}
	}
}

// gone fails t unless Get reports ErrNotFound for id.
func gone(t *testing.T, s anonymous.Store, id, after string) {
	t.Helper()
	rec, err := s.Get(t.Context(), id)
	switch {
	case err == nil && rec != nil:
		t.Errorf("after %s, Get(%s) returned a record (version %d), want ErrNotFound", after, id, rec.Version)
	case !errors.Is(err, anonymous.ErrNotFound):
		t.Errorf("after %s, Get(%s) = %v, %v; want ErrNotFound", after, id, rec, err)
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

// sleepPast sleeps until slack after when.
func sleepPast(when time.Time) { time.Sleep(time.Until(when.Add(slack))) }

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
