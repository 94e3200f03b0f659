package sqlstore

import (
	"context"
	"fmt"
	"strings"
)

// Schema returns the statements that create the store's table and its
// index on expires_at, if they do not exist: what Migrate runs, for a
// migration tool of your own. docs/sql.md shows them for the default
// table.
func (s *Store) Schema() []string { return schema(s.dialect, s.table) }

// Migrate creates the store's table and its index if they do not exist
// (the statements of Schema), and on SQLite checks that the connections
// have what concurrent use needs: WAL and a busy timeout (see docs/sql.md).
// It is safe to run on every start; run it from one process at a time, as
// PostgreSQL may refuse two concurrent CREATE TABLE IF NOT EXISTS of one
// table.
func (s *Store) Migrate(ctx context.Context) error {
	for _, q := range s.Schema() {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("sqlstore: migrate %s: %w", s.table, err)
		}
	}
	if s.dialect == SQLite {
		return s.checkSQLite(ctx)
	}
	return nil
}

// checkSQLite checks a connection's journal mode and busy timeout, which
// the DSN sets for each (modernc.org/sqlite:
// ?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)). Without a busy
// timeout, a write that meets another fails at once with SQLITE_BUSY.
func (s *Store) checkSQLite(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: migrate %s: %w", s.table, err)
	}
	defer conn.Close()
	var mode string
	var busy int64
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("sqlstore: migrate %s: reading journal_mode: %w", s.table, err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
		return fmt.Errorf("sqlstore: migrate %s: reading busy_timeout: %w", s.table, err)
	}
	if !strings.EqualFold(mode, "wal") || busy <= 0 {
		return fmt.Errorf("sqlstore: SQLite needs journal_mode WAL and a busy_timeout on every connection, set in the DSN; this one has journal_mode %s and busy_timeout %d ms (modernc.org/sqlite: ?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL))", mode, busy)
	}
	return nil
}
