package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Sweep deletes the rows that had expired when it began, at most
// Options.SweepBatch per statement, until a statement deletes fewer, and
// returns how many it deleted. The background sweep calls it every
// Options.SweepInterval; call it yourself when that is off. Reads never
// return an expired entry, so a sweep frees space and nothing else. Several
// processes may sweep one table at once: each row goes once. It is safe
// for concurrent use.
//
// Each statement is short: on PostgreSQL and SQLite a DELETE of the keys a
// LIMITed subquery picks, on MySQL a DELETE … ORDER BY expires_at LIMIT in
// a READ COMMITTED transaction of its own, so that it locks the rows it
// deletes and no gaps between them, which new guests' rows would wait for.
func (s *Store) Sweep(ctx context.Context) (int64, error) {
	now := time.Now().UnixMilli() // fixed, so that a sweep ends
	var deleted int64
	statements := 0
	for {
		var n int64
		err := s.retry(ctx, func() (err error) {
			n, err = s.sweepBatch(ctx, now)
			return err
		})
		statements++
		deleted += n
		if err != nil {
			return deleted, fmt.Errorf("sqlstore: sweep of %s: %w", s.table, err)
		}
		if n < int64(s.batch) {
			break
		}
	}
	if deleted > 0 {
		s.log.DebugContext(ctx, "sqlstore: swept expired rows", "table", s.table, "deleted", deleted, "statements", statements)
	}
	return deleted, nil
}

// sweepBatch runs one statement of the sweep.
func (s *Store) sweepBatch(ctx context.Context, now int64) (int64, error) {
	if s.dialect != MySQL {
		res, err := s.db.ExecContext(ctx, s.text[qSweep], now, s.batch)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, s.text[qSweep], now, s.batch)
	if err != nil {
		tx.Rollback()
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		tx.Rollback()
		return 0, err
	}
	return n, tx.Commit()
}

// sweeper runs Sweep every interval until ctx is done (Close).
func (s *Store) sweeper(ctx context.Context, every time.Duration) {
	defer close(s.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.ErrorContext(ctx, "sqlstore: background sweep failed", "table", s.table, "err", err)
			}
		}
	}
}
