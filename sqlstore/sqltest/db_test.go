package sqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/guestpass/anonymous/sqlstore"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

// The servers the tests use when the environment names none.
const (
	defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/test"
)

// sqliteDSN is the options every SQLite connection needs: a busy timeout,
// so that writers wait for each other, and WAL, so that readers do not
// wait for writers.
const sqliteDSN = "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"

// required reports whether ANON_REQUIRE_SQL=1, under which a missing server
// fails the test instead of skipping it.
func required() bool { return os.Getenv("ANON_REQUIRE_SQL") == "1" }

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

var warned sync.Map // the servers already shouted about, once per process

// unavailable skips t, or fails it under ANON_REQUIRE_SQL=1, and says why
// on stderr once, so that it shows without -v.
func unavailable(t testing.TB, what string, err error) {
	t.Helper()
	msg := fmt.Sprintf("sqltest: %s is not available (%v)", what, err)
	if required() {
		t.Fatalf("%s; FAILING because ANON_REQUIRE_SQL=1", msg)
	}
	if _, seen := warned.LoadOrStore(what, true); !seen {
		fmt.Fprintf(os.Stderr, "\n*** %s; SKIPPING the tests that need it ***\n\n", msg)
	}
	t.Skipf("SKIPPED: %s", msg)
}

// dialects are the databases every test runs on.
var dialects = []sqlstore.Dialect{sqlstore.Postgres, sqlstore.MySQL, sqlstore.SQLite}

// open returns a pool of d's test database, closed when the test ends, or
// skips (fails under ANON_REQUIRE_SQL=1) when the server does not answer.
// The DSN gets the extra parameters in params.
func open(t testing.TB, d sqlstore.Dialect, params ...string) *sql.DB {
	t.Helper()
	var driver, dsn, what string
	switch d {
	case sqlstore.Postgres:
		driver, dsn = "pgx", env("ANON_POSTGRES_URL", defaultPostgresURL)
		what = "PostgreSQL at " + redact(dsn)
	case sqlstore.MySQL:
		driver, dsn = "mysql", env("ANON_MYSQL_DSN", defaultMySQLDSN)
		what = "MySQL at " + dsn[strings.Index(dsn, "@")+1:]
	case sqlstore.SQLite:
		driver, dsn = "sqlite", "file:"+filepath.Join(t.TempDir(), "guests.db")+sqliteDSN
		what = "SQLite"
	}
	if len(params) > 0 {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		dsn += sep + strings.Join(params, "&")
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("sql.Open(%q): %v", driver, err)
	}
	// Below the servers' connection limits (PostgreSQL's default is 100),
	// with parallel subtests and their racers; idle connections are kept,
	// so that prepared statements are.
	db.SetMaxOpenConns(24)
	db.SetMaxIdleConns(24)
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		unavailable(t, what, err)
	}
	return db
}

// redact drops a URL's password.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

// table returns a fresh table name, "anon_test_" and 16 random hex digits.
func table() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "anon_test_" + hex.EncodeToString(b)
}

// newStore returns a Store of its own table in db, migrated, closed and
// dropped when the test ends. opts.Dialect and opts.Table are set here.
func newStore(t testing.TB, db *sql.DB, d sqlstore.Dialect, opts sqlstore.Options) *sqlstore.Store {
	t.Helper()
	opts.Dialect, opts.Table = d, table()
	s, err := sqlstore.New(db, opts)
	if err != nil {
		t.Fatalf("sqlstore.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Dropped even when Migrate fails half-way; registered first, so that
	// it runs after Close.
	t.Cleanup(func() { drop(t, db, d, opts.Table) })
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// drop drops table t, and with it its index.
func drop(t testing.TB, db *sql.DB, d sqlstore.Dialect, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+name); err != nil {
		t.Errorf("dropping %s on %v: %v", name, d, err)
	}
}

// quoteKey is the dialect's spelling of the column "key", a reserved word
// in MySQL.
func quoteKey(d sqlstore.Dialect) string {
	if d == sqlstore.MySQL {
		return "`key`"
	}
	return `"key"`
}

// placeholders returns n of the dialect's placeholders, from $1 or ?.
func placeholders(d sqlstore.Dialect, n int) []string {
	p := make([]string, n)
	for i := range p {
		if d == sqlstore.Postgres {
			p[i] = fmt.Sprintf("$%d", i+1)
		} else {
			p[i] = "?"
		}
	}
	return p
}

// insertRows inserts n rows under keys prefix+i, expiring at expires (Unix
// ms), straight into the table.
func insertRows(t testing.TB, db *sql.DB, d sqlstore.Dialect, tbl, prefix string, n int, expires int64) {
	t.Helper()
	p := placeholders(d, 3)
	q := fmt.Sprintf("INSERT INTO %s (%s, value, version, expires_at) VALUES (%s, %s, 1, %s)", tbl, quoteKey(d), p[0], p[1], p[2])
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for i := range n {
		if _, err := tx.Exec(q, fmt.Sprintf("%s%d", prefix, i), []byte("v"), expires); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// count returns how many rows of tbl have keys starting with prefix.
func count(t testing.TB, db *sql.DB, d sqlstore.Dialect, tbl, prefix string) int {
	t.Helper()
	var n int
	q := fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE %s LIKE %s", tbl, quoteKey(d), placeholders(d, 1)[0])
	if err := db.QueryRow(q, prefix+"%").Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}
