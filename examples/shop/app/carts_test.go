package app

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/guestpass/anonymous/internal/pgtest"
	"github.com/guestpass/anonymous/internal/redistest"
)

// testRedis returns a client on REDIS_URL and a random key prefix, whose
// keys are removed at the end. Without a reachable Redis the test skips,
// loudly, unless ANON_REQUIRE_REDIS=1, where it fails.
func testRedis(t *testing.T) (*redis.Client, string) {
	client := redistest.Client(t)
	return client, redistest.Prefix(t, client)
}

// TestCarts checks both Carts implementations against Carts' contract.
func TestCarts(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testCarts(t, NewMemoryCarts()) })
	t.Run("redis", func(t *testing.T) {
		client, prefix := testRedis(t)
		testCarts(t, NewRedisCarts(client, prefix))
	})
	t.Run("postgres", func(t *testing.T) {
		carts, err := NewPostgresCarts(t.Context(), pgtest.Open(t))
		if err != nil {
			t.Fatal(err)
		}
		testCarts(t, carts)
	})
}

func testCarts(t *testing.T, carts Carts) {
	ctx := context.Background()
	add := func(id string) func(c *AccountCart) error {
		return func(c *AccountCart) error {
			if c.Items == nil {
				c.Items = map[string]int{}
			}
			c.Items[id]++
			return nil
		}
	}

	if c, err := carts.Get(ctx, "nobody"); err != nil || len(c.Items) != 0 || len(c.Merged) != 0 || c.Notice != "" {
		t.Fatalf("Get of an account without a cart: %+v, %v; want the zero cart", c, err)
	}

	// Seed writes only where there is no cart.
	if ok, err := carts.Seed(ctx, "alice", AccountCart{Items: map[string]int{"mug": 1}}); !ok || err != nil {
		t.Fatalf("first Seed: %v, %v; want true", ok, err)
	}
	if _, err := carts.Update(ctx, "alice", add("tea")); err != nil {
		t.Fatal(err)
	}
	if ok, err := carts.Seed(ctx, "alice", AccountCart{Items: map[string]int{"mug": 1}}); ok || err != nil {
		t.Fatalf("Seed over a cart: %v, %v; want false", ok, err)
	}
	want := map[string]int{"mug": 1, "tea": 1}
	if c, err := carts.Get(ctx, "alice"); err != nil || !maps.Equal(c.Items, want) {
		t.Fatalf("alice's cart is %v (%v), want %v", c.Items, err, want)
	}
	// An emptied cart is still a cart: Seed leaves it empty.
	if _, err := carts.Update(ctx, "bob", func(c *AccountCart) error { c.Items = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if ok, err := carts.Seed(ctx, "bob", AccountCart{Items: map[string]int{"mug": 1}}); ok || err != nil {
		t.Fatalf("Seed over an empty cart: %v, %v; want false", ok, err)
	}

	// ErrNoChange writes nothing and returns the cart as it is; another
	// error is returned and writes nothing either.
	c, err := carts.Update(ctx, "alice", func(c *AccountCart) error {
		c.Items["mug"] = 50
		return ErrNoChange
	})
	if err != nil || !maps.Equal(c.Items, want) {
		t.Fatalf("Update with ErrNoChange: %v, %v; want %v and no error", c.Items, err, want)
	}
	boom := errors.New("boom")
	if _, err := carts.Update(ctx, "alice", func(c *AccountCart) error {
		c.Items["mug"] = 50
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update whose fn fails: %v, want boom", err)
	}
	if c, _ := carts.Get(ctx, "alice"); !maps.Equal(c.Items, want) {
		t.Fatalf("failed updates changed the cart to %v", c.Items)
	}
	// Nor does ErrNoChange create a cart for an account without one.
	if _, err := carts.Update(ctx, "erin", func(*AccountCart) error { return ErrNoChange }); err != nil {
		t.Fatal(err)
	}
	if ok, err := carts.Seed(ctx, "erin", AccountCart{Items: map[string]int{"mug": 1}}); !ok || err != nil {
		t.Fatalf("Seed after an update that changed nothing: %v, %v; want true", ok, err)
	}

	// The cart is the caller's copy.
	c, _ = carts.Get(ctx, "alice")
	c.Items["mug"] = 42
	if c, _ := carts.Get(ctx, "alice"); c.Items["mug"] != 1 {
		t.Fatal("changing a cart Get returned changed the stored cart")
	}

	// Every field round-trips.
	full := AccountCart{Items: map[string]int{"tea": 2}, Merged: []string{"g1", "g2"}, Notice: "hello"}
	if _, err := carts.Update(ctx, "carol", func(c *AccountCart) error { *c = full.clone(); return nil }); err != nil {
		t.Fatal(err)
	}
	if c, _ := carts.Get(ctx, "carol"); !maps.Equal(c.Items, full.Items) || !slices.Equal(c.Merged, full.Merged) || c.Notice != full.Notice {
		t.Fatalf("carol's cart reads back as %+v, want %+v", c, full)
	}

	// Concurrent updates all count.
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if _, err := carts.Update(ctx, "dave", add("tea")); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Update: %v", err)
	}
	if c, _ := carts.Get(ctx, "dave"); c.Items["tea"] != n {
		t.Fatalf("%d concurrent adds gave %d teas", n, c.Items["tea"])
	}
}
