// Package memstore is an in-memory anonymous.Store: the default for tests,
// development and single-process applications. Guests live in the
// process's memory, so they are lost on restart and not shared between
// processes; use a shared store such as redisstore for that.
//
//	store, err := memstore.New(memstore.Options{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer store.Close()
//
//	guests, err := anonymous.New(store, anonymous.Options{Keys: keys})
//	if err != nil {
//		log.Fatal(err)
//	}
//	http.ListenAndServe(":8080", guests.Middleware(mux))
//
// A guest without data takes about 300 bytes, up to 350 once written
// often, so the default cap of 64 MiB (Options.MaxBytes) holds some
// 220,000 of them, fewer with data. Once the store is full, new visitors'
// guests live in their cookies instead, and a stored guest's data cannot
// grow (see anonymous.ErrStoreFull). An expired guest is
// never returned; a background sweeper, started by New and stopped by
// Close, frees its memory.
package memstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/guestpass/anonymous"
)

// defaultSweepInterval is the sweeper's period when Options.SweepInterval is
// zero.
const defaultSweepInterval = time.Minute

// shardCount is a power of two well above common core counts, so that
// concurrent requests rarely meet on one lock: a Get is a read lock of one
// shard and one copy, and scales with cores.
const shardCount = 64

// Options configures a Store. The zero value is the default configuration.
type Options struct {
	// SweepInterval is how often the background sweeper frees expired
	// entries. It bounds memory only: reads check expiry themselves.
	// Default: 1 minute. Negative is an error (New returns it): a memory
	// store must sweep, since nothing else frees an expired guest's memory,
	// so unlike sqlstore's it cannot be turned off.
	SweepInterval time.Duration
	// MaxBytes caps the memory the store's entries take: each counts its key,
	// its value and 51 bytes more (its header, its block's length and rounding,
	// its index slot). Past it, Create stores nothing and returns
	// anonymous.ErrStoreFull, as does an Update that would grow an entry (a
	// guest's data), and the Manager fails open (new visitors' guests, and
	// data, live in their cookies), so the process never runs out of memory. A
	// Durable write (a login linking a guest, a delete) still has a headroom of
	// 1 % more (at least 64 KiB): a login is never refused for a flood's
	// guests. Negative: no cap. Default: 64 MiB, some 220,000 guests without
	// data: sized for a small server.
	MaxBytes int64
}

// defaultMaxBytes is Options.MaxBytes's default.
const defaultMaxBytes = 64 << 20

// entryOverhead is what an entry costs past its key and value: its header,
// its block's length and rounding to a size class (about a sixteenth), and
// its index slot at the table's load.
const entryOverhead = blockHeader + 16 + 12

// headroom is how many bytes past max a full store still takes for
// Durable writes, so that a flood that fills the store cannot keep a
// visitor from logging in with its cart: 1 % of max, and at least 64 KiB.
func headroom(limit int64) int64 { return max(limit/100, 64<<10) }

// errLongKey is returned by Create for a key its entry cannot hold.
var errLongKey = errors.New("memstore: key longer than 255 bytes")

// Store is an in-memory anonymous.Store. Create it with New and stop its
// sweeper with Close. All its methods are safe for concurrent use.
//
// It holds no pointer per entry, so that the garbage collector's work does
// not grow with the number of guests: each shard keeps its entries in an
// arena of byte slabs (arena.go) and finds them through a hash table of
// uint64 slots (index.go).
type Store struct {
	seed   maphash.Seed
	mask   uint64 // applied to keys' hashes: all ones, but tests make keys collide
	shards [shardCount]shard

	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the sweeper has returned
	closeOnce sync.Once

	max   int64        // MaxBytes; 0 for no cap
	n     atomic.Int64 // entries held, expired ones the sweeper has not freed included
	bytes atomic.Int64 // what they take, as MaxBytes counts it
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
	index index // finds entries in arena
	arena arena
}

// unixNow returns the time as Unix seconds and nanoseconds, as entries
// hold their expiry.
func unixNow() (int64, int32) {
	now := time.Now()
	return now.Unix(), int32(now.Nanosecond())
}

// New returns an empty Store and starts its sweeper. The zero Options is
// the default configuration. New returns an error, and starts nothing, for
// invalid options: a negative SweepInterval. Call Close when done with the
// store, or the sweeper runs for the life of the process.
func New(opts Options) (*Store, error) {
	if opts.SweepInterval < 0 {
		return nil, fmt.Errorf("memstore: negative SweepInterval %v: a memory store must sweep to free expired guests' memory", opts.SweepInterval)
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = defaultSweepInterval
	}
	switch {
	case opts.MaxBytes == 0:
		opts.MaxBytes = defaultMaxBytes
	case opts.MaxBytes < 0:
		opts.MaxBytes = 0
	}
	s := &Store{
		seed: maphash.MakeSeed(),
		mask: ^uint64(0),
		max:  opts.MaxBytes,
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go s.sweeper(opts.SweepInterval)
	return s, nil
}

// Close stops the sweeper and waits for it to return. It always returns
// nil. It is idempotent and safe to call concurrently. The store keeps
// working after Close, still hiding expired entries, but no longer frees
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
// wait for at most one shard's scan, and compacts the shards whose slabs
// are mostly free, so that memory comes back after a peak.
func (s *Store) sweep() {
	for i := range s.shards {
		sh := &s.shards[i]
		sec, nsec := unixNow()
		sh.mu.Lock()
		for j := 0; j < len(sh.index.slots); {
			if sh.index.slots[j] != 0 {
				if r := sh.index.ref(j); !live(sh.arena.get(r), sec, nsec) {
					s.bytes.Add(-int64(len(sh.arena.get(r)) + entryOverhead))
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

// compact moves the shard's entries into fresh slabs, and its index into
// a table sized for what is left.
func (sh *shardBody) compact() {
	var fresh arena
	sh.index = sh.index.rebuilt(func(r uint32) uint32 { return fresh.move(&sh.arena, r) })
	sh.arena = fresh
}

// Len returns the number of entries the store holds: one per guest, one
// per deleted or linked guest until it would have expired, and expired
// entries the sweeper has not freed yet. It is meant for monitoring and
// for tests, and is safe for concurrent use.
func (s *Store) Len() int { return int(s.n.Load()) }

// Bytes returns the memory the store's entries take, as Options.MaxBytes
// counts it. It is meant for monitoring and tests, and is safe for
// concurrent use.
func (s *Store) Bytes() int64 { return s.bytes.Load() }

// hash returns the hash of key (hash/maphash, with the store's own seed):
// its low bits choose the shard, its upper 32 bits are the tag the shard's
// index files the entry under.
func (s *Store) hash(key string) uint64 { return maphash.String(s.seed, key) & s.mask }

func (s *Store) shard(h uint64) *shard { return &s.shards[h%shardCount] }

func tag(h uint64) uint32 { return uint32(h >> 32) }

// Create stores a copy of e.Value under key as version 1, expiring at
// e.Expires. It returns anonymous.ErrExists, changing nothing, when key
// holds an entry that has not expired; anonymous.ErrStoreFull when the
// entry would take the store past MaxBytes (or, for a Durable e, past
// MaxBytes and its headroom); an error for a key longer than 255 bytes;
// and ctx.Err() if ctx is done.
func (s *Store) Create(ctx context.Context, key string, e anonymous.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(key) > maxKey {
		return errLongKey
	}
	h := s.hash(key)
	sec, nsec := unixNow()
	sh := s.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n := entrySize(key, e.Value)
	i, found := sh.index.find(tag(h), key, &sh.arena)
	if found {
		if live(sh.arena.get(sh.index.ref(i)), sec, nsec) {
			return anonymous.ErrExists
		}
		// Expired, and not swept yet: as good as absent.
		return s.replace(&sh.shardBody, i, key, 1, e)
	}
	if !s.reserve(int64(n+entryOverhead), e.Durable) {
		return anonymous.ErrStoreFull
	}
	r, b, ok := sh.arena.put(n)
	if !ok {
		s.bytes.Add(-int64(n + entryOverhead))
		return anonymous.ErrStoreFull
	}
	s.n.Add(1)
	writeEntry(b, key, 1, e.Expires, e.Value)
	sh.index.insert(tag(h), r)
	return nil
}

// reserve takes n more bytes, unless the store is full: durable for a
// Durable write, which may use the headroom. Writes on other shards run
// meanwhile, so the count is taken with a compare-and-swap: the cap holds
// exactly. A negative n gives bytes back.
func (s *Store) reserve(n int64, durable bool) bool {
	limit := s.max
	if durable {
		limit += headroom(s.max)
	}
	for {
		b := s.bytes.Load()
		if s.max > 0 && n > 0 && b+n > limit {
			return false
		}
		if s.bytes.CompareAndSwap(b, b+n) {
			return true
		}
	}
}

// replace writes e as version v of the entry in slot i of sh, which
// holds key, taking or giving back the bytes the change of size makes.
func (s *Store) replace(sh *shardBody, i int, key string, v uint64, e anonymous.Entry) error {
	r := sh.index.ref(i)
	n := entrySize(key, e.Value)
	grow := int64(n - len(sh.arena.get(r)))
	if !s.reserve(grow, e.Durable) {
		return anonymous.ErrStoreFull
	}
	r, b, ok := sh.arena.replace(r, n)
	if !ok {
		s.bytes.Add(-grow)
		return anonymous.ErrStoreFull
	}
	writeEntry(b, key, v, e.Expires, e.Value)
	sh.index.set(i, r)
	return nil
}

// Get returns the entry under key, with its version and expiry, or
// anonymous.ErrNotFound when there is none or it has expired. The Value is
// a fresh copy, the caller's own: one allocation (none for an empty
// value, which comes back nil). Durable is false. It returns ctx.Err() if
// ctx is done.
func (s *Store) Get(ctx context.Context, key string) (anonymous.Entry, error) {
	if err := ctx.Err(); err != nil {
		return anonymous.Entry{}, err
	}
	h := s.hash(key)
	sec, nsec := unixNow()
	sh := s.shard(h)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	i, found := sh.index.find(tag(h), key, &sh.arena)
	if !found {
		return anonymous.Entry{}, anonymous.ErrNotFound
	}
	stored := sh.arena.get(sh.index.ref(i))
	if !live(stored, sec, nsec) {
		return anonymous.Entry{}, anonymous.ErrNotFound
	}
	var v []byte
	if val := value(stored); len(val) > 0 {
		v = bytes.Clone(val) // copied under the lock: a write may reuse the block
	}
	return anonymous.Entry{Value: v, Version: version(stored), Expires: expires(stored)}, nil
}

// Update replaces the entry under key with a copy of e.Value, as version
// e.Version+1 and expiring at e.Expires, if the stored version is
// e.Version. It returns anonymous.ErrConflict, changing nothing, when it is
// not; anonymous.ErrNotFound when there is no entry or it has expired;
// anonymous.ErrStoreFull, changing nothing, when it grows the entry past
// MaxBytes (or, for a Durable e, past its headroom); and ctx.Err() if ctx
// is done.
func (s *Store) Update(ctx context.Context, key string, e anonymous.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h := s.hash(key)
	sec, nsec := unixNow()
	sh := s.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, found := sh.index.find(tag(h), key, &sh.arena)
	if !found {
		return anonymous.ErrNotFound
	}
	switch stored := sh.arena.get(sh.index.ref(i)); {
	case !live(stored, sec, nsec):
		return anonymous.ErrNotFound
	case version(stored) != e.Version:
		return anonymous.ErrConflict
	}
	return s.replace(&sh.shardBody, i, key, e.Version+1, e)
}
