// Package sqltest tests package sqlstore against real databases: storetest's
// whole conformance suite, the sweep, Close, raw bytes in the value column, a
// MariaDB deadlock and a PostgreSQL serialization failure that the store must
// retry, the link in the application's transaction (txlink_test.go: commit
// and rollback together, 64 concurrent logins, a guest never stored, and a
// child process SIGKILLed inside the transaction), and benchmarks against
// raw statements on the same *sql.DB.
//
// It is a module of its own, so that the SQL drivers it imports (pgx,
// go-sql-driver/mysql, modernc.org/sqlite) stay out of the anonymous module's
// go.mod: an application that uses memstore or redisstore downloads none of
// them, and one that uses sqlstore picks its own. Run it with:
//
//	cd sqlstore/sqltest && go test -race -count=1 ./...
//
// Environment: ANON_POSTGRES_URL (default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable) and ANON_MYSQL_DSN
// (default root@tcp(127.0.0.1:3306)/test) name the servers; SQLite uses a file
// in the test's temporary folder. Without a server, its tests skip with a loud
// message; ANON_REQUIRE_SQL=1 (CI sets it) turns the skip into a failure. Each
// test creates tables of its own, with a random suffix, and drops them; it
// never touches another table.
//
// The benchmarks compare Store.Get and Store.Update with the raw statements on
// PostgreSQL; bench.sh runs them in interleaved rounds and prints medians.
// BenchmarkLink times a login that links, in a transaction on each database
// and with the guests in Redis.
package sqltest
