package sqltest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/sqlstore"
)

// records is a slog handler that keeps what it is handed.
type records struct {
	mu sync.Mutex
	r  []slog.Record
}

func (h *records) Enabled(context.Context, slog.Level) bool { return true }
func (h *records) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *records) WithGroup(string) slog.Handler            { return h }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.r = append(h.r, r.Clone())
	return nil
}

// attrs returns the attributes of the records with message msg.
func (h *records) attrs(msg string) []map[string]slog.Value {
	h.mu.Lock()
	defer h.mu.Unlock()
	var all []map[string]slog.Value
	for _, r := range h.r {
		if r.Message != msg {
			continue
		}
		m := map[string]slog.Value{}
		r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
		all = append(all, m)
	}
	return all
}

func nowMs() int64 { return time.Now().UnixMilli() }

// TestSweep: a sweep deletes every expired row, in statements of at most
// SweepBatch rows, and no live one.
func TestSweep(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			db := open(t, d)
			log := &records{}
			s := newStore(t, db, d, sqlstore.Options{SweepInterval: -1, SweepBatch: 100, ErrorLog: slog.New(log)})
			tbl := tableOf(t, s)
			insertRows(t, db, d, tbl, "dead-", 1050, nowMs()-1000)
			insertRows(t, db, d, tbl, "live-", 30, nowMs()+time.Hour.Milliseconds())
			live := anonymous.Entry{Value: []byte("created"), Expires: time.Now().Add(time.Hour)}
			if err := s.Create(t.Context(), "created", live); err != nil {
				t.Fatal(err)
			}

			n, err := s.Sweep(t.Context())
			if err != nil || n != 1050 {
				t.Fatalf("Sweep = %d, %v; want 1050 expired rows deleted", n, err)
			}
			if got := count(t, db, d, tbl, "dead-"); got != 0 {
				t.Errorf("after Sweep, %d expired rows are left", got)
			}
			if got := count(t, db, d, tbl, "live-"); got != 30 {
				t.Errorf("after Sweep, %d of 30 live rows are left", got)
			}
			if _, err := s.Get(t.Context(), "created"); err != nil {
				t.Errorf("after Sweep, Get of a live entry = %v", err)
			}
			// 10 full batches and a short one.
			logged := log.attrs("sqlstore: swept expired rows")
			if len(logged) != 1 || logged[0]["deleted"].Int64() != 1050 || logged[0]["statements"].Int64() != 11 {
				t.Errorf("Sweep logged %v, want one record of 1050 rows deleted by 11 statements", logged)
			}
			if n, err := s.Sweep(t.Context()); n != 0 || err != nil {
				t.Errorf("a second Sweep = %d, %v; want 0, nil", n, err)
			}
		})
	}
}

// TestSweepSparesRevived: a Create may revive an expired key while a sweep
// is deleting it; the sweep must not delete the new, live entry. Sweeps run
// in a loop while Creates revive a thousand expired keys in random order,
// three rounds.
func TestSweepSparesRevived(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			db := open(t, d)
			s := newStore(t, db, d, sqlstore.Options{SweepInterval: -1, SweepBatch: 200})
			for round := range 3 {
				revive(t, db, d, s, fmt.Sprintf("r%d-", round))
			}
		})
	}
}

func revive(t *testing.T, db *sql.DB, d sqlstore.Dialect, s *sqlstore.Store, prefix string) {
	const keys, sweepers, creators = 1000, 3, 8
	insertRows(t, db, d, tableOf(t, s), prefix, keys, nowMs()-1000)
	ctx := t.Context()
	order := mrand.Perm(keys)
	stop := make(chan struct{})
	var sweeps, creates sync.WaitGroup
	for range sweepers {
		sweeps.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Sweep(ctx); err != nil {
					t.Errorf("Sweep: %v", err)
					return
				}
			}
		})
	}
	for w := range creators {
		creates.Go(func() {
			for i := w; i < keys; i += creators {
				key := fmt.Sprintf("%s%d", prefix, order[i])
				e := anonymous.Entry{Value: []byte("revived"), Expires: time.Now().Add(time.Hour)}
				if err := s.Create(ctx, key, e); err != nil {
					t.Errorf("Create over the expired key %s: %v", key, err)
				}
			}
		})
	}
	creates.Wait()
	close(stop)
	sweeps.Wait()
	lost := 0
	for i := range keys {
		if _, err := s.Get(ctx, fmt.Sprintf("%s%d", prefix, i)); err != nil {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d entries created over expired rows during sweeps are gone", lost, keys)
	}
}

// TestBackgroundSweep: the background sweep runs every SweepInterval, and
// Close stops it; a negative SweepInterval starts none.
func TestBackgroundSweep(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			db := open(t, d)
			s := newStore(t, db, d, sqlstore.Options{SweepInterval: 10 * time.Millisecond})
			tbl := tableOf(t, s)
			insertRows(t, db, d, tbl, "a-", 10, nowMs()-1)
			for deadline := time.Now().Add(10 * time.Second); count(t, db, d, tbl, "a-") > 0; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the background sweep deleted nothing in 10 s")
				}
			}

			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() {
					if err := s.Close(); err != nil {
						t.Errorf("Close = %v", err)
					}
				})
			}
			wg.Wait()
			insertRows(t, db, d, tbl, "b-", 10, nowMs()-1)
			time.Sleep(20 * 10 * time.Millisecond) // twenty intervals: a sweep would have run
			if got := count(t, db, d, tbl, "b-"); got != 10 {
				t.Errorf("after Close, %d of 10 expired rows are left: the sweep still runs", got)
			}
			if _, err := s.Get(t.Context(), "b-0"); !errors.Is(err, sqlstore.ErrClosed) {
				t.Errorf("Get after Close = %v, want ErrClosed", err)
			}

			off := newStore(t, db, d, sqlstore.Options{SweepInterval: -1})
			insertRows(t, db, d, tableOf(t, off), "c-", 10, nowMs()-1)
			time.Sleep(200 * time.Millisecond)
			if got := count(t, db, d, tableOf(t, off), "c-"); got != 10 {
				t.Errorf("with SweepInterval -1, %d of 10 expired rows are left", got)
			}
		})
	}
}

// TestCloseCutsSweepShort: Close returns while a sweep waits for a lock,
// rather than when the lock is released.
//
// The rows are locked before the sweeping store exists: a sweep running
// while they are inserted would delete them before they are locked, and
// then no sweep would ever wait.
func TestCloseCutsSweepShort(t *testing.T) {
	for _, d := range []sqlstore.Dialect{sqlstore.Postgres, sqlstore.MySQL} {
		t.Run(d.String(), func(t *testing.T) {
			db := open(t, d)
			tbl := tableOf(t, newStore(t, db, d, sqlstore.Options{SweepInterval: -1}))
			insertRows(t, db, d, tbl, "x-", 5, nowMs()-1)
			tx, err := db.BeginTx(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			// Lock the expired rows: the sweep's DELETE waits for them.
			if got := lockAll(t, tx, d, tbl); got != 5 {
				t.Fatalf("locked %d rows, want the 5 expired ones", got)
			}
			s, err := sqlstore.New(db, sqlstore.Options{Dialect: d, Table: tbl, SweepInterval: 10 * time.Millisecond, SweepBatch: 10})
			if err != nil {
				t.Fatal(err)
			}
			// Registered after newStore's drop, so it runs before it.
			t.Cleanup(func() { s.Close() })
			waitForLockWait(t, db, d, "DELETE FROM "+tbl)
			closed := make(chan struct{})
			go func() { s.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not return within 10 s of a sweep waiting for a lock")
			}
		})
	}
}

// lockAll locks every row of tbl in tx, and returns how many it locked.
func lockAll(t *testing.T, tx *sql.Tx, d sqlstore.Dialect, tbl string) int {
	t.Helper()
	q := fmt.Sprintf("SELECT %s FROM %s FOR UPDATE", quoteKey(d), tbl)
	rows, err := tx.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// waitForLockWait waits until a statement starting with prefix waits for a
// lock. MariaDB's information_schema no longer shows lock waits (10.6
// emptied INNODB_LOCK_WAITS, and INNODB_TRX says RUNNING), but the InnoDB
// monitor does.
func waitForLockWait(t *testing.T, db *sql.DB, d sqlstore.Dialect, prefix string) {
	t.Helper()
	waiting := func() bool {
		if d == sqlstore.Postgres {
			var n int
			q := `SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`
			if err := db.QueryRow(q, prefix+"%").Scan(&n); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			return n > 0
		}
		var typ, name, status string
		if err := db.QueryRow("SHOW ENGINE INNODB STATUS").Scan(&typ, &name, &status); err != nil {
			t.Fatalf("SHOW ENGINE INNODB STATUS: %v", err)
		}
		// Only the list of transactions: the LATEST DETECTED DEADLOCK
		// section before it shows past waits.
		_, list, _ := strings.Cut(status, "LIST OF TRANSACTIONS FOR EACH SESSION:")
		list, _, _ = strings.Cut(list, "\nFILE I/O\n")
		for _, trx := range strings.Split(list, "---TRANSACTION ") {
			if strings.Contains(trx, "LOCK WAIT") && strings.Contains(trx, "\n"+prefix) {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(10 * time.Second); !waiting(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no statement %q waited for a lock within 10 s", prefix+"…")
		}
	}
}

// tableOf returns the store's table, read from its schema.
func tableOf(t testing.TB, s *sqlstore.Store) string {
	t.Helper()
	f := strings.Fields(s.Schema()[0]) // CREATE TABLE IF NOT EXISTS name (
	return f[5]
}
