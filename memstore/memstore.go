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
//
// The store holds no pointer per guest, so that the garbage collector's
// work does not grow with the number of guests. Each record is encoded in
// a compact binary form that leaves out what can be derived (a guest with
// a browser's User-Agent and no data takes about 250 bytes, index
// included), in a block carved from byte slabs of up to 64 KiB. Each shard
// finds a record through a hash table of uint64 slots, each the upper half
// of the id's 64-bit keyed hash (hash/maphash) and the place of its
// record; the record holds the full id, checked on every lookup, so ids
// whose hashes collide are kept apart. A freed block is reused by a later
// record, and the sweeper compacts a shard's slabs once most of them are
// free, so memory comes back after a peak. Create and Update encode the
// caller's record, so the store keeps its own copy of every byte; Get
// decodes into one fresh allocation, the caller's own, that holds the
// record, its strings and its data (two allocations past about 4 KiB).
package memstore

import (
	"context"
	"errors"
	"hash/maphash"
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
	// never runs out of memory. A link still stores the guest it links,
	// claimed, in a headroom of 1 % more (at least 16): a login is never
	// refused for a flood's guests. Negative: no cap. Default: DefaultMaxGuests,
	// 250,000 guests, about 65 MB with browsers' User-Agents: sized for a
	// small server.
	MaxGuests int
}

// DefaultMaxGuests is Options.MaxGuests's default.
const DefaultMaxGuests = 250_000

// headroom is how many records past max a full store still creates for
// links (a record created claimed: a guest that was never stored, linked
// at its login), so that a flood that fills the store cannot keep a
// visitor from logging in with its cart: 1 % of max, and at least 16.
func headroom(limit int) int { return max(limit/100, 16) }

// Store is an in-memory anonymous.Store. Create it with New and stop its
// sweeper with Close. All its methods are safe for concurrent use.
type Store struct {
	seed   maphash.Seed
	mask   uint64 // applied to ids' hashes: all ones, but tests make ids collide
	shards [shardCount]shard

	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the sweeper has returned
	closeOnce sync.Once

	max int          // MaxGuests; 0 for no cap
	n   atomic.Int64 // records held, expired ones the sweeper has not freed included
}

var _ anonymous.Store = (*Store)(nil)

// shard is one lock and what it guards, padded to its own cache lines so
// that readers of neighbouring shards do not contend on one line.
type shard struct {
	shardBody
	_ [128 - unsafe.Sizeof(shardBody{})%128]byte
}

type shardBody struct {
	mu    sync.RWMutex
	index index // finds records in arena
	arena arena
}

// unixNow returns the time as Unix seconds and nanoseconds, as records
// hold their expiry.
func unixNow() (int64, int32) {
	now := time.Now()
	return now.Unix(), int32(now.Nanosecond())
}

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
		mask: ^uint64(0),
		max:  o.MaxGuests,
		stop: make(chan struct{}),
		done: make(chan struct{}),
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

// sweep drops every expired record, one shard at a time so that requests
// wait for at most one shard's scan, and compacts the shards whose slabs
// are mostly free.
func (s *Store) sweep() {
	for i := range s.shards {
		sh := &s.shards[i]
		sec, nsec := unixNow()
		sh.mu.Lock()
		for j := 0; j < len(sh.index.slots); {
			if sh.index.slots[j] != 0 {
				if r := sh.index.ref(j); !live(sh.arena.get(r), sec, nsec) {
					sh.arena.drop(r)
					sh.index.remove(j) // which may move a later slot to j
					s.n.Add(-1)
					continue
				}
			}
			j++
		}
		if sh.arena.wasteful() {
			sh.compact()
		}
		sh.mu.Unlock()
	}
}

// compact moves the shard's records into fresh slabs, and its index into
// a table sized for what is left.
func (sh *shardBody) compact() {
	var fresh arena
	sh.index = sh.index.rebuilt(func(r uint32) uint32 { return fresh.move(&sh.arena, r) })
	sh.arena = fresh
}

// Len returns the number of records the store holds: guests, deleted or
// linked guests' records until their expiry, and expired records the
// sweeper has not freed yet; MaxGuests, plus the links' headroom, caps it. It is meant for monitoring
// memory and for tests. It is safe for concurrent use.
func (s *Store) Len() int { return int(s.n.Load()) }

// hash returns the hash of id: its low bits choose the shard, its upper 32
// bits are the tag the shard's index files the record under.
func (s *Store) hash(id string) uint64 { return maphash.String(s.seed, id) & s.mask }

func (s *Store) shard(h uint64) *shard { return &s.shards[h%shardCount] }

func tag(h uint64) uint32 { return uint32(h >> 32) }

// recordBuf is the size of a buffer on the stack that a record without
// much data is encoded into.
const recordBuf = 512

var errNilRecord = errors.New("memstore: nil record")

// Create stores a copy of rec as version 1, expiring at
// rec.Session.ExpiresAt. It returns anonymous.ErrExists, changing nothing,
// when the id holds a record that has not expired, anonymous.ErrStoreFull
// when the store holds MaxGuests records (plus 1 %, at least 16, for a
// record created claimed by a link), and ctx.Err() if ctx is done.
func (s *Store) Create(ctx context.Context, rec *anonymous.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if rec == nil {
		return errNilRecord
	}
	var buf [recordBuf]byte
	b := appendRecord(buf[:0], rec, 1)
	id := rec.User.ID
	h := s.hash(id)
	sec, nsec := unixNow()
	sh := s.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, found := sh.index.find(tag(h), id, &sh.arena)
	switch {
	case found && live(sh.arena.get(sh.index.ref(i)), sec, nsec):
		return anonymous.ErrExists
	case found: // expired, and not swept yet: as good as absent
		r, ok := sh.arena.replace(sh.index.ref(i), b)
		if !ok {
			return anonymous.ErrStoreFull
		}
		sh.index.set(i, r)
		return nil
	case s.max > 0 && s.n.Load() >= int64(s.max) && (rec.ClaimOwner == "" || s.n.Load() >= int64(s.max+headroom(s.max))):
		return anonymous.ErrStoreFull
	}
	r, ok := sh.arena.put(b)
	if !ok {
		return anonymous.ErrStoreFull
	}
	sh.index.insert(tag(h), r)
	s.n.Add(1)
	return nil
}

// Get returns a copy of the record with this id, or anonymous.ErrNotFound
// when there is none or it has expired. It returns ctx.Err() if ctx is done.
func (s *Store) Get(ctx context.Context, id string) (*anonymous.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h := s.hash(id)
	sec, nsec := unixNow()
	sh := s.shard(h)
	sh.mu.RLock()
	i, found := sh.index.find(tag(h), id, &sh.arena)
	if !found {
		sh.mu.RUnlock()
		return nil, anonymous.ErrNotFound
	}
	stored := sh.arena.get(sh.index.ref(i))
	if !live(stored, sec, nsec) {
		sh.mu.RUnlock()
		return nil, anonymous.ErrNotFound
	}
	rec, buf := newRecord(len(stored) + textSize(stored))
	n := copy(buf, stored)
	sh.mu.RUnlock()
	decode(rec, buf, n)
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
	var buf [recordBuf]byte
	b := appendRecord(buf[:0], rec, rec.Version+1)
	id := rec.User.ID
	h := s.hash(id)
	sec, nsec := unixNow()
	sh := s.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, found := sh.index.find(tag(h), id, &sh.arena)
	switch {
	case !found || !live(sh.arena.get(sh.index.ref(i)), sec, nsec):
		return anonymous.ErrNotFound
	case version(sh.arena.get(sh.index.ref(i))) != rec.Version:
		return anonymous.ErrConflict
	}
	r, ok := sh.arena.replace(sh.index.ref(i), b)
	if !ok {
		return anonymous.ErrStoreFull
	}
	sh.index.set(i, r)
	return nil
}
