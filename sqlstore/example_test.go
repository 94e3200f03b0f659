package sqlstore_test

import (
	"context"
	"database/sql"
	"log"
	"net/http"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/sqlstore"
)

// The application imports its driver; this package imports none:
//
//	import _ "github.com/jackc/pgx/v5/stdlib"
func Example() {
	db, err := sql.Open("pgx", "postgres://app@127.0.0.1:5432/shop")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(20) // idle connections keep their prepared statements
	db.SetConnMaxIdleTime(5 * time.Minute)

	store, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.Postgres})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close() // stops the sweep; before db.Close
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	guests, err := anonymous.New(store, anonymous.Options{})
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe(":8080", guests.Middleware(http.NotFoundHandler())))
}

// On SQLite, every connection needs a busy timeout, so that writers wait
// for each other, and WAL, so that readers do not wait for them: with
// modernc.org/sqlite, in the DSN.
func Example_sqlite() {
	db, err := sql.Open("sqlite", "file:/var/lib/shop/guests.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	store, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.SQLite})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(context.Background()); err != nil {
		log.Fatal(err) // among others, when the DSN lacks the pragmas
	}
}

// On MySQL or MariaDB, with go-sql-driver/mysql. A store of another table,
// whose sweep the application runs itself from a job of its own.
func Example_mysql() {
	db, err := sql.Open("mysql", "app:secret@tcp(127.0.0.1:3306)/shop")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	store, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.MySQL, Table: "shop_guests", SweepInterval: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	deleted, err := store.Sweep(context.Background())
	log.Printf("swept %d expired guests (%v)", deleted, err)
}
