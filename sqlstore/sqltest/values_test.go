package sqltest

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/sqlstore"
)

// TestValuesAsTheyAre: the value column holds the entry's bytes themselves,
// not an encoding of them, whatever they are (every byte value, 64 KiB), so
// that what other tools read is what the package wrote; and Get returns
// them whole, after an Update too. Expiry is kept in Unix milliseconds.
func TestValuesAsTheyAre(t *testing.T) {
	every := make([]byte, 256)
	for i := range every {
		every[i] = byte(i)
	}
	large := make([]byte, 64<<10)
	rand.Read(large)
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			db := open(t, d)
			s := newStore(t, db, d, sqlstore.Options{SweepInterval: -1})
			exp := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
			for i, v := range [][]byte{every, large, bytes.Repeat([]byte{0}, 300), {}} {
				key := fmt.Sprintf("value-%d", i)
				if err := s.Create(t.Context(), key, anonymous.Entry{Value: v, Expires: exp}); err != nil {
					t.Fatal(err)
				}
				raw(t, db, d, tableOf(t, s), key, v, 1, exp)
				next := append(bytes.Clone(v), 0xff, 0)
				if err := s.Update(t.Context(), key, anonymous.Entry{Value: next, Version: 1, Expires: exp.Add(time.Millisecond)}); err != nil {
					t.Fatal(err)
				}
				raw(t, db, d, tableOf(t, s), key, next, 2, exp.Add(time.Millisecond))
				e, err := s.Get(t.Context(), key)
				if err != nil || !bytes.Equal(e.Value, next) || e.Version != 2 || !e.Expires.Equal(exp.Add(time.Millisecond)) {
					t.Errorf("Get(%s) = %d bytes at version %d expiring %v (%v); want the %d bytes written, version 2, expiring %v",
						key, len(e.Value), e.Version, e.Expires, err, len(next), exp.Add(time.Millisecond))
				}
			}
		})
	}
}

// raw checks the row under key, read with SQL of the test's own.
func raw(t *testing.T, db *sql.DB, d sqlstore.Dialect, tbl, key string, value []byte, version int64, expires time.Time) {
	t.Helper()
	var (
		got      []byte
		ver, exp int64
	)
	q := fmt.Sprintf("SELECT value, version, expires_at FROM %s WHERE %s = %s", tbl, quoteKey(d), placeholders(d, 1)[0])
	if err := db.QueryRow(q, key).Scan(&got, &ver, &exp); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if !bytes.Equal(got, value) || ver != version || exp != expires.UnixMilli() {
		t.Errorf("row %s holds %d bytes (equal: %v), version %d, expires_at %d; want the %d bytes written, version %d, expires_at %d",
			key, len(got), bytes.Equal(got, value), ver, exp, len(value), version, expires.UnixMilli())
	}
}

// TestMigrate: Migrate may run again on a migrated table, and keeps its
// rows.
func TestMigrate(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			db := open(t, d)
			s := newStore(t, db, d, sqlstore.Options{SweepInterval: -1})
			e := anonymous.Entry{Value: []byte("kept"), Expires: time.Now().Add(time.Hour)}
			if err := s.Create(t.Context(), "k", e); err != nil {
				t.Fatal(err)
			}
			if err := s.Migrate(t.Context()); err != nil {
				t.Fatalf("a second Migrate = %v", err)
			}
			if got, err := s.Get(t.Context(), "k"); err != nil || string(got.Value) != "kept" {
				t.Errorf("after a second Migrate, Get = %q, %v", got.Value, err)
			}
		})
	}
}

// TestMigrateSQLiteNeedsPragmas: on SQLite, Migrate refuses connections
// without WAL or a busy timeout, and says which DSN options to add.
func TestMigrateSQLiteNeedsPragmas(t *testing.T) {
	for _, dsn := range []string{"", "?_pragma=journal_mode(WAL)", "?_pragma=busy_timeout(5000)"} {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "g.db")+dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		s, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.SQLite, SweepInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		err = s.Migrate(t.Context())
		if err == nil || !strings.Contains(err.Error(), "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)") {
			t.Errorf("Migrate on a DSN of %q = %v, want an error naming the DSN options", dsn, err)
		}
	}
}
