package app

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/guestpass/anonymous/sqlstore"
)

// cartsSchema is the shop's own table of accounts' carts in PostgreSQL:
// one row per account, its cart as JSON.
const cartsSchema = `CREATE TABLE IF NOT EXISTS shop_carts (
	account TEXT PRIMARY KEY,
	cart    JSONB NOT NULL
)`

// PostgresCarts is Carts in the shop's own PostgreSQL table, shop_carts,
// in the database that also holds the guests (sqlstore). An Update made
// in OnLinkAccount runs in the link's transaction (sqlstore.TxFrom): the
// cart's move and the guest's end commit together, or neither does.
// Create it with NewPostgresCarts.
type PostgresCarts struct {
	db *sql.DB
}

// NewPostgresCarts creates the shop_carts table in db unless it exists and
// returns Carts on it. The caller keeps owning db.
func NewPostgresCarts(ctx context.Context, db *sql.DB) (*PostgresCarts, error) {
	if _, err := db.ExecContext(ctx, cartsSchema); err != nil {
		return nil, fmt.Errorf("shop: creating shop_carts: %w", err)
	}
	return &PostgresCarts{db: db}, nil
}

// querier is what an *sql.DB and an *sql.Tx have in common here.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// readCart reads the account's cart with q; lock takes its row's lock
// until the transaction ends.
func readCart(ctx context.Context, q querier, account string, lock bool) (AccountCart, error) {
	query := `SELECT cart FROM shop_carts WHERE account = $1`
	if lock {
		query += ` FOR UPDATE`
	}
	var v []byte
	switch err := q.QueryRowContext(ctx, query, account).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		return AccountCart{}, nil
	case err != nil:
		return AccountCart{}, fmt.Errorf("shop: reading the cart of %s: %w", account, err)
	}
	return decodeCart(account, string(v))
}

// Get reads the account's cart.
func (s *PostgresCarts) Get(ctx context.Context, account string) (AccountCart, error) {
	return readCart(ctx, s.db, account, false)
}

// Update locks the account's row, calls fn and writes its cart, in the
// link's transaction when ctx carries one (sqlstore.TxFrom), else in a
// transaction of its own. A row lock, not a retry, orders concurrent
// updates.
func (s *PostgresCarts) Update(ctx context.Context, account string, fn func(c *AccountCart) error) (AccountCart, error) {
	if tx := sqlstore.TxFrom(ctx); tx != nil {
		return updateCart(ctx, tx, account, fn)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return AccountCart{}, fmt.Errorf("shop: updating the cart of %s: %w", account, err)
	}
	defer tx.Rollback() // a no-op once committed
	c, err := updateCart(ctx, tx, account, fn)
	if err != nil {
		return AccountCart{}, err
	}
	if err := tx.Commit(); err != nil {
		return AccountCart{}, fmt.Errorf("shop: updating the cart of %s: %w", account, err)
	}
	return c, nil
}

// updateCart is Update in tx. The account's row is created first, so that
// there is a row to lock even for an account's first cart.
func updateCart(ctx context.Context, tx querier, account string, fn func(c *AccountCart) error) (AccountCart, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO shop_carts (account, cart) VALUES ($1, '{}') ON CONFLICT (account) DO NOTHING`, account)
	if err != nil {
		return AccountCart{}, fmt.Errorf("shop: updating the cart of %s: %w", account, err)
	}
	created, _ := res.RowsAffected()
	cur, err := readCart(ctx, tx, account, true)
	if err != nil {
		return AccountCart{}, err
	}
	next := cur.clone()
	switch err := fn(&next); {
	case errors.Is(err, ErrNoChange) && created == 1:
		// Nothing written, the row above included: Seed still finds no cart.
		if _, err := tx.ExecContext(ctx, `DELETE FROM shop_carts WHERE account = $1`, account); err != nil {
			return AccountCart{}, fmt.Errorf("shop: updating the cart of %s: %w", account, err)
		}
		return cur, nil
	case errors.Is(err, ErrNoChange):
		return cur, nil
	case err != nil:
		return AccountCart{}, err
	}
	b, err := json.Marshal(next)
	if err != nil {
		return AccountCart{}, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE shop_carts SET cart = $2 WHERE account = $1`, account, string(b)); err != nil {
		return AccountCart{}, fmt.Errorf("shop: updating the cart of %s: %w", account, err)
	}
	return next, nil
}

// Seed inserts c unless the account has a row.
func (s *PostgresCarts) Seed(ctx context.Context, account string, c AccountCart) (bool, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return false, err
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO shop_carts (account, cart) VALUES ($1, $2) ON CONFLICT (account) DO NOTHING`, account, string(b))
	if err != nil {
		return false, fmt.Errorf("shop: seeding the cart of %s: %w", account, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
