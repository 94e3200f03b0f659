package sqlstore

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// pgError has a SQLState method, as pgx's *pgconn.PgError does.
type pgError struct{ code string }

func (e *pgError) Error() string    { return "ERROR (SQLSTATE " + e.code + ")" }
func (e *pgError) SQLState() string { return e.code }

// MySQLError is shaped like go-sql-driver's *mysql.MySQLError.
type MySQLError struct {
	Number   uint16
	SQLState [5]byte
	Message  string
}

func (e *MySQLError) Error() string { return fmt.Sprintf("Error %d: %s", e.Number, e.Message) }

// valueError is a MySQL-shaped error held by value.
type valueError struct{ Number uint16 }

func (e valueError) Error() string { return "value" }

// otherError has a Number of another type.
type otherError struct{ Number int }

func (e otherError) Error() string { return "other" }

// TestRetryable: only a deadlock or a serialization failure, which rolled
// the statement back, is run again, found through wrapping and joins. The
// nested sqltest module checks the real drivers' errors.
func TestRetryable(t *testing.T) {
	deadlock := &MySQLError{Number: 1213, Message: "Deadlock found when trying to get lock"}
	for _, c := range []struct {
		d     Dialect
		err   error
		retry bool
	}{
		{Postgres, &pgError{"40P01"}, true},
		{Postgres, &pgError{"40001"}, true},
		{Postgres, fmt.Errorf("exec: %w", &pgError{"40P01"}), true},
		{Postgres, &pgError{"23505"}, false}, // unique_violation
		{Postgres, &pgError{"57014"}, false}, // query_canceled
		{Postgres, deadlock, false},
		{MySQL, deadlock, true},
		{MySQL, fmt.Errorf("exec: %w", deadlock), true},
		{MySQL, errors.Join(errors.New("first"), deadlock), true},
		{MySQL, valueError{Number: 1213}, true},
		{MySQL, &MySQLError{Number: 1205}, false}, // lock wait timeout: it waited long enough
		{MySQL, &MySQLError{Number: 1062}, false},
		{MySQL, otherError{Number: 1213}, false},
		{MySQL, &pgError{"40P01"}, false},
		{MySQL, (*MySQLError)(nil), false},
		{SQLite, &pgError{"40P01"}, false},
		{SQLite, deadlock, false},
		{Postgres, nil, false},
	} {
		if got := c.d.retryable(c.err); got != c.retry {
			t.Errorf("%v: retryable(%#v) = %v, want %v", c.d, c.err, got, c.retry)
		}
	}
}

// TestSchemaDocumented: docs/sql.md shows, for the default table, the very
// statements Migrate runs.
func TestSchemaDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/sql.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []Dialect{Postgres, MySQL, SQLite} {
		for _, q := range schema(d, defaultTable) {
			if !strings.Contains(string(doc), q+";\n") {
				t.Errorf("docs/sql.md lacks the %v statement\n%s;", d, q)
			}
		}
	}
}
