// Package sqlstore is an anonymous.Store on a SQL table, through
// database/sql: PostgreSQL, MySQL or MariaDB, or SQLite. It imports no
// driver: the application imports the one it uses (pgx's
// github.com/jackc/pgx/v5/stdlib, github.com/go-sql-driver/mysql,
// modernc.org/sqlite) and hands the Store its *sql.DB.
//
//	import _ "github.com/jackc/pgx/v5/stdlib"
//
//	db, err := sql.Open("pgx", "postgres://app@db.internal:5432/shop")
//	if err != nil {
//		log.Fatal(err)
//	}
//	db.SetMaxOpenConns(20)
//	db.SetMaxIdleConns(20) // keep connections, and their prepared statements
//	store, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.Postgres})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer store.Close() // before db.Close
//	if err := store.Migrate(ctx); err != nil { // or run store.Schema() yourself
//		log.Fatal(err)
//	}
//	guests, err := anonymous.New(store, anonymous.Options{Keys: keys})
//
// # The table
//
// One row per entry, in one table (Options.Table, default
// "anonymous_guests"), with an index on expires_at:
//
//	key         the guest's id, compared byte for byte (primary key)
//	value       the package's record, opaque bytes
//	version     1 on Create, one more on each Update
//	expires_at  the entry's expiry, in Unix milliseconds
//
// Expiry is judged by the application's clock, which every statement passes
// as a parameter, never by the database's: a row whose expires_at has come
// is gone for every method, swept or not, so the application's instances
// must keep their clocks in step (NTP) and nothing needs a database job.
// docs/sql.md has the table's definition for each database, set-up
// (DSNs, pools, SQLite's WAL and busy timeout), and measurements.
//
// # Statements
//
// Each method is one statement, prepared once per connection, so one
// round trip; Update takes a second statement only when it changed nothing,
// to tell ErrConflict from ErrNotFound.
//
//   - Get: SELECT value, version, expires_at … WHERE key = ?, whose expiry
//     is checked when the row is in hand.
//   - Create: an INSERT that replaces an expired row but not a live one,
//     atomically: ON CONFLICT … DO UPDATE … WHERE expired on PostgreSQL and
//     SQLite; ON DUPLICATE KEY UPDATE with assignments that keep a live row
//     as it is on MySQL, reporting which it did through LAST_INSERT_ID.
//   - Update: UPDATE … SET value, version = version + 1, expires_at WHERE
//     key = ? AND version = ? AND expires_at > now.
//
// A statement the database rolled back to break a deadlock (MySQL error
// 1213) or for a serialization failure (PostgreSQL SQLSTATE 40001, 40P01)
// changed nothing and is run again, up to four times. The store reads those
// codes without importing a driver: through a SQLState method (pgx) and the
// Number field of go-sql-driver's MySQLError.
//
// # The link in the application's transaction
//
// Store is an anonymous.TxStore: the Manager links a stored guest in one
// transaction of the Store's *sql.DB (Store.Transact), in which
// OnLinkAccount makes its writes through TxFrom(ctx). The application's
// rows and the guest's end commit together or not at all, with no claim
// and no lease; a process that dies in the callback leaves a transaction
// the server rolls back. The application's tables must be in the same
// database, and the callback must use only that transaction:
//
//	OnLinkAccount: func(ctx context.Context, l anonymous.LinkEvent) error {
//		_, err := sqlstore.TxFrom(ctx).ExecContext(ctx,
//			"UPDATE carts SET owner = $1 WHERE owner = $2",
//			l.NewUser.User.ID, l.AnonymousUser.User.ID)
//		return err
//	},
//
// docs/sql.md tells how each database locks the row, and the server
// settings that bound a lock a vanished host leaves.
//
// # Sweeping
//
// A background goroutine deletes expired rows every Options.SweepInterval
// (default a minute), Options.SweepBatch rows (default 500) per statement,
// so that guests who never come back do not pile up. Close stops it.
// Options.SweepInterval < 0 turns it off; Sweep runs one by hand.
package sqlstore
