package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/guestpass/anonymous/examples/shop/app"
	"github.com/guestpass/anonymous/internal/pgtest"
	"github.com/guestpass/anonymous/sqlstore"
)

// TestRestartOnPostgresKeepsCarts stops and starts the shop on one
// PostgreSQL database with one hash key: a guest's cart survives the
// restart and moves, at login, into the account's row of the shop's own
// table once, with the guest's end; both survive another restart.
func TestRestartOnPostgresKeepsCarts(t *testing.T) {
	u := pgtest.URL(t)
	shop := serve(t, "-addr", "127.0.0.1:0", "-postgres", u, "-hash-key", testKey)
	addr := strings.TrimPrefix(shop.base, "http://")
	restart := func() {
		t.Helper()
		shop.stop()
		shop = serve(t, "-addr", addr, "-postgres", u, "-hash-key", testKey)
	}
	db, err := sql.Open("pgx", u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.Postgres, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	accountCart := func() app.AccountCart {
		t.Helper()
		var v []byte
		if err := db.QueryRow(`SELECT cart FROM shop_carts WHERE account = 'alice'`).Scan(&v); err != nil {
			t.Fatalf("alice's row in shop_carts: %v", err)
		}
		var c app.AccountCart
		if err := json.Unmarshal(v, &c); err != nil {
			t.Fatalf("alice's row in shop_carts is %q: %v", v, err)
		}
		return c
	}
	wantCart(t, "alice's seeded row", accountCart().Items, map[string]int{"mug": 1})

	v := newVisitor(t, shop.base)
	guest := v.get("/").id
	v.add("tea")
	v.add("mug")
	wantCart(t, "the guest's", v.add("tea").cart, map[string]int{"tea": 2, "mug": 1})

	restart()
	p := v.get("/")
	if p.id != guest || p.kind != "Guest" {
		t.Fatalf("after a restart the visitor is %q %s, want guest %s", p.kind, p.id, guest)
	}
	wantCart(t, "the guest's, after a restart", p.cart, map[string]int{"tea": 2, "mug": 1})

	want := map[string]int{"mug": 2, "tea": 2}
	p = v.post("/login", url.Values{"username": {"alice"}, "password": {"wonderland"}})
	if p.id != "alice" || p.kind != "Signed in" {
		t.Fatalf("after signing in the visitor is %q %s, want alice", p.kind, p.id)
	}
	wantCart(t, "alice's, after signing in", p.cart, want)
	if !strings.Contains(p.body, "We moved 3 items from your guest cart") {
		t.Fatalf("no notice of the moved cart:\n%s", p.body)
	}
	c := accountCart()
	wantCart(t, "alice's row", c.Items, want)
	if !slices.Equal(c.Merged, []string{guest}) || c.Notice != "" {
		t.Fatalf("alice's row records merges %q and notice %q, want the guest's once and the notice shown", c.Merged, c.Notice)
	}
	if rec := guestRecord(t, store, guest); rec == nil || rec.LinkedTo != "alice" || len(rec.Data) > 0 {
		t.Fatalf("the linked guest's record is %+v, want one linked to alice, without data", rec)
	}

	restart()
	p = v.get("/")
	if p.id != "alice" {
		t.Fatalf("after another restart the visitor is %q %s, want alice", p.kind, p.id)
	}
	wantCart(t, "alice's, after another restart", p.cart, want)
	wantCart(t, "alice's row, after another restart", accountCart().Items, want)
	if _, err := store.Get(context.Background(), guest); err != nil {
		t.Fatalf("the linked guest's row: %v", err)
	}
}
