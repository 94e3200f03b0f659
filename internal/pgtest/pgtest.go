// Package pgtest connects tests to a real PostgreSQL named by
// ANON_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable),
// through pgx's database/sql driver.
//
// When the server is not there, tests skip with a loud message, unless
// ANON_REQUIRE_SQL=1, which turns the skip into a failure (CI sets it).
// Each test gets a schema of its own, dropped when the test ends, so that
// tests share no table and leave none behind.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

// defaultURL is the server used when ANON_POSTGRES_URL is not set.
const defaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var warned sync.Once

// URL returns the URL of a fresh schema of the test server, which is the
// connections' search_path, so that unqualified tables are created in it.
// The schema and all it holds are dropped when t ends.
func URL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("ANON_POSTGRES_URL")
	if base == "" {
		base = defaultURL
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("pgtest: ANON_POSTGRES_URL: %v", err)
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		msg := fmt.Sprintf("pgtest: PostgreSQL at %s is not available (%v)", u.Redacted(), err)
		if os.Getenv("ANON_REQUIRE_SQL") == "1" {
			t.Fatalf("%s; FAILING because ANON_REQUIRE_SQL=1", msg)
		}
		warned.Do(func() { fmt.Fprintf(os.Stderr, "\n*** %s; SKIPPING the tests that need it ***\n\n", msg) })
		t.Skipf("SKIPPED: %s", msg)
	}
	b := make([]byte, 8)
	rand.Read(b)
	schema := "anon_test_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			t.Errorf("pgtest: %v", err)
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("pgtest: dropping schema %s: %v", schema, err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Open returns a pool on URL(t)'s schema, closed when t ends (before the
// schema is dropped).
func Open(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", URL(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
