package main

import (
	"database/sql"
	"encoding/json"
	"testing"

	"github.com/guestpass/anonymous/examples/shop/app"
	"github.com/guestpass/anonymous/internal/pgtest"
	"github.com/guestpass/anonymous/sqlstore"
)

// TestRestartOnPostgresKeepsCarts: restartKeepsCarts on one PostgreSQL
// database, where an account's cart is a row of the shop's own table,
// shop_carts, and the login moves it in the link's transaction.
func TestRestartOnPostgresKeepsCarts(t *testing.T) {
	u := pgtest.URL(t)
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
	restartKeepsCarts(t, store, func() app.AccountCart {
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
	}, "-postgres", u, "-hash-key", testKey)
}
