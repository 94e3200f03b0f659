package storetest_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/storetest"
)

// mapStore is a Store of one's own: entries in a map under a mutex. It
// never frees an expired entry it is not asked about; docs/stores.md shows
// a whole store that does.
type mapStore struct {
	mu      sync.Mutex
	entries map[string]anonymous.Entry
}

func newMapStore() *mapStore { return &mapStore{entries: make(map[string]anonymous.Entry)} }

// live returns the entry under key, unless there is none or it has
// expired. s.mu is held.
func (s *mapStore) live(key string) (anonymous.Entry, bool) {
	e, ok := s.entries[key]
	return e, ok && time.Now().Before(e.Expires)
}

func (s *mapStore) Create(ctx context.Context, key string, e anonymous.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.live(key); ok {
		return anonymous.ErrExists
	}
	s.entries[key] = anonymous.Entry{Value: bytes.Clone(e.Value), Version: 1, Expires: e.Expires}
	return nil
}

func (s *mapStore) Get(ctx context.Context, key string) (anonymous.Entry, error) {
	if err := ctx.Err(); err != nil {
		return anonymous.Entry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.live(key)
	if !ok {
		return anonymous.Entry{}, anonymous.ErrNotFound
	}
	e.Value = bytes.Clone(e.Value) // the caller's to keep
	return e, nil
}

func (s *mapStore) Update(ctx context.Context, key string, e anonymous.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch cur, ok := s.live(key); {
	case !ok:
		return anonymous.ErrNotFound
	case cur.Version != e.Version:
		return anonymous.ErrConflict
	}
	s.entries[key] = anonymous.Entry{Value: bytes.Clone(e.Value), Version: e.Version + 1, Expires: e.Expires}
	return nil
}

// A Store of one's own runs the whole suite from one test in its package,
// in a _test.go file:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) anonymous.Store { return newMapStore() })
//	}
//
// The function returns a fresh, empty store for each subtest, from parallel
// subtests: stores that share a server (one Redis, one database) keep
// their data apart with a random key prefix each, removed by t.Cleanup.
func ExampleRun() {
	testStore := func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) anonymous.Store { return newMapStore() })
	}
	_ = testStore
}
