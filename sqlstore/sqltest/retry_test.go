package sqltest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/sqlstore"
	"github.com/jackc/pgx/v5/pgconn"
)

// The database may roll a statement back to break a deadlock (MariaDB,
// error 1213) or, under REPEATABLE READ, for a row another transaction
// changed meanwhile (PostgreSQL, SQLSTATE 40001). Such a statement changed
// nothing, and the store runs it again. Each test provokes the failure
// twice: first with the store's own UPDATE run by hand, which must fail so
// (the scenario does provoke it), then through Store.Update, which must
// succeed.

// TestRetryDeadlockMySQL: another transaction holds a shared lock on the
// row, the Update queues for an exclusive one, and the other transaction
// then asks for an exclusive lock too: a deadlock, whose victim InnoDB
// picks by weight. The other transaction has written 50 rows, so the
// victim is the Update.
func TestRetryDeadlockMySQL(t *testing.T) {
	db := open(t, sqlstore.MySQL)
	s := newStore(t, db, sqlstore.MySQL, sqlstore.Options{SweepInterval: -1})
	tbl := tableOf(t, s)
	update := "UPDATE " + tbl + " SET value = ?, version = version + 1, expires_at = ?\nWHERE `key` = ? AND version = ? AND expires_at > ?"
	other := func(tx *sql.Tx, key string) error {
		_, err := tx.Exec("UPDATE "+tbl+" SET expires_at = expires_at WHERE `key` = ?", key)
		return err
	}
	lock := func(tx *sql.Tx, key string) {
		for i := range 50 {
			if _, err := tx.Exec("INSERT INTO "+tbl+" (`key`, value, version, expires_at) VALUES (?, 'w', 1, ?)", fmt.Sprintf("weight-%s-%d", key, i), nowMs()+60000); err != nil {
				t.Fatal(err)
			}
		}
		var version int64
		if err := tx.QueryRow("SELECT version FROM "+tbl+" WHERE `key` = ? LOCK IN SHARE MODE", key).Scan(&version); err != nil {
			t.Fatal(err)
		}
	}
	isDeadlock := func(err error) bool {
		var me *mysql.MySQLError
		return errors.As(err, &me) && me.Number == 1213
	}
	retried(t, db, sqlstore.MySQL, s, update, lock, other, isDeadlock)
}

// TestRetrySerializationPostgres: under REPEATABLE READ (the pool's
// default_transaction_isolation), an Update that waited for another
// transaction's change of its row fails with SQLSTATE 40001 once that
// commits.
func TestRetrySerializationPostgres(t *testing.T) {
	db := open(t, sqlstore.Postgres, "default_transaction_isolation=repeatable%20read")
	var level string
	if err := db.QueryRow("SHOW default_transaction_isolation").Scan(&level); err != nil || level != "repeatable read" {
		t.Fatalf("default_transaction_isolation = %q, %v; want repeatable read", level, err)
	}
	s := newStore(t, db, sqlstore.Postgres, sqlstore.Options{SweepInterval: -1})
	tbl := tableOf(t, s)
	update := "UPDATE " + tbl + " SET value = $1, version = version + 1, expires_at = $2\nWHERE \"key\" = $3 AND version = $4 AND expires_at > $5"
	lock := func(tx *sql.Tx, key string) {
		if _, err := tx.Exec("UPDATE "+tbl+` SET expires_at = expires_at WHERE "key" = $1`, key); err != nil {
			t.Fatal(err)
		}
	}
	isSerialization := func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "40001"
	}
	retried(t, db, sqlstore.Postgres, s, update, lock, nil, isSerialization)
}

// retried runs the scenario twice on fresh keys: lock takes the row in a
// transaction, a write waits for it, then other (if any) runs in the
// transaction, which commits. By hand, the write must fail as failure
// says; through the store, succeed.
func retried(t *testing.T, db *sql.DB, d sqlstore.Dialect, s *sqlstore.Store, update string,
	lock func(*sql.Tx, string), other func(*sql.Tx, string) error, failure func(error) bool) {
	ctx := t.Context()
	scenario := func(key string, write func() error) error {
		if err := s.Create(ctx, key, anonymous.Entry{Value: []byte("v1"), Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		lock(tx, key)
		done := make(chan error, 1)
		go func() { done <- write() }()
		waitForLockWait(t, db, d, update[:len("UPDATE ")+len(tableOf(t, s))])
		if other != nil {
			if err := other(tx, key); err != nil {
				t.Fatalf("the other transaction failed (%v): InnoDB picked it as the victim, so the test proves nothing", err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("the write did not return within 30 s of the other transaction's commit")
		}
		return nil
	}
	args := func(key string) []any { return []any{[]byte("v2"), nowMs() + 3600_000, key, 1, nowMs()} }

	err := scenario("by-hand", func() error {
		_, err := db.ExecContext(context.WithoutCancel(ctx), update, args("by-hand")...)
		return err
	})
	if !failure(err) {
		t.Fatalf("the store's UPDATE run by hand returned %v, want the failure the store retries", err)
	}

	err = scenario("store", func() error {
		return s.Update(ctx, "store", anonymous.Entry{Value: []byte("v2"), Version: 1, Expires: time.Now().Add(time.Hour)})
	})
	if err != nil {
		t.Fatalf("Store.Update = %v, want success after a retry", err)
	}
	if e, err := s.Get(ctx, "store"); err != nil || e.Version != 2 || string(e.Value) != "v2" {
		t.Errorf("after the retried Update, Get = %q at version %d, %v; want \"v2\" at version 2", e.Value, e.Version, err)
	}
}
