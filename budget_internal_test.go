package anonymous

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// The in-memory limiter remembers at most its bound of clients, forgetting
// the one seen least recently.
func TestMemLimiterIsBounded(t *testing.T) {
	l := newMemLimiter(3)
	b := Budget{Rate: 1, Period: time.Hour, Burst: 1}
	ctx := context.Background()
	for i := range 10 {
		if wait, _ := l.Allow(ctx, fmt.Sprint("client-", i), b); wait != 0 {
			t.Fatalf("client %d refused its first guest", i)
		}
	}
	if n := len(l.byKey); n != 3 || l.lru.Len() != 3 {
		t.Fatalf("the limiter remembers %d clients (%d in its list), want 3", n, l.lru.Len())
	}
	// The three most recent are remembered: their budget is spent.
	for i := 7; i < 10; i++ {
		if wait, _ := l.Allow(ctx, fmt.Sprint("client-", i), b); wait <= 0 {
			t.Errorf("client %d was allowed a second guest at once", i)
		}
	}
}
