package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"time"
)

// retries is how many times a statement that the database rolled back to
// break a deadlock, or for a serialization failure, is run again. Such a
// statement changed nothing, so running it again is safe; InnoDB picks
// one of the statements that deadlock on a key (concurrent Creates of
// one new key can) and the others go on.
const retries = 4

// retryable reports whether err says that the database rolled the
// statement back to break a deadlock or for a serialization failure.
//
// The store imports no driver, so it reads the drivers' errors through
// what they expose: PostgreSQL's SQLSTATE through a SQLState method (pgx's
// *pgconn.PgError has one), and MySQL's error number through the Number
// field of go-sql-driver's *mysql.MySQLError, which has no method for it.
// SQLite needs none: with a busy timeout its writers wait for each other,
// and a single writer never deadlocks.
func (d Dialect) retryable(err error) bool {
	switch d {
	case Postgres:
		var e interface{ SQLState() string }
		if errors.As(err, &e) {
			switch e.SQLState() {
			case "40001", "40P01": // serialization_failure, deadlock_detected
				return true
			}
		}
	case MySQL:
		n, ok := errorNumber(err)
		return ok && n == 1213 // ER_LOCK_DEADLOCK
	}
	return false
}

// errorNumber returns the MySQL error number in err's tree: the uint16
// field Number of a struct (or pointer to one), as go-sql-driver's
// MySQLError has it.
func errorNumber(err error) (uint16, bool) {
	if n, ok := numberField(err); ok {
		return n, true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return errorNumber(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if n, ok := errorNumber(e); ok {
				return n, true
			}
		}
	}
	return 0, false
}

// numberField returns err's own Number field, if it is a uint16.
func numberField(err error) (uint16, bool) {
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return 0, false
	}
	f := v.FieldByName("Number")
	if !f.IsValid() || f.Kind() != reflect.Uint16 {
		return 0, false
	}
	return uint16(f.Uint()), true
}

// retry runs f, and runs it again, up to retries times, while it fails
// with an error the dialect says is safe to retry. It waits a few random
// milliseconds in between, doubling, so that the statements that met do
// not meet again at once.
func (s *Store) retry(ctx context.Context, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil || attempt == retries || !s.dialect.retryable(err) {
			return err
		}
		t := time.NewTimer(time.Millisecond + rand.N(time.Millisecond<<attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// failed wraps a failed call's error, and the context's too when it is
// done (a driver may report a cut connection rather than the deadline), so
// that errors.Is(err, context.DeadlineExceeded) holds for a call the
// caller's deadline cut short.
func failed(ctx context.Context, op, key string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("sqlstore: %s %s: %w: %w", op, key, cerr, err)
	}
	return fmt.Errorf("sqlstore: %s %s: %w", op, key, err)
}
