package anonymous

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// TxStore is a Store that can run a link in one transaction of its own
// database: the application's writes in OnLinkAccount and the end of the
// guest commit together, or neither does. When the store given to New is a
// TxStore, the Manager links stored guests through Transact, with no claim
// and no lease: exactly once holds by construction, also when the process
// dies in the callback (the database rolls the transaction back). Memory
// and Redis stores are not TxStores; they keep the claim-and-lease link.
// sqlstore.Store is one.
type TxStore interface {
	Store

	// Transact locks key's entry without waiting for a lock another
	// transaction holds, calls fn with a context that carries the
	// transaction (the store's own accessor, such as sqlstore.TxFrom,
	// returns it) and the entry as locked, writes the entry fn returns
	// (its Value, as version cur.Version+1, expiring at its Expires) and
	// commits. fn's error, a failed write or a failed commit rolls
	// everything back, fn's writes included; fn's error is returned
	// (wrapped or not). It returns ErrNotFound, without calling fn, when
	// key holds no entry or it has expired, and ErrClaimed when another
	// transaction holds the entry's lock (a store whose database can only
	// wait, such as SQLite's single writer, may wait instead). fn runs at
	// most once per call; ctx bounds the whole transaction.
	Transact(ctx context.Context, key string, fn func(ctx context.Context, cur Entry) (Entry, error)) error
}

// callbackError marks OnLinkAccount's error inside a transaction, so that
// it is told apart from the store's.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }
func (e *callbackError) Unwrap() error { return e.err }

// linkInTx links guest g to newUser in one transaction of the store's (see
// TxStore). A guest never stored is first stored, unclaimed, as the claim
// path would store it (which reserves its id against a replayed cookie);
// then the stored row is linked like any other. If the link then fails,
// the guest stays stored and its cookie names the stored guest.
func (m *Manager) linkInTx(w http.ResponseWriter, r *http.Request, g *guest, newUser *User, tx TxStore) error {
	rec := g.rec
	id := rec.User.ID
	if newUser.IsAnonymous || newUser.ID == id {
		return nil // the spec's guards: nothing to link, nothing to delete
	}
	if rec.Version == 0 {
		if !m.mayLink(r, newUser) {
			return nil
		}
		stored, _, err := m.storeOnce(w, r, g, sourceLink, nil)
		switch {
		case errors.Is(err, ErrNotFound):
			m.expireCookie(w)
			return nil
		case err != nil:
			m.metrics.linkFailed.Add(r.Context(), 1, m.metrics.linkFailure[failStore]...)
			return fmt.Errorf("anonymous: storing guest %s to link it: %w", id, err)
		}
		rec = stored
	}
	// The callback's deadline is the claim path's: the transaction holds
	// the row's lock until it ends, and concurrent logins get ErrClaimed.
	ctx, cancel := context.WithTimeout(r.Context(), m.opts.LinkLease-m.opts.LinkLease/5)
	defer cancel()
	var gone User // the guest as the callback saw it
	err := tx.Transact(ctx, id, func(ctx context.Context, cur Entry) (Entry, error) {
		locked, err := m.linkLocked(ctx, rec, cur, newUser)
		if err != nil {
			return Entry{}, err
		}
		gone = locked.User
		next := *locked
		bury(&next, newUser.ID, m.opts.DisableDeleteAnonymousUser)
		return Entry{Value: appendRecord(nil, &next, 0), Version: cur.Version, Expires: next.Session.ExpiresAt, Durable: true}, nil
	})
	return m.linkedInTx(w, context.WithoutCancel(r.Context()), id, &gone, err)
}

// linkLocked checks cur, guest rec's entry as the transaction locked it,
// runs OnLinkAccount and returns the locked record.
func (m *Manager) linkLocked(ctx context.Context, rec *Record, cur Entry, newUser *User) (*Record, error) {
	locked, err := decodeRecord(rec.User.ID, cur)
	switch {
	case err != nil:
		return nil, err
	case !locked.live():
		return nil, errGone
	case subtle.ConstantTimeCompare(locked.TokenHash[:], rec.TokenHash[:]) != 1:
		return nil, ErrNotFound // another guest's, under the same id
	case locked.leased(time.Now()):
		return nil, ErrClaimed // a claim-and-lease link, by another Manager
	}
	locked.Session.Token = rec.Session.Token // as the claim path hands it over
	if cb := m.opts.OnLinkAccount; cb != nil {
		ev := LinkEvent{
			AnonymousUser: Account{User: &locked.User, Session: &locked.Session},
			NewUser:       Account{User: newUser},
			Data:          bytes.Clone(locked.Data),
		}
		if err := cb(ctx, ev); err != nil {
			return nil, &callbackError{err}
		}
	}
	return locked, nil
}

// linkedInTx reports the outcome of linkInTx's transaction: err is
// Transact's, gone the guest the committed link ended.
func (m *Manager) linkedInTx(w http.ResponseWriter, ctx context.Context, id string, gone *User, err error) error {
	var cbErr *callbackError
	switch {
	case err == nil:
		m.linkDone(ctx, gone)
		m.expireCookie(w)
		return nil
	case errors.Is(err, errGone), errors.Is(err, ErrNotFound):
		m.expireCookie(w) // a concurrent login linked it, or it was deleted
		return nil
	case errors.Is(err, ErrClaimed):
		return fmt.Errorf("anonymous: linking guest %s: %w", id, err)
	case errors.As(err, &cbErr):
		m.metrics.linkFailed.Add(ctx, 1, m.metrics.linkFailure[failCallback]...)
		return fmt.Errorf("anonymous: OnLinkAccount for guest %s: %w", id, cbErr.err)
	}
	m.metrics.linkFailed.Add(ctx, 1, m.metrics.linkFailure[failStore]...)
	return fmt.Errorf("anonymous: linking guest %s in a transaction: %w", id, err)
}
