package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/redis/go-redis/v9"
)

// AccountCart is an account's cart as Carts keeps it.
type AccountCart struct {
	// Items is product id → quantity, each from 1 to maxQty.
	Items map[string]int `json:"items,omitempty"`
	// Merged names the guests whose carts were added to this one, the most
	// recent last, so that an OnLinkAccount that runs again for a guest
	// (see anonymous.Options.OnLinkAccount) adds nothing. A repeat comes
	// within the package's LinkLease, so the last few are plenty.
	Merged []string `json:"merged,omitempty"`
	// Notice is a message for the account's next page: what a login
	// merged. It is kept with the cart so that the page finds it whichever
	// process serves it, and after a restart.
	Notice string `json:"notice,omitempty"`
}

// clone returns a copy of c that shares no memory with it.
func (c AccountCart) clone() AccountCart {
	c.Items = maps.Clone(c.Items)
	c.Merged = append([]string(nil), c.Merged...)
	return c
}

// ErrNoChange is returned by a Carts.Update function to end the update
// without writing anything; Update then returns the cart as it was, and no
// error.
var ErrNoChange = errors.New("shop: the cart is unchanged")

// Carts keeps accounts' carts. Every method is safe for concurrent use.
type Carts interface {
	// Get returns the account's cart: the zero AccountCart when it has none.
	Get(ctx context.Context, account string) (AccountCart, error)
	// Update changes the account's cart atomically: fn changes a copy of
	// the current cart (the zero AccountCart when there is none), which
	// Update writes only if nobody wrote the cart meanwhile; otherwise it
	// reads it again and calls fn again, so that concurrent updates all
	// count. fn must therefore have no other effect. fn's error, but for
	// ErrNoChange, is returned and nothing is written. The result is the
	// cart as written (or as read, after ErrNoChange).
	Update(ctx context.Context, account string, fn func(c *AccountCart) error) (AccountCart, error)
	// Seed stores c as the account's cart unless the account has one (even
	// an empty one), and reports whether it did.
	Seed(ctx context.Context, account string, c AccountCart) (bool, error)
}

// MemoryCarts is Carts in process memory: the carts are lost when the
// process ends. Create it with NewMemoryCarts.
type MemoryCarts struct {
	mu    sync.Mutex
	carts map[string]AccountCart
}

// NewMemoryCarts returns an empty MemoryCarts.
func NewMemoryCarts() *MemoryCarts { return &MemoryCarts{carts: make(map[string]AccountCart)} }

// Get returns a copy of the account's cart.
func (m *MemoryCarts) Get(_ context.Context, account string) (AccountCart, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.carts[account].clone(), nil
}

// Update runs fn under the store's lock: no update ever conflicts.
func (m *MemoryCarts) Update(_ context.Context, account string, fn func(c *AccountCart) error) (AccountCart, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.carts[account].clone()
	switch err := fn(&c); {
	case errors.Is(err, ErrNoChange):
		return m.carts[account].clone(), nil
	case err != nil:
		return AccountCart{}, err
	}
	m.carts[account] = c.clone()
	return c, nil
}

// Seed stores a copy of c unless the account has a cart.
func (m *MemoryCarts) Seed(_ context.Context, account string, c AccountCart) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.carts[account]; ok {
		return false, nil
	}
	m.carts[account] = c.clone()
	return true, nil
}

// RedisCarts is Carts in Redis: one key per account, "<prefix>cart:<account>",
// holding the cart's JSON, without expiry. Updates are optimistic
// transactions (WATCH, then MULTI/EXEC), retried when another client wrote
// the key meanwhile. Create it with NewRedisCarts.
type RedisCarts struct {
	client redis.UniversalClient
	prefix string
}

// NewRedisCarts returns Carts on client under prefix, the prefix of the
// shop's other keys. The caller keeps owning client.
func NewRedisCarts(client redis.UniversalClient, prefix string) *RedisCarts {
	return &RedisCarts{client: client, prefix: prefix}
}

// Key returns the Redis key of the account's cart.
func (s *RedisCarts) Key(account string) string { return s.prefix + "cart:" + account }

// maxTries bounds how often an update reads a cart again after a conflict:
// each conflict is another writer's success.
const maxTries = 100

func decodeCart(account, v string) (AccountCart, error) {
	var c AccountCart
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		return AccountCart{}, fmt.Errorf("shop: the cart of %s is not a cart: %w", account, err)
	}
	return c, nil
}

// Get reads the account's cart with one GET.
func (s *RedisCarts) Get(ctx context.Context, account string) (AccountCart, error) {
	v, err := s.client.Get(ctx, s.Key(account)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return AccountCart{}, nil
	case err != nil:
		return AccountCart{}, fmt.Errorf("shop: reading the cart of %s: %w", account, err)
	}
	return decodeCart(account, v)
}

// Update is a WATCH, a GET, fn, and a SET in MULTI/EXEC, which Redis
// refuses when the key changed after the WATCH: then it starts again.
func (s *RedisCarts) Update(ctx context.Context, account string, fn func(c *AccountCart) error) (AccountCart, error) {
	key := s.Key(account)
	var out AccountCart
	txf := func(tx *redis.Tx) error {
		v, err := tx.Get(ctx, key).Result()
		var cur AccountCart
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return err
		default:
			if cur, err = decodeCart(account, v); err != nil {
				return err
			}
		}
		next := cur.clone()
		switch err := fn(&next); {
		case errors.Is(err, ErrNoChange):
			out = cur
			return nil
		case err != nil:
			return err
		}
		b, err := json.Marshal(next)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key, b, 0)
			return nil
		})
		if err == nil {
			out = next
		}
		return err
	}
	for try := 1; ; try++ {
		err := s.client.Watch(ctx, txf, key)
		switch {
		case err == nil:
			return out, nil
		case !errors.Is(err, redis.TxFailedErr) || try == maxTries:
			return AccountCart{}, fmt.Errorf("shop: updating the cart of %s: %w", account, err)
		}
	}
}

// Seed stores c with SET NX.
func (s *RedisCarts) Seed(ctx context.Context, account string, c AccountCart) (bool, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return false, err
	}
	err = s.client.SetArgs(ctx, s.Key(account), b, redis.SetArgs{Mode: "NX"}).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("shop: seeding the cart of %s: %w", account, err)
	}
	return true, nil
}
