package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/guestpass/anonymous"
)

// defaultTable is the table's name when Options.Table is empty.
const defaultTable = "anonymous_guests"

// defaultSweepInterval is how often the sweep runs when
// Options.SweepInterval is zero.
const defaultSweepInterval = time.Minute

// defaultSweepBatch is how many expired rows one DELETE of the sweep
// removes at most when Options.SweepBatch is zero.
const defaultSweepBatch = 500

// MaxKeyLen is the longest key the store takes: a guest id is 26 bytes.
const MaxKeyLen = 64

// Options configures a Store. Dialect is required; the zero value of every
// other field is its default.
type Options struct {
	// Dialect is the database's: Postgres, MySQL (MySQL and MariaDB) or
	// SQLite. Required.
	Dialect Dialect
	// Table is the table the store keeps its entries in, one row per
	// entry: lower-case letters, digits and underscores, not starting with
	// a digit, at most 48 bytes. Migrate creates it, or create it yourself
	// with the statements of Schema (docs/sql.md). Several stores may share
	// a database with tables of their own. Default: "anonymous_guests".
	Table string
	// SweepInterval is how often a background goroutine deletes expired
	// rows, a batch at a time. It frees space only: reads never return an
	// expired entry, swept or not. Negative: no background sweep (call
	// Sweep from a scheduler of your own, or never). Default: 1 minute.
	SweepInterval time.Duration
	// SweepBatch is how many expired rows one DELETE of the sweep removes
	// at most, so that no statement holds many locks or writes a large
	// transaction; a sweep runs batches until one comes back short.
	// Default: 500.
	SweepBatch int
	// ErrorLog receives the background sweep's failures, and a Debug
	// record of each sweep that deleted rows. Default: slog.Default().
	ErrorLog *slog.Logger
}

// Store is an anonymous.Store on a SQL table, through database/sql. Create
// it with New, and stop its sweep with Close. Its methods are safe for
// concurrent use. It does not own the *sql.DB: the caller closes it, after
// the Store.
type Store struct {
	db      *sql.DB
	dialect Dialect
	table   string
	text    [nQueries]string
	batch   int
	log     *slog.Logger

	// stmts are the prepared statements, prepared on first use (the table
	// may not exist when New runs) and then once per connection by
	// database/sql, so that each call is one round trip, also on MySQL.
	stmts   [nQueries]atomic.Pointer[sql.Stmt]
	prepare sync.Mutex // guards preparing and closing stmts, and closed
	closed  bool

	stop      context.CancelFunc // cuts the sweep short
	done      chan struct{}      // closed when the sweep goroutine returned
	closeOnce sync.Once
}

var _ anonymous.Store = (*Store)(nil)

// ErrClosed is returned by the methods of a Store after Close.
var ErrClosed = errors.New("sqlstore: store closed")

// New returns a Store on db, the database Options.Dialect names, whose
// driver the application imports. It checks the options, not the
// database: it neither connects nor looks for the table (see Migrate).
// Unless Options.SweepInterval is negative it starts the background sweep,
// which Close stops.
func New(db *sql.DB, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqlstore: nil *sql.DB")
	}
	switch opts.Dialect {
	case Postgres, MySQL, SQLite:
	case 0:
		return nil, errors.New("sqlstore: Options.Dialect is required: Postgres, MySQL or SQLite")
	default:
		return nil, fmt.Errorf("sqlstore: unknown %v", opts.Dialect)
	}
	if opts.Table == "" {
		opts.Table = defaultTable
	}
	if !validTable(opts.Table) {
		return nil, fmt.Errorf("sqlstore: Table %q is not lower-case letters, digits and underscores of at most %d bytes, not starting with a digit", opts.Table, maxTable)
	}
	if opts.SweepBatch < 0 {
		return nil, errors.New("sqlstore: negative SweepBatch")
	}
	if opts.SweepBatch == 0 {
		opts.SweepBatch = defaultSweepBatch
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = defaultSweepInterval
	}
	if opts.ErrorLog == nil {
		opts.ErrorLog = slog.Default()
	}
	s := &Store{
		db: db, dialect: opts.Dialect, table: opts.Table, text: queries(opts.Dialect, opts.Table),
		batch: opts.SweepBatch, log: opts.ErrorLog, done: make(chan struct{}),
	}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	if opts.SweepInterval > 0 {
		go s.sweeper(ctx, opts.SweepInterval)
	} else {
		close(s.done)
	}
	return s, nil
}

// Close stops the background sweep, cutting short a sweep under way, and
// waits for it to return; then it closes the store's prepared statements.
// It does not close the *sql.DB. Call it once the store is no longer
// used: later calls of its methods return ErrClosed. Close is safe to call
// more than once and concurrently; it returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.stop()
		<-s.done
		s.prepare.Lock()
		defer s.prepare.Unlock()
		s.closed = true
		for i := range s.stmts {
			if st := s.stmts[i].Swap(nil); st != nil {
				st.Close()
			}
		}
	})
	<-s.done
	return nil
}

// stmt returns statement q, preparing it on first use. A failed
// preparation (no table yet, the database down) is tried again on the
// next call.
func (s *Store) stmt(ctx context.Context, q int) (*sql.Stmt, error) {
	if st := s.stmts[q].Load(); st != nil {
		return st, nil
	}
	s.prepare.Lock()
	defer s.prepare.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if st := s.stmts[q].Load(); st != nil {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, s.text[q])
	if err != nil {
		return nil, err
	}
	s.stmts[q].Store(st)
	return st, nil
}

// validKey reports whether key can be a guest id: 1 to MaxKeyLen bytes of
// printable ASCII. No other key is ever stored, and none is cut to fit the
// column.
func validKey(key string) bool {
	if key == "" || len(key) > MaxKeyLen {
		return false
	}
	for i := range len(key) {
		if key[i] < ' ' || key[i] > '~' {
			return false
		}
	}
	return true
}

var errInvalidKey = errors.New("sqlstore: invalid key")

// bytesOf returns v, or an empty value for nil: the column is NOT NULL,
// and a driver sends a nil []byte as NULL.
func bytesOf(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// Create stores e.Value under key as version 1, expiring at e.Expires,
// unless key holds a live entry: then it returns anonymous.ErrExists and
// changes nothing. It is one INSERT that replaces an expired row but not a
// live one (see docs/sql.md), judged by this process's clock; concurrent
// Creates of a key are serialised by its row. e.Version and e.Durable are
// ignored: a committed row is as durable as the database makes it.
func (s *Store) Create(ctx context.Context, key string, e anonymous.Entry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlstore: create: %w", err)
	}
	if !validKey(key) {
		return fmt.Errorf("%w %q", errInvalidKey, key)
	}
	st, err := s.stmt(ctx, qCreate)
	if err != nil {
		return failed(ctx, "create", key, err)
	}
	value, expires := bytesOf(e.Value), e.Expires.UnixMilli()
	var exists bool
	err = s.retry(ctx, func() error {
		res, err := st.ExecContext(ctx, s.dialect.createArgs(key, value, expires, time.Now().UnixMilli())...)
		if err != nil {
			return err
		}
		if s.dialect == MySQL {
			id, err := res.LastInsertId()
			exists = id == 1
			return err
		}
		n, err := res.RowsAffected()
		exists = n == 0
		return err
	})
	switch {
	case err != nil:
		return failed(ctx, "create", key, err)
	case exists:
		return anonymous.ErrExists
	}
	return nil
}

// Get returns the entry under key with one SELECT, or anonymous.ErrNotFound
// when there is none or it has expired by this process's clock. Its Value
// is the caller's own (database/sql copies what it scans into a []byte)
// and Expires is set.
func (s *Store) Get(ctx context.Context, key string) (anonymous.Entry, error) {
	if err := ctx.Err(); err != nil {
		return anonymous.Entry{}, fmt.Errorf("sqlstore: get: %w", err)
	}
	if !validKey(key) {
		return anonymous.Entry{}, anonymous.ErrNotFound
	}
	st, err := s.stmt(ctx, qGet)
	if err != nil {
		return anonymous.Entry{}, failed(ctx, "get", key, err)
	}
	var (
		value            []byte
		version, expires int64
	)
	switch err := st.QueryRowContext(ctx, key).Scan(&value, &version, &expires); {
	case errors.Is(err, sql.ErrNoRows):
		return anonymous.Entry{}, anonymous.ErrNotFound
	case err != nil:
		return anonymous.Entry{}, failed(ctx, "get", key, err)
	}
	return liveEntry(value, version, expires)
}

// liveEntry returns a row read as an entry, or anonymous.ErrNotFound when it
// has expired. The clock is read once the row is in hand: no entry is
// returned at or after its expiry, however long the query took.
func liveEntry(value []byte, version, expires int64) (anonymous.Entry, error) {
	if expires <= time.Now().UnixMilli() {
		return anonymous.Entry{}, anonymous.ErrNotFound
	}
	return anonymous.Entry{Value: value, Version: uint64(version), Expires: time.UnixMilli(expires)}, nil
}

// Update replaces the entry under key with e.Value, as version
// e.Version+1 expiring at e.Expires, if the stored version is e.Version
// and has not expired: one conditional UPDATE. When it changes no row, a
// second statement tells why: anonymous.ErrConflict if key holds a live
// entry (another version), anonymous.ErrNotFound if it holds none.
func (s *Store) Update(ctx context.Context, key string, e anonymous.Entry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlstore: update: %w", err)
	}
	if !validKey(key) {
		return fmt.Errorf("%w %q", errInvalidKey, key)
	}
	st, err := s.stmt(ctx, qUpdate)
	if err != nil {
		return failed(ctx, "update", key, err)
	}
	// Versions are kept as the bigint of the same bits: the conversion is
	// one to one, so a version above MaxInt64, never stored, matches none.
	value, expires, version := bytesOf(e.Value), e.Expires.UnixMilli(), int64(e.Version)
	var n int64
	var now int64
	err = s.retry(ctx, func() error {
		now = time.Now().UnixMilli()
		res, err := st.ExecContext(ctx, value, expires, key, version, now)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return failed(ctx, "update", key, err)
	}
	if n > 0 {
		return nil
	}
	return s.why(ctx, key, now)
}

// why tells, after an Update that changed no row at now, whether key holds
// a live entry of another version (ErrConflict) or none (ErrNotFound).
func (s *Store) why(ctx context.Context, key string, now int64) error {
	st, err := s.stmt(ctx, qLive)
	if err != nil {
		return failed(ctx, "update", key, err)
	}
	var one int
	switch err := st.QueryRowContext(ctx, key, now).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return anonymous.ErrNotFound
	case err != nil:
		return failed(ctx, "update", key, err)
	}
	return anonymous.ErrConflict
}
