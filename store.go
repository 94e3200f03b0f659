package anonymous

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"time"
)

// Sentinel errors of the package and of Store implementations. They are
// usually wrapped: compare with errors.Is.
var (
	// ErrNotFound is returned when there is no such guest: never created,
	// expired, deleted or linked.
	ErrNotFound = errors.New("anonymous: guest not found")
	// ErrExists is returned by Store.Create when the id is taken: by a guest,
	// or by a deleted guest's record, which reserves its id until it expires.
	ErrExists = errors.New("anonymous: guest already exists")
	// ErrConflict is returned by Store.Update when the record changed since
	// it was read: its Version is no longer the one the update names.
	ErrConflict = errors.New("anonymous: guest changed meanwhile")
	// ErrClaimed is returned while another request is linking the guest.
	ErrClaimed = errors.New("anonymous: guest is being linked")
)

// Record is what a Store keeps for one guest, and for a guest that was
// deleted or linked until its expiry.
type Record struct {
	User User
	// Session is the guest's session. Its Token is always empty in a store:
	// TokenHash stands for it. Session.ExpiresAt is when the store drops the
	// record.
	Session Session
	// TokenHash is the SHA-256 of Session.Token; all zero once the guest was
	// deleted or linked, so that its token opens nothing.
	TokenHash [sha256.Size]byte
	// Data is the application's data for the guest (Manager.UpdateData).
	Data []byte
	// LinkedTo is the id of the real user the guest became, once linked.
	LinkedTo string
	// Deleted marks a deleted (or linked) guest's record: it keeps the id
	// reserved, and LinkedTo readable, until Session.ExpiresAt.
	Deleted bool
	// ClaimOwner holds the guest's link lease until ClaimUntil: a link in
	// progress. Empty when nobody does.
	ClaimOwner string
	ClaimUntil time.Time
	// Version counts the record's writes: Create stores version 1, and each
	// Update one more.
	Version uint64
}

// live reports whether rec is a guest: not deleted, not linked.
func (rec *Record) live() bool { return !rec.Deleted && rec.LinkedTo == "" }

// leased reports whether a link holds rec's lease at now.
func (rec *Record) leased(now time.Time) bool {
	return rec.ClaimOwner != "" && now.Before(rec.ClaimUntil)
}

// Store keeps guests' records. It is a small, versioned key-value store:
// the Manager reads a record, decides, and writes it back only if nobody
// wrote it meanwhile, so that a Store needs no knowledge of leases, links
// or tokens. Every method takes a context and honours its cancellation and
// deadline; every method is safe for concurrent use. A record vanishes by
// itself at its Session.ExpiresAt: no Store needs a cron job. The package
// storetest checks an implementation against this contract.
type Store interface {
	// Create stores a copy of rec as version 1, expiring at
	// rec.Session.ExpiresAt, unless a record with the same User.ID exists,
	// in which case it returns ErrExists and changes nothing. Of concurrent
	// Creates of one id exactly one succeeds.
	Create(ctx context.Context, rec *Record) error

	// Get returns the record with this id, in one round trip, or ErrNotFound
	// when there is none or it has expired. The result is the caller's own
	// copy.
	Get(ctx context.Context, id string) (*Record, error)

	// Update replaces the record with a copy of rec, as version
	// rec.Version+1 and expiring at rec.Session.ExpiresAt, if the stored
	// record's version is rec.Version; otherwise it returns ErrConflict and
	// changes nothing. It returns ErrNotFound when there is no record or it
	// has expired. Of concurrent Updates of one version exactly one
	// succeeds.
	Update(ctx context.Context, rec *Record) error
}

// maxTries bounds how often modify reads a record again after a conflict:
// each conflict is another writer's success, so even 64 requests writing
// one guest at once all get through.
const maxTries = 100

// errStop is returned by a modify function to end modify without writing
// and without an error.
var errStop = errors.New("anonymous: nothing to write")

// modify writes fn's change of rec back to the store. On a conflict it reads
// the record again and applies fn to it afresh, so that no concurrent write
// is lost. fn changes a copy and may refuse with an error, which modify
// returns. A guest read again under another token is not rec's guest (a
// stale first-visit cookie's, say): modify returns ErrNotFound. The result
// is the record as written, with rec's token.
func (m *Manager) modify(ctx context.Context, rec *Record, fn func(*Record) error) (*Record, error) {
	token, hash := rec.Session.Token, rec.TokenHash
	for try := 1; ; try++ {
		next := *rec
		next.Session.Token = "" // a store never sees a token
		if err := fn(&next); err != nil {
			return nil, err
		}
		err := m.store.Update(ctx, &next)
		if err == nil {
			next.Version++
			next.Session.Token = token
			return &next, nil
		}
		if !errors.Is(err, ErrConflict) || try == maxTries {
			return nil, err
		}
		if rec, err = m.store.Get(ctx, rec.User.ID); err != nil {
			return nil, err
		}
		if rec.live() && subtle.ConstantTimeCompare(rec.TokenHash[:], hash[:]) != 1 {
			return nil, ErrNotFound
		}
	}
}

// bury turns rec into the record a deleted guest leaves: its data, session
// and identity are gone; its id stays reserved, and LinkedTo readable, until
// it would have expired. With keep (DisableDeleteAnonymousUser) the user
// record is kept and only the session ends.
func bury(rec *Record, linkedTo string, keep bool) {
	if keep {
		*rec = Record{User: rec.User, Session: rec.Session, LinkedTo: linkedTo, Version: rec.Version}
		return
	}
	*rec = Record{
		User:     User{ID: rec.User.ID, IsAnonymous: true},
		Session:  Session{UserID: rec.User.ID, ExpiresAt: rec.Session.ExpiresAt},
		LinkedTo: linkedTo, Deleted: true, Version: rec.Version,
	}
}
