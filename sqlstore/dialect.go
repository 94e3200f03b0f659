package sqlstore

import (
	"fmt"
	"strings"
)

// Dialect is a database's flavour of SQL. The zero value is no dialect:
// New asks for one.
type Dialect int

// The dialects a Store speaks.
const (
	// Postgres is PostgreSQL 9.5 or newer (tested on 15), through a driver
	// such as pgx's github.com/jackc/pgx/v5/stdlib.
	Postgres Dialect = iota + 1
	// MySQL is MariaDB (tested on 10.11) and MySQL, with InnoDB, through
	// github.com/go-sql-driver/mysql.
	MySQL
	// SQLite is SQLite 3.37 or newer (STRICT tables), through a driver
	// such as modernc.org/sqlite, on a file in WAL mode with a busy timeout
	// (see Store.Migrate).
	SQLite
)

// String returns the dialect's name.
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "Postgres"
	case MySQL:
		return "MySQL"
	case SQLite:
		return "SQLite"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

// Statements, by index into queries.
const (
	qCreate = iota // arguments: key, value, expires_at, now
	qGet           // key
	qUpdate        // value, expires_at, key, version, now
	qLive          // key, now: a row when the key holds a live entry
	qSweep         // now, limit
	qLock          // key: Get's row, locked for Transact
	qTouch         // key: SQLite's first write of a Transact
	nQueries
)

// queries returns the dialect's statements on table t, which New checked
// to be a plain lower-case identifier, so it needs no quoting. Column
// "key", a reserved word in MySQL, is quoted everywhere.
//
// Create replaces an expired row, never a live one, in one statement:
//
//   - PostgreSQL and SQLite: INSERT … ON CONFLICT DO UPDATE … WHERE the
//     existing row has expired; it affects one row, or none when the key
//     is live (ErrExists).
//   - MySQL: INSERT … ON DUPLICATE KEY UPDATE, whose assignments keep the
//     row as it is unless it has expired. MySQL assigns from left to right,
//     so expires_at comes last: the conditions before it read the old one.
//     Rows affected cannot tell a live key from an insert under the DSN
//     option clientFoundRows=true, so the statement says which it was
//     itself: LAST_INSERT_ID(2) when it replaced an expired row,
//     LAST_INSERT_ID(1) when it left a live one alone, and nothing (0)
//     when it inserted; the result's LastInsertId is that number.
//
// The sweep deletes a batch of expired rows. On PostgreSQL its outer
// condition repeats the expiry, so that a row a Create revived after the
// subquery chose it is rechecked (READ COMMITTED re-evaluates the DELETE's
// own conditions on the newest row, not the subquery) and kept. MySQL
// re-reads the row it locks; SQLite's one writer runs the whole statement
// alone.
func queries(d Dialect, t string) [nQueries]string {
	var q [nQueries]string
	switch d {
	case Postgres:
		q[qCreate] = `INSERT INTO ` + t + ` AS cur ("key", value, version, expires_at) VALUES ($1, $2, 1, $3)
ON CONFLICT ("key") DO UPDATE SET value = EXCLUDED.value, version = 1, expires_at = EXCLUDED.expires_at
WHERE cur.expires_at <= $4`
		q[qGet] = `SELECT value, version, expires_at FROM ` + t + ` WHERE "key" = $1`
		q[qUpdate] = `UPDATE ` + t + ` SET value = $1, version = version + 1, expires_at = $2
WHERE "key" = $3 AND version = $4 AND expires_at > $5`
		q[qLive] = `SELECT 1 FROM ` + t + ` WHERE "key" = $1 AND expires_at > $2`
		q[qSweep] = `DELETE FROM ` + t + ` WHERE "key" IN (SELECT "key" FROM ` + t + ` WHERE expires_at <= $1 LIMIT $2)
AND expires_at <= $1`
		q[qLock] = q[qGet] + ` FOR UPDATE NOWAIT`
	case MySQL:
		q[qCreate] = "INSERT INTO " + t + " (`key`, value, version, expires_at) VALUES (?, ?, 1, ?)\n" +
			"ON DUPLICATE KEY UPDATE value = IF(expires_at <= ?, VALUES(value), value),\n" +
			"version = IF(expires_at <= ?, 1, version),\n" +
			"expires_at = IF(LAST_INSERT_ID(IF(expires_at <= ?, 2, 1)) = 2, VALUES(expires_at), expires_at)"
		q[qGet] = "SELECT value, version, expires_at FROM " + t + " WHERE `key` = ?"
		q[qUpdate] = "UPDATE " + t + " SET value = ?, version = version + 1, expires_at = ?\n" +
			"WHERE `key` = ? AND version = ? AND expires_at > ?"
		q[qLive] = "SELECT 1 FROM " + t + " WHERE `key` = ? AND expires_at > ?"
		q[qSweep] = "DELETE FROM " + t + " WHERE expires_at <= ? ORDER BY expires_at, `key` LIMIT ?"
		q[qLock] = q[qGet] + " FOR UPDATE NOWAIT"
	case SQLite:
		q[qCreate] = `INSERT INTO ` + t + ` AS cur ("key", value, version, expires_at) VALUES (?, ?, 1, ?)
ON CONFLICT ("key") DO UPDATE SET value = excluded.value, version = 1, expires_at = excluded.expires_at
WHERE cur.expires_at <= ?`
		q[qGet] = `SELECT value, version, expires_at FROM ` + t + ` WHERE "key" = ?`
		q[qUpdate] = `UPDATE ` + t + ` SET value = ?, version = version + 1, expires_at = ?
WHERE "key" = ? AND version = ? AND expires_at > ?`
		q[qLive] = `SELECT 1 FROM ` + t + ` WHERE "key" = ? AND expires_at > ?`
		q[qSweep] = `DELETE FROM ` + t + ` WHERE "key" IN (SELECT "key" FROM ` + t + ` WHERE expires_at <= ? LIMIT ?)`
		// SQLite has no row locks: the write lock serialises links.
		q[qLock] = q[qGet]
		q[qTouch] = `UPDATE ` + t + ` SET version = version WHERE "key" = ?`
	}
	return q
}

// createArgs are qCreate's arguments: MySQL names now three times.
func (d Dialect) createArgs(key string, value []byte, expires, now int64) []any {
	if d == MySQL {
		return []any{key, value, expires, now, now, now}
	}
	return []any{key, value, expires, now}
}

// schema returns the statements that create table t and its index on
// expires_at, if they do not exist. Keys compare byte for byte, case and
// trailing spaces included: text with collation "C" on PostgreSQL,
// VARBINARY on MySQL (a VARCHAR's PAD SPACE collations take "a" and "a "
// for one key), TEXT with SQLite's default BINARY collation.
func schema(d Dialect, t string) []string {
	index := "CREATE INDEX IF NOT EXISTS " + t + "_expires_at ON " + t + " (expires_at)"
	switch d {
	case Postgres:
		return []string{
			`CREATE TABLE IF NOT EXISTS ` + t + ` (
	"key" text COLLATE "C" PRIMARY KEY,
	value bytea NOT NULL,
	version bigint NOT NULL,
	expires_at bigint NOT NULL
)`,
			index,
		}
	case MySQL:
		return []string{
			"CREATE TABLE IF NOT EXISTS " + t + ` (
	` + "`key`" + ` VARBINARY(64) NOT NULL PRIMARY KEY,
	value LONGBLOB NOT NULL,
	version BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	INDEX ` + t + `_expires_at (expires_at)
) ENGINE = InnoDB`,
		}
	case SQLite:
		return []string{
			`CREATE TABLE IF NOT EXISTS ` + t + ` (
	"key" TEXT NOT NULL PRIMARY KEY,
	value BLOB NOT NULL,
	version INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT`,
			index,
		}
	}
	return nil
}

// maxTable is the longest table name New takes: PostgreSQL truncates
// identifiers past 63 bytes, and the index adds "_expires_at".
const maxTable = 48

// validTable reports whether t is a plain lower-case identifier, which
// needs no quoting and means the same table in every dialect (PostgreSQL
// folds unquoted names to lower case; MySQL may compare them by case).
func validTable(t string) bool {
	if t == "" || len(t) > maxTable || strings.IndexByte("0123456789", t[0]) >= 0 {
		return false
	}
	for i := range len(t) {
		if c := t[i]; c != '_' && (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
