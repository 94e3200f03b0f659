package anonymous

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// maxClients bounds the budgets the in-memory limiter keeps. Past it, the
// budget used least recently is dropped; a client not in the table while
// it is full starts with an empty burst, not a full one, so that a flood
// of other clients is no amnesty.
const maxClients = 100_000

// memLimiter keeps budgets in this process's memory: the generic cell rate
// algorithm (GCRA), the one redisstore's script runs, over an LRU table.
// A budget is its theoretical arrival time: the instant its next guest is
// due, at one guest every Period/Rate; a guest may be stored while that
// instant is less than Burst guests ahead of now.
type memLimiter struct {
	mu    sync.Mutex
	max   int
	byKey map[string]*list.Element
	lru   list.List // of *memBudget, most recent first
}

type memBudget struct {
	key string
	tat int64 // Unix nanoseconds
}

func newMemLimiter(max int) *memLimiter {
	return &memLimiter{max: max, byKey: make(map[string]*list.Element)}
}

// emission is the time between two guests at level l's rate.
func emission(l Level) time.Duration { return l.Period / time.Duration(l.Rate) }

func (l *memLimiter) Take(_ context.Context, charges []Charge) (time.Duration, error) {
	now := time.Now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait int64
	tats := make([]int64, len(charges))
	for i, c := range charges {
		t, burst := int64(emission(c.Level)), int64(c.Level.Burst)
		tat := now
		if e := l.byKey[c.Key]; e != nil {
			tat = max(e.Value.(*memBudget).tat, now)
		} else if l.lru.Len() >= l.max {
			tat = now + burst*t // an empty burst
		}
		tats[i] = tat + t
		wait = max(wait, tats[i]-burst*t-now)
	}
	if wait > 0 {
		return time.Duration(wait), nil
	}
	for i, c := range charges {
		l.set(c.Key, tats[i])
	}
	return 0, nil
}

func (l *memLimiter) Refund(_ context.Context, charges []Charge) error {
	now := time.Now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range charges {
		if e := l.byKey[c.Key]; e != nil {
			b := e.Value.(*memBudget)
			b.tat = max(b.tat-int64(emission(c.Level)), now)
		}
	}
	return nil
}

// set records key's budget, dropping the least recent one past max.
func (l *memLimiter) set(key string, tat int64) {
	if e := l.byKey[key]; e != nil {
		e.Value.(*memBudget).tat = tat
		l.lru.MoveToFront(e)
		return
	}
	if l.lru.Len() >= l.max {
		old := l.lru.Remove(l.lru.Back()).(*memBudget)
		delete(l.byKey, old.key)
	}
	l.byKey[key] = l.lru.PushFront(&memBudget{key: key, tat: tat})
}
