package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL's database/sql driver, "pgx"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/examples/shop/app"
	"github.com/guestpass/anonymous/sqlstore"
)

// openPostgres returns the guest store and the accounts' carts in the
// PostgreSQL database at url, and how to close them: the guests in
// sqlstore's table, the carts in the shop's own, shop_carts, in one pool,
// so that a login moves the cart in the link's transaction. It creates the
// tables unless they exist.
func openPostgres(ctx context.Context, url string) (anonymous.Store, app.Carts, func(), error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("-postgres: %w", err)
	}
	// Idle connections keep their prepared statements.
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(20)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	fail := func(err error) (anonymous.Store, app.Carts, func(), error) {
		db.Close()
		return nil, nil, nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("-postgres: %w", err))
	}
	store, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.Postgres})
	if err != nil {
		return fail(err)
	}
	if err := store.Migrate(ctx); err != nil {
		store.Close()
		return fail(err)
	}
	carts, err := app.NewPostgresCarts(ctx, db)
	if err != nil {
		store.Close()
		return fail(err)
	}
	return store, carts, func() { store.Close(); db.Close() }, nil
}
