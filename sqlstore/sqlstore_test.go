package sqlstore_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/sqlstore"
)

// The tests of this file need no database, and the module imports no
// driver: the store runs against a connector that fails every connection,
// so a test fails if the store reaches for the database when it must not.
// The store against real databases: the sqltest module.

type noDatabase struct{}

var errNoDatabase = errors.New("no database here")

func (noDatabase) Connect(context.Context) (driver.Conn, error) { return nil, errNoDatabase }
func (noDatabase) Driver() driver.Driver                        { return nil }

func noDB(t *testing.T) *sql.DB {
	db := sql.OpenDB(noDatabase{})
	t.Cleanup(func() { db.Close() })
	return db
}

func TestNewChecksOptions(t *testing.T) {
	db := noDB(t)
	for _, c := range []struct {
		name string
		db   *sql.DB
		opts sqlstore.Options
		ok   bool
	}{
		{"defaults", db, sqlstore.Options{Dialect: sqlstore.Postgres}, true},
		{"a table of its own", db, sqlstore.Options{Dialect: sqlstore.MySQL, Table: "shop_guests_2"}, true},
		{"48 bytes", db, sqlstore.Options{Dialect: sqlstore.SQLite, Table: strings.Repeat("t", 48)}, true},
		{"no sweep", db, sqlstore.Options{Dialect: sqlstore.SQLite, SweepInterval: -1}, true},
		{"no database", nil, sqlstore.Options{Dialect: sqlstore.Postgres}, false},
		{"no dialect", db, sqlstore.Options{}, false},
		{"unknown dialect", db, sqlstore.Options{Dialect: 4}, false},
		{"upper case", db, sqlstore.Options{Dialect: sqlstore.Postgres, Table: "Guests"}, false},
		{"leading digit", db, sqlstore.Options{Dialect: sqlstore.Postgres, Table: "2guests"}, false},
		{"49 bytes", db, sqlstore.Options{Dialect: sqlstore.Postgres, Table: strings.Repeat("t", 49)}, false},
		{"schema-qualified", db, sqlstore.Options{Dialect: sqlstore.Postgres, Table: "public.guests"}, false},
		{"injection", db, sqlstore.Options{Dialect: sqlstore.MySQL, Table: "g; DROP TABLE users"}, false},
		{"negative batch", db, sqlstore.Options{Dialect: sqlstore.MySQL, SweepBatch: -1}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := sqlstore.New(c.db, c.opts)
			if s != nil {
				defer s.Close()
			}
			if (err == nil) != c.ok {
				t.Errorf("New(%+v) = %v, want ok %v", c.opts, err, c.ok)
			}
		})
	}
}

// TestInvalidKeys: keys no guest has (empty, longer than a column holds,
// not printable ASCII) are refused before the database is asked: a
// column could cut them to another key.
func TestInvalidKeys(t *testing.T) {
	s, err := sqlstore.New(noDB(t), sqlstore.Options{Dialect: sqlstore.MySQL, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	e := anonymous.Entry{Value: []byte("v"), Version: 1, Expires: time.Now().Add(time.Hour)}
	for _, key := range []string{"", strings.Repeat("k", 65), "a\x00", "tab\t", "caf\u00e9", "\x7f"} {
		if _, err := s.Get(ctx, key); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", key, err)
		}
		for name, err := range map[string]error{"Create": s.Create(ctx, key, e), "Update": s.Update(ctx, key, e)} {
			if err == nil || errors.Is(err, errNoDatabase) || errors.Is(err, anonymous.ErrNotFound) {
				t.Errorf("%s(%q) = %v, want an invalid-key error without asking the database", name, key, err)
			}
		}
	}
	// The longest key goes to the database.
	if _, err := s.Get(ctx, strings.Repeat("k", 64)); !errors.Is(err, errNoDatabase) {
		t.Errorf("Get of a 64-byte key = %v, want the database's error", err)
	}
}

// TestDatabaseDown: a database that cannot be reached is an error of the
// store's own, never an answer of the contract.
func TestDatabaseDown(t *testing.T) {
	s, err := sqlstore.New(noDB(t), sqlstore.Options{Dialect: sqlstore.Postgres, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	e := anonymous.Entry{Value: []byte("v"), Version: 1, Expires: time.Now().Add(time.Hour)}
	_, getErr := s.Get(ctx, "k")
	for name, err := range map[string]error{"Get": getErr, "Create": s.Create(ctx, "k", e), "Update": s.Update(ctx, "k", e)} {
		if !errors.Is(err, errNoDatabase) || !strings.HasPrefix(err.Error(), "sqlstore: ") {
			t.Errorf("%s with the database down = %v, want a sqlstore error wrapping the driver's", name, err)
		}
	}
}

// handler keeps the messages of the records it is handed.
type handler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *handler) Enabled(context.Context, slog.Level) bool { return true }
func (h *handler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *handler) WithGroup(string) slog.Handler            { return h }
func (h *handler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}

func (h *handler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// TestSweepFailuresLogged: the background sweep reports its failures to
// ErrorLog, and Close stops it: no failure is logged after Close returns.
// Methods called after Close answer ErrClosed.
func TestSweepFailuresLogged(t *testing.T) {
	h := &handler{}
	s, err := sqlstore.New(noDB(t), sqlstore.Options{Dialect: sqlstore.SQLite, SweepInterval: time.Millisecond, ErrorLog: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	const msg = "sqlstore: background sweep failed"
	for deadline := time.Now().Add(10 * time.Second); h.count(msg) < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no sweep failure logged in 10 s")
		}
	}
	s.Close()
	n := h.count(msg)
	time.Sleep(50 * time.Millisecond) // fifty intervals
	if got := h.count(msg); got != n {
		t.Errorf("%d sweep failures logged after Close returned", got-n)
	}
	if err := s.Create(t.Context(), "k", anonymous.Entry{}); !errors.Is(err, sqlstore.ErrClosed) {
		t.Errorf("Create after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("a second Close = %v", err)
	}
}
