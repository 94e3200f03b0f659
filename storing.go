package anonymous

import (
	"context"
	"slices"
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
// zero value is ready.
type storing struct {
	mu sync.Mutex
	// attempts holds, per id, a channel per attempt under way, closed when
	// it ends.
	attempts map[string][]chan struct{}
}

// enter records an attempt to store id; pass what it returns to leave when
// the attempt ends.
func (s *storing) enter(id string) chan struct{} {
	ch := make(chan struct{})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attempts == nil {
		s.attempts = make(map[string][]chan struct{})
	}
	s.attempts[id] = append(s.attempts[id], ch)
	return ch
}

// leave ends the attempt ch to store id.
func (s *storing) leave(id string, ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rest := slices.DeleteFunc(s.attempts[id], func(c chan struct{}) bool { return c == ch }); len(rest) > 0 {
		s.attempts[id] = rest
	} else {
		delete(s.attempts, id)
	}
	close(ch)
}

// wait returns once the attempts to store id that were under way when it
// was called have ended, or after siblingWait, or when ctx is done.
// Attempts that begin later do not hold it: a stream of copies of one
// cookie cannot keep a request waiting.
func (s *storing) wait(ctx context.Context, id string) {
	s.mu.Lock()
	pending := slices.Clone(s.attempts[id])
	s.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	t := time.NewTimer(siblingWait)
	defer t.Stop()
	for _, ch := range pending {
		select {
		case <-ch:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
