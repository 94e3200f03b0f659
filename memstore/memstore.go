// Package memstore is an in-memory anonymous.Store: the default for tests,
// development and single-process applications. Guests live in the
// process's memory, so they are lost on restart and not shared between
// processes; use a shared store such as redisstore for that.
//
//	store := memstore.New()
//	defer store.Close()
//
//	guests, err := anonymous.New(store, anonymous.Options{Keys: keys})
//	if err != nil {
//		log.Fatal(err)
//	}
//	http.ListenAndServe(":8080", guests.Middleware(mux))
//
// Expiry is checked on every read, so an expired guest is never returned; a
// background sweeper, started by New and stopped by Close, frees expired
// guests' memory once per Options.SweepInterval. Guests are spread over 64
// shards, each behind its own sync.RWMutex, so a returning guest's Get is a
// read lock and one copy and scales with cores.
package memstore

import (
	"context"
	"errors"
	"hash/maphash"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/guestpass/anonymous"
)

// DefaultSweepInterval is the sweeper's period when Options.SweepInterval is
// zero.
const DefaultSweepInterval = time.Minute

// shardCount is a power of two well above common core counts, so that
// concurrent requests rarely meet on one lock.
const shardCount = 64

// Options configures a Store. The zero value is the default configuration.
type Options struct {
	// SweepInterval is how often the background sweeper frees expired
	// guests and lapsed reservations of deleted ids. It bounds memory only:
	// reads check expiry themselves. Default: DefaultSweepInterval (1 minute).
	SweepInterval time.Duration
}

// Store is an in-memory anonymous.Store. Create it with New and stop its
// sweeper with Close. All its methods are safe for concurrent use.
type Store struct {
	seed   maphash.Seed
	shards [shardCount]shard

	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the sweeper has returned
	closeOnce sync.Once
}

var _ anonymous.Store = (*Store)(nil)

// shard is one lock and its map, padded to its own cache lines so that
// readers of neighbouring shards do not contend on one line.
type shard struct {
	shardBody
	_ [128 - unsafe.Sizeof(shardBody{})%128]byte
}

type shardBody struct {
	mu sync.RWMutex
	m  map[string]*entry
}

// entry is what the store keeps under a guest id: the guest, or the
// reservation a Delete leaves, until exp.
type entry struct {
	rec anonymous.Record // zero once deleted
	exp time.Time
	// deleted marks a reservation: Get and the rest see no guest, Create
	// sees the id taken.
	deleted bool
	revoked bool
	// owner holds the link lease until until; empty when nobody does.
	owner string
	until time.Time
}

// own makes rec's strings the store's own copies: a string the caller hands
// over may be a slice of a request's memory (a header, a body), which the
// store would otherwise keep alive for the guest's whole life.
func own(rec *anonymous.Record) {
	u, ss := &rec.User, &rec.Session
	for _, p := range []*string{&u.ID, &u.Email, &u.Name, &ss.ID, &ss.UserID, &ss.IPAddress, &ss.UserAgent, &rec.LinkedTo} {
		*p = strings.Clone(*p)
	}
}

// wall strips t's monotonic clock reading: expiries and leases are dates,
// compared on the wall clock like the cookie's expiry and Redis's.
func wall(t time.Time) time.Time { return t.Round(0) }

// live reports whether e (guest or reservation) has not expired at now.
func (e *entry) live(now time.Time) bool { return now.Before(e.exp) }

// New returns an empty Store and starts its sweeper. Pass at most one
// Options (more is a programming error, and panics); without one, or with
// its zero value, the defaults apply. Call Close when done with the store,
// or the sweeper runs for the life of the process.
func New(opts ...Options) *Store {
	if len(opts) > 1 {
		panic("memstore: New takes at most one Options")
	}
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	s := &Store{
		seed: maphash.MakeSeed(),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*entry)
	}
	go s.sweeper(o.SweepInterval)
	return s
}

// Close stops the sweeper and waits for it to return. It always returns
// nil. It is idempotent and safe to call concurrently. The store keeps
// working after Close, still hiding expired guests, but no longer frees
// their memory.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

func (s *Store) sweeper(every time.Duration) {
	defer close(s.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.sweep()
		}
	}
}

// sweep drops every expired entry, one shard at a time so that requests
// wait for at most one shard's scan.
func (s *Store) sweep() {
	for i := range s.shards {
		sh := &s.shards[i]
		now := time.Now()
		sh.mu.Lock()
		for id, e := range sh.m {
			if !e.live(now) {
				delete(sh.m, id)
			}
		}
		sh.mu.Unlock()
	}
}

// Len returns the number of entries the store holds: guests, revoked
// guests kept after a link, deleted ids still reserved, and expired entries
// the sweeper has not freed yet. It is meant for monitoring memory and for
// tests. It is safe for concurrent use.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

func (s *Store) shard(id string) *shard {
	return &s.shards[maphash.String(s.seed, id)%shardCount]
}

// guest returns id's guest, nil when there is none: never stored, expired,
// or deleted. The caller holds sh.mu.
func (sh *shard) guest(id string, now time.Time) *entry {
	if e := sh.m[id]; e != nil && !e.deleted && e.live(now) {
		return e
	}
	return nil
}

// active is guest without revoked guests: those Touch, Claim and Revoke
// treat as gone. The caller holds sh.mu.
func (sh *shard) active(id string, now time.Time) *entry {
	if e := sh.guest(id, now); e != nil && !e.revoked {
		return e
	}
	return nil
}

var errNilRecord = errors.New("memstore: Create of a nil record")

// Create stores a copy of rec, without its Session.Token, expiring at
// rec.Session.ExpiresAt. It returns anonymous.ErrExists, changing nothing,
// when the id holds a guest (revoked or not) or a deleted guest's
// reservation that has not expired. It returns ctx.Err() if ctx is done.
func (s *Store) Create(ctx context.Context, rec *anonymous.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if rec == nil {
		return errNilRecord
	}
	e := &entry{rec: *rec, exp: wall(rec.Session.ExpiresAt)}
	e.rec.Session.Token = "" // stores never hold the token in plaintext
	own(&e.rec)
	now := time.Now()
	sh := s.shard(rec.User.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old := sh.m[rec.User.ID]; old != nil && old.live(now) {
		return anonymous.ErrExists
	}
	sh.m[rec.User.ID] = e
	return nil
}

// Get returns a copy of the guest with this id, revoked or not, or
// anonymous.ErrNotFound when there is none, it has expired or it was
// deleted. It returns ctx.Err() if ctx is done.
func (s *Store) Get(ctx context.Context, id string) (*anonymous.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now()
	sh := s.shard(id)
	sh.mu.RLock()
	e := sh.guest(id, now)
	if e == nil {
		sh.mu.RUnlock()
		return nil, anonymous.ErrNotFound
	}
	rec := new(anonymous.Record)
	*rec = e.rec
	sh.mu.RUnlock()
	return rec, nil
}

// Touch moves the guest's expiry to expiresAt and sets its
// Session.UpdatedAt to now. It returns anonymous.ErrNotFound when there is
// no such guest or it was revoked, and ctx.Err() if ctx is done.
func (s *Store) Touch(ctx context.Context, id string, expiresAt, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	clock := time.Now()
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.active(id, clock)
	if e == nil {
		return anonymous.ErrNotFound
	}
	e.exp = wall(expiresAt)
	e.rec.Session.ExpiresAt, e.rec.Session.UpdatedAt = expiresAt, now
	return nil
}

// Claim takes the guest's link lease for owner until the given time. It
// returns anonymous.ErrNotFound when there is no such guest or it was
// revoked, anonymous.ErrClaimed while another owner's lease has not run out,
// and ctx.Err() if ctx is done. Claiming again as the lease's owner renews
// it.
func (s *Store) Claim(ctx context.Context, id, owner string, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.active(id, now)
	if e == nil {
		return anonymous.ErrNotFound
	}
	if e.owner != "" && e.owner != owner && now.Before(e.until) {
		return anonymous.ErrClaimed
	}
	e.owner, e.until = owner, wall(until)
	return nil
}

// Release drops owner's lease on the guest. Anything else (another owner's
// lease, no lease, no guest) is left as it is and is not an error. It
// returns ctx.Err() if ctx is done.
func (s *Store) Release(ctx context.Context, id, owner string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[id]; e != nil && e.owner == owner {
		e.owner, e.until = "", time.Time{}
	}
	return nil
}

// Delete removes the guest and any lease, keeping the id reserved until
// the guest's expiry: until then Get returns anonymous.ErrNotFound and
// Create anonymous.ErrExists. Deleting a guest that does not exist is not an
// error. It returns ctx.Err() if ctx is done.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[id]
	switch {
	case e == nil || e.deleted:
	case !e.live(now):
		delete(sh.m, id)
	default:
		// Keep only what the reservation needs.
		*e = entry{exp: e.exp, deleted: true}
	}
	return nil
}

// Revoke keeps the guest's user record but ends its session: it zeroes
// TokenHash, sets LinkedTo and drops any lease; the record still expires at
// its Session.ExpiresAt, and Touch and Claim no longer find it. It returns
// anonymous.ErrNotFound when there is no such guest or it was revoked
// already (a guest is linked once), and ctx.Err() if ctx is done.
func (s *Store) Revoke(ctx context.Context, id, linkedTo string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.active(id, now)
	if e == nil {
		return anonymous.ErrNotFound
	}
	e.revoked = true
	clear(e.rec.TokenHash[:])
	e.rec.LinkedTo = strings.Clone(linkedTo)
	e.owner, e.until = "", time.Time{}
	return nil
}
