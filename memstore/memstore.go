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
	"bytes"
	"context"
	"errors"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
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
	// records (deleted guests' included). It bounds memory only:
	// reads check expiry themselves. Default: DefaultSweepInterval (1 minute).
	SweepInterval time.Duration
	// MaxGuests caps the records the store holds: past it, Create stores
	// nothing and returns anonymous.ErrStoreFull, and the Manager fails
	// open (new visitors' guests live in their cookies), so the process
	// never runs out of memory. Negative: no cap. Default: DefaultMaxGuests,
	// 250,000 guests, about 175 MB with browsers' User-Agents: sized for a
	// small server.
	MaxGuests int
}

// DefaultMaxGuests is Options.MaxGuests's default.
const DefaultMaxGuests = 250_000

// Store is an in-memory anonymous.Store. Create it with New and stop its
// sweeper with Close. All its methods are safe for concurrent use.
type Store struct {
	seed   maphash.Seed
	shards [shardCount]shard

	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the sweeper has returned
	closeOnce sync.Once

	max int          // MaxGuests; 0 for no cap
	n   atomic.Int64 // records held, expired ones the sweeper has not freed included
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

// entry is what the store keeps under a guest id until exp.
type entry struct {
	rec anonymous.Record
	exp time.Time
}

// own makes rec's strings and data the store's own copies: what the caller
// hands over may be a slice of a request's memory (a header, a body), which
// the store would otherwise keep alive for the guest's whole life.
func own(rec *anonymous.Record) {
	u, ss := &rec.User, &rec.Session
	for _, p := range []*string{&u.ID, &u.Email, &u.Name, &ss.ID, &ss.UserID, &ss.IPAddress, &ss.UserAgent, &rec.LinkedTo, &rec.ClaimOwner} {
		*p = strings.Clone(*p)
	}
	rec.Data = bytes.Clone(rec.Data)
}

// wall strips t's monotonic clock reading: expiries and leases are dates,
// compared on the wall clock like the cookie's expiry and Redis's.
func wall(t time.Time) time.Time { return t.Round(0) }

// live reports whether e has not expired at now.
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
	switch {
	case o.MaxGuests == 0:
		o.MaxGuests = DefaultMaxGuests
	case o.MaxGuests < 0:
		o.MaxGuests = 0
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	s := &Store{
		seed: maphash.MakeSeed(),
		max:  o.MaxGuests,
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
				s.n.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
}

// Len returns the number of records the store holds: guests, deleted or
// linked guests' records until their expiry, and expired records the
// sweeper has not freed yet; MaxGuests caps it. It is meant for monitoring
// memory and for tests. It is safe for concurrent use.
func (s *Store) Len() int { return int(s.n.Load()) }

func (s *Store) shard(id string) *shard {
	return &s.shards[maphash.String(s.seed, id)%shardCount]
}

var errNilRecord = errors.New("memstore: nil record")

// Create stores a copy of rec as version 1, expiring at
// rec.Session.ExpiresAt. It returns anonymous.ErrExists, changing nothing,
// when the id holds a record that has not expired, anonymous.ErrStoreFull
// when the store holds MaxGuests records, and ctx.Err() if ctx is done.
func (s *Store) Create(ctx context.Context, rec *anonymous.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if rec == nil {
		return errNilRecord
	}
	e := &entry{rec: *rec, exp: wall(rec.Session.ExpiresAt)}
	own(&e.rec)
	e.rec.Version = 1
	now := time.Now()
	sh := s.shard(rec.User.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old := sh.m[rec.User.ID]
	switch {
	case old != nil && old.live(now):
		return anonymous.ErrExists
	case old == nil && s.max > 0 && s.n.Load() >= int64(s.max):
		return anonymous.ErrStoreFull
	case old == nil:
		s.n.Add(1)
	}
	sh.m[e.rec.User.ID] = e
	return nil
}

// Get returns a copy of the record with this id, or anonymous.ErrNotFound
// when there is none or it has expired. It returns ctx.Err() if ctx is done.
func (s *Store) Get(ctx context.Context, id string) (*anonymous.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now()
	sh := s.shard(id)
	sh.mu.RLock()
	e := sh.m[id]
	if e == nil || !e.live(now) {
		sh.mu.RUnlock()
		return nil, anonymous.ErrNotFound
	}
	rec := new(anonymous.Record)
	*rec = e.rec
	sh.mu.RUnlock()
	// The data is the caller's own copy; the strings are immutable.
	rec.Data = bytes.Clone(rec.Data)
	return rec, nil
}

// Update replaces the record with a copy of rec, as version rec.Version+1
// and expiring at rec.Session.ExpiresAt, if the stored version is
// rec.Version. It returns anonymous.ErrConflict when it is not,
// anonymous.ErrNotFound when there is no record or it has expired, and
// ctx.Err() if ctx is done.
func (s *Store) Update(ctx context.Context, rec *anonymous.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if rec == nil {
		return errNilRecord
	}
	e := &entry{rec: *rec, exp: wall(rec.Session.ExpiresAt)}
	own(&e.rec)
	e.rec.Version = rec.Version + 1
	now := time.Now()
	sh := s.shard(rec.User.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old := sh.m[rec.User.ID]
	switch {
	case old == nil || !old.live(now):
		return anonymous.ErrNotFound
	case old.rec.Version != rec.Version:
		return anonymous.ErrConflict
	}
	sh.m[e.rec.User.ID] = e
	return nil
}
