package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/guestpass/anonymous"
)

var _ anonymous.TxStore = (*Store)(nil)

// txKey is the context key of the transaction Transact runs.
type txKey struct{}

// TxFrom returns the transaction of the link that ctx belongs to: the one
// in which OnLinkAccount must make its writes, so that they commit with
// the guest's end or not at all. It returns nil for any other context.
// The transaction is the store's: do not commit or roll it back.
func TxFrom(ctx context.Context) *sql.Tx {
	tx, _ := ctx.Value(txKey{}).(*sql.Tx)
	return tx
}

// Transact runs a link in one transaction of the store's *sql.DB (see
// anonymous.TxStore and docs/sql.md). It locks key's row, without waiting
// on PostgreSQL and MySQL (SELECT … FOR UPDATE NOWAIT: a row another
// transaction holds is anonymous.ErrClaimed); SQLite has a single writer,
// so its transaction starts with a write that takes the database's write
// lock, waiting for another writer up to the busy timeout. Then it calls
// fn with a context that carries the transaction (TxFrom) and the entry,
// writes fn's entry as the next version, and commits. fn's error rolls the
// transaction back and is returned as it is. ctx bounds the whole
// transaction: database/sql rolls it back when ctx ends.
func (s *Store) Transact(ctx context.Context, key string, fn func(ctx context.Context, cur anonymous.Entry) (anonymous.Entry, error)) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlstore: transact: %w", err)
	}
	if !validKey(key) {
		return anonymous.ErrNotFound
	}
	s.prepare.Lock()
	closed := s.closed
	s.prepare.Unlock()
	if closed {
		return ErrClosed
	}
	// Prepared before the transaction takes its connection: preparing
	// takes one of the pool's, which a pool whose every connection is in a
	// Transact would wait for until the transactions' deadline.
	for _, q := range s.txQueries() {
		if _, err := s.stmt(ctx, q); err != nil {
			return failed(ctx, "transact", key, err)
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return failed(ctx, "transact", key, err)
	}
	defer tx.Rollback() // a no-op once committed
	cur, err := s.lock(ctx, tx, key)
	if err != nil {
		return err
	}
	next, err := fn(context.WithValue(ctx, txKey{}, tx), cur)
	if err != nil {
		return err
	}
	update, err := s.txStmt(ctx, tx, qUpdate)
	if err != nil {
		return failed(ctx, "transact", key, err)
	}
	res, err := update.ExecContext(ctx, bytesOf(next.Value), next.Expires.UnixMilli(), key, int64(cur.Version), time.Now().UnixMilli())
	if err != nil {
		return failed(ctx, "transact", key, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		// The row is locked: only an expiry during fn can have moved it.
		return fmt.Errorf("sqlstore: transact %s: %w (%d rows, %v)", key, anonymous.ErrNotFound, n, err)
	}
	if err := tx.Commit(); err != nil {
		return failed(ctx, "transact", key, err)
	}
	return nil
}

// lock reads and locks key's row in tx: ErrClaimed when another
// transaction holds it, ErrNotFound when there is none or it has expired.
func (s *Store) lock(ctx context.Context, tx *sql.Tx, key string) (anonymous.Entry, error) {
	if s.dialect == SQLite {
		// A write first: the transaction takes the write lock now, not at
		// its first write after reads (which WAL may refuse at once,
		// SQLITE_BUSY_SNAPSHOT, when another writer committed meanwhile).
		touch, err := s.txStmt(ctx, tx, qTouch)
		if err == nil {
			_, err = touch.ExecContext(ctx, key)
		}
		if err != nil {
			return anonymous.Entry{}, failed(ctx, "transact", key, err)
		}
	}
	lock, err := s.txStmt(ctx, tx, qLock)
	if err != nil {
		return anonymous.Entry{}, failed(ctx, "transact", key, err)
	}
	var (
		value            []byte
		version, expires int64
	)
	switch err := lock.QueryRowContext(ctx, key).Scan(&value, &version, &expires); {
	case errors.Is(err, sql.ErrNoRows):
		return anonymous.Entry{}, anonymous.ErrNotFound
	case s.dialect.lockNotAvailable(err):
		return anonymous.Entry{}, fmt.Errorf("sqlstore: transact %s: %w: %w", key, anonymous.ErrClaimed, err)
	case err != nil:
		return anonymous.Entry{}, failed(ctx, "transact", key, err)
	}
	return liveEntry(value, version, expires)
}

// txQueries are the statements of a Transact.
func (s *Store) txQueries() []int {
	if s.dialect == SQLite {
		return []int{qTouch, qLock, qUpdate}
	}
	return []int{qLock, qUpdate}
}

// txStmt returns statement q for tx: the store's prepared statement, which
// database/sql prepares once per connection, so that each is one round
// trip also on MySQL.
func (s *Store) txStmt(ctx context.Context, tx *sql.Tx, q int) (*sql.Stmt, error) {
	st, err := s.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return tx.StmtContext(ctx, st), nil
}

// lockNotAvailable reports whether err says that a NOWAIT lock found the
// row held: PostgreSQL's SQLSTATE 55P03 (lock_not_available); MariaDB's
// 1205 (ER_LOCK_WAIT_TIMEOUT, what its NOWAIT answers) or MySQL 8's 3572
// (ER_LOCK_NOWAIT).
func (d Dialect) lockNotAvailable(err error) bool {
	if err == nil {
		return false
	}
	switch d {
	case Postgres:
		var e interface{ SQLState() string }
		return errors.As(err, &e) && e.SQLState() == "55P03"
	case MySQL:
		n, ok := errorNumber(err)
		return ok && (n == 1205 || n == 3572)
	}
	return false
}
