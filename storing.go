package anonymous

import (
	"context"
	"sync"
	"time"
)

// siblingWait bounds how long a first return the budget refused waits for
// the requests of its process that were storing the same guest: a store
// write takes milliseconds, and a request must not hang on a slow one.
const siblingWait = 2 * time.Second

// storing tracks, per guest id, the requests of this process that are
// storing a first-visit guest, so that a sibling the budget refused can
// wait for the one it charged rather than miss its store by a moment. The
// zero value is ready. An attempt costs no allocation: a channel is made
// only when someone waits.
type storing struct {
	mu       sync.Mutex
	last     uint64 // the last ticket handed out, to any id
	attempts map[string]*attempts
}

// attempts are one guest id's attempts under way, by ticket.
type attempts struct {
	active []uint64 // the tickets of the attempts under way
	inline [4]uint64
	// wake, made by a waiter, is closed when an attempt ends.
	wake chan struct{}
}

// attemptsPool keeps the per-id records of ended attempts for the next.
var attemptsPool = sync.Pool{New: func() any { return new(attempts) }}

// enter records an attempt to store id; pass what it returns to leave when
// the attempt ends.
func (s *storing) enter(id string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attempts == nil {
		s.attempts = make(map[string]*attempts)
	}
	a := s.attempts[id]
	if a == nil {
		a = attemptsPool.Get().(*attempts)
		a.active = a.inline[:0]
		s.attempts[id] = a
	}
	s.last++
	a.active = append(a.active, s.last)
	return s.last
}

// leave ends the attempt with ticket t to store id.
func (s *storing) leave(id string, t uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.attempts[id]
	for i, at := range a.active {
		if at == t {
			a.active = append(a.active[:i], a.active[i+1:]...)
			break
		}
	}
	if a.wake != nil {
		close(a.wake)
		a.wake = nil
	}
	if len(a.active) == 0 {
		delete(s.attempts, id)
		*a = attempts{} // a waiter holds no pointer to it: see wait
		attemptsPool.Put(a)
	}
}

// wait returns once the attempts to store id that were under way when it
// was called have ended, or after siblingWait, or when ctx is done.
// Attempts that begin later do not hold it: a stream of copies of one
// cookie cannot keep a request waiting.
func (s *storing) wait(ctx context.Context, id string) {
	s.mu.Lock()
	upTo := s.last // the attempts under way now hold tickets up to upTo
	s.mu.Unlock()
	var timer *time.Timer
	for {
		s.mu.Lock()
		a := s.attempts[id]
		if a == nil || !a.startedBy(upTo) {
			s.mu.Unlock()
			return
		}
		if a.wake == nil {
			a.wake = make(chan struct{})
		}
		wake := a.wake
		s.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(siblingWait)
			defer timer.Stop()
		}
		select {
		case <-wake:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// startedBy reports whether an attempt under way holds a ticket up to upTo.
func (a *attempts) startedBy(upTo uint64) bool {
	for _, t := range a.active {
		if t <= upTo {
			return true
		}
	}
	return false
}
