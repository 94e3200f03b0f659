package app

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/pgtest"
	"github.com/guestpass/anonymous/sqlstore"
)

// TestPostgresCartsInTheLinksTransaction: an Update made with a context
// that carries a link's transaction (sqlstore.TxFrom) commits with the
// link, or is rolled back with it.
func TestPostgresCartsInTheLinksTransaction(t *testing.T) {
	ctx := t.Context()
	db := pgtest.Open(t)
	store, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.Postgres, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	carts, err := NewPostgresCarts(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create(ctx, "guest", anonymous.Entry{Value: []byte("v"), Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	addTea := func(c *AccountCart) error {
		if c.Items == nil {
			c.Items = map[string]int{}
		}
		c.Items["tea"]++
		return nil
	}
	link := func(after error) error {
		return store.Transact(ctx, "guest", func(ctx context.Context, cur anonymous.Entry) (anonymous.Entry, error) {
			if _, err := carts.Update(ctx, "alice", addTea); err != nil {
				return anonymous.Entry{}, err
			}
			// Outside the link's transaction, the update is not there yet.
			if c, err := carts.Get(context.Background(), "alice"); err != nil || len(c.Items) != 0 {
				t.Errorf("during the link, outside its transaction, alice's cart is %v (%v); want none yet", c.Items, err)
			}
			return anonymous.Entry{Value: []byte("linked"), Expires: cur.Expires}, after
		})
	}

	failed := errors.New("the link failed after the cart moved")
	if err := link(failed); !errors.Is(err, failed) {
		t.Fatalf("link: %v, want %v", err, failed)
	}
	if c, err := carts.Get(ctx, "alice"); err != nil || len(c.Items) != 0 {
		t.Fatalf("after a rolled-back link alice's cart is %v (%v); want none", c.Items, err)
	}
	if err := link(nil); err != nil {
		t.Fatal(err)
	}
	if c, err := carts.Get(ctx, "alice"); err != nil || !maps.Equal(c.Items, map[string]int{"tea": 1}) {
		t.Fatalf("after the link alice's cart is %v (%v); want one tea", c.Items, err)
	}
}
