// Package storegate holds a store's Creates back until several wait, so
// that tests can make requests that would race truly race: every one of a
// page's first returns charges the budget before any stores the guest.
package storegate

import (
	"context"
	"sync"
	"time"

	"github.com/guestpass/anonymous"
)

// Gate is a Store whose Creates wait until n of them do, or a second has
// passed; then they, and every Create after them, go through.
type Gate struct {
	anonymous.Store
	n       int
	mu      sync.Mutex
	waiting int
	open    chan struct{}
}

// New returns a Gate on s for n Creates.
func New(s anonymous.Store, n int) *Gate {
	return &Gate{Store: s, n: n, open: make(chan struct{})}
}

// Create waits at the gate, then creates.
func (g *Gate) Create(ctx context.Context, key string, e anonymous.Entry) error {
	g.mu.Lock()
	if g.waiting++; g.waiting == g.n {
		close(g.open)
	}
	g.mu.Unlock()
	select {
	case <-g.open:
	case <-time.After(time.Second):
	}
	return g.Store.Create(ctx, key, e)
}
