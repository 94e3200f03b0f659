// Package examplestore is a whole anonymous.Store in memory: a map and a
// mutex. It is the model that docs/stores.md shows for writing a store of
// one's own, and it passes storetest; applications use memstore, which
// holds millions of guests without weighing on the garbage collector, or
// redisstore.
package examplestore

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/guestpass/anonymous"
)

// samples is how many other entries each Create looks at, deleting those
// that have expired, so that the entries of guests who never come back do
// not pile up. A store on a server drops them its own way: Redis expires
// keys itself; a SQL table needs a periodic DELETE of expired rows.
const samples = 2

// entry is what the store keeps under a key.
type entry struct {
	value   []byte // the store's own copy
	version uint64
	expires time.Time
}

// Store keeps entries in a map. It is safe for concurrent use. Create one
// with New.
type Store struct {
	// mu guards entries. It is a Mutex, not an RWMutex: Get deletes the
	// expired entries it finds.
	mu      sync.Mutex
	entries map[string]entry
}

// New returns an empty Store.
func New() *Store {
	return &Store{entries: make(map[string]entry)}
}

var _ anonymous.Store = (*Store)(nil)

// live returns the entry under key unless there is none or it has expired
// at now, deleting it then. s.mu is held.
func (s *Store) live(key string, now time.Time) (entry, bool) {
	e, ok := s.entries[key]
	if ok && !now.Before(e.expires) {
		delete(s.entries, key)
		return entry{}, false
	}
	return e, ok
}

// Create stores a copy of e.Value under key as version 1, expiring at
// e.Expires, unless key holds an entry that has not expired: then it
// returns anonymous.ErrExists and changes nothing. e.Version is ignored,
// and so is e.Durable: memory keeps nothing across a restart, and while
// the process lives no live entry is ever dropped.
func (s *Store) Create(ctx context.Context, key string, e anonymous.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The clock is read under the lock, so that no call that waited for
	// the lock judges expiry by a moment already past.
	now := time.Now()
	if _, ok := s.live(key, now); ok {
		return anonymous.ErrExists
	}
	s.sweep(now)
	s.entries[key] = entry{value: bytes.Clone(e.Value), version: 1, expires: e.Expires}
	return nil
}

// sweep deletes those of a few entries that have expired at now: Go
// iterates over a map from a random place. s.mu is held.
func (s *Store) sweep(now time.Time) {
	n := 0
	for key, e := range s.entries {
		if !now.Before(e.expires) {
			delete(s.entries, key)
		}
		if n++; n == samples {
			return
		}
	}
}

// Get returns the entry under key, with a copy of its Value for the caller
// to keep, or anonymous.ErrNotFound when there is none or it has expired.
func (s *Store) Get(ctx context.Context, key string) (anonymous.Entry, error) {
	if err := ctx.Err(); err != nil {
		return anonymous.Entry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.live(key, time.Now())
	if !ok {
		return anonymous.Entry{}, anonymous.ErrNotFound
	}
	return anonymous.Entry{Value: bytes.Clone(e.value), Version: e.version, Expires: e.expires}, nil
}

// Update replaces the entry under key with a copy of e.Value, as version
// e.Version+1 expiring at e.Expires, if the stored version is e.Version;
// else it returns anonymous.ErrConflict and changes nothing. It returns
// anonymous.ErrNotFound when there is no entry or it has expired: an
// Update never creates one.
func (s *Store) Update(ctx context.Context, key string, e anonymous.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.live(key, time.Now())
	switch {
	case !ok:
		return anonymous.ErrNotFound
	case cur.version != e.Version:
		return anonymous.ErrConflict
	}
	s.entries[key] = entry{value: bytes.Clone(e.Value), version: e.Version + 1, expires: e.Expires}
	return nil
}
