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

// TestConformance runs the suite against refStore: it must pass, which
// shows the suite asks nothing the contract does not.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) anonymous.Store { return newRefStore() })
}

// refStore is the simplest Store that keeps the contract: one mutex over
// one map. Expired entries are never swept, only ignored.
type refStore struct {
	mu   sync.Mutex
	recs map[string]*refEntry
}

type refEntry struct {
	rec *anonymous.Record
	exp time.Time
}

func newRefStore() *refStore { return &refStore{recs: map[string]*refEntry{}} }

// live returns id's entry unless there is none or it has expired.
func (s *refStore) live(id string) *refEntry {
	e := s.recs[id]
	if e == nil || !time.Now().Before(e.exp) {
		return nil
	}
	return e
}

func clone(rec *anonymous.Record) *anonymous.Record {
	c := *rec
	c.Data = bytes.Clone(rec.Data)
	return &c
}

func (s *refStore) Create(ctx context.Context, rec *anonymous.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live(rec.User.ID) != nil {
		return anonymous.ErrExists
	}
	c := clone(rec)
	c.Version = 1
	s.recs[rec.User.ID] = &refEntry{rec: c, exp: rec.Session.ExpiresAt}
	return nil
}

func (s *refStore) Get(ctx context.Context, id string) (*anonymous.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(id)
	if e == nil {
		return nil, anonymous.ErrNotFound
	}
	return clone(e.rec), nil
}

func (s *refStore) Update(ctx context.Context, rec *anonymous.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(rec.User.ID)
	switch {
	case e == nil:
		return anonymous.ErrNotFound
	case e.rec.Version != rec.Version:
		return anonymous.ErrConflict
	}
	c := clone(rec)
	c.Version = rec.Version + 1
	s.recs[rec.User.ID] = &refEntry{rec: c, exp: rec.Session.ExpiresAt}
	return nil
}
