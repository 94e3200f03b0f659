package anonymous

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"
)

// The errors a Store answers with, which say what it did (any other error
// is a failure, which leaves it unknown). The Manager's methods return
// them too. They are usually wrapped: compare with errors.Is.
var (
	// ErrNotFound is returned when there is no such guest: never created,
	// expired, deleted or linked.
	ErrNotFound = errors.New("anonymous: guest not found")
	// ErrExists is returned by Store.Create when the key is taken: by a
	// guest, or by a deleted guest's record, which reserves its id until it
	// expires.
	ErrExists = errors.New("anonymous: guest already exists")
	// ErrConflict is returned by Store.Update when the entry changed since
	// it was read: its version is no longer the one the update names.
	ErrConflict = errors.New("anonymous: guest changed meanwhile")
	// ErrStoreFull is returned by a Store that holds as much as it may
	// (memstore's MaxBytes), for a Create, or an Update that grows an
	// entry; nothing is written. The Manager then stores no new guest but
	// those that logins link (memstore keeps headroom for them) and fails
	// open: visitors keep guests, and their data, in their cookies;
	// sign-in/anonymous answers 503 STORE_FULL.
	ErrStoreFull = errors.New("anonymous: the store is full")
)

// Record is what the package keeps for one guest, and for a guest that was
// deleted or linked until its expiry. A Store never sees it: the package
// encodes it into an Entry's bytes, and Manager.Record reads it back.
type Record struct {
	User User // the guest
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
	ClaimUntil time.Time // when ClaimOwner's lease ends
	// Version is the store's version of the record: 0 for a guest never
	// stored, 1 once created, and one more for each update.
	Version uint64

	// writes holds the ids of the record's last writes, oldest first, so
	// that a writer whose reply was lost recognises its own write: 8 bytes
	// each, little-endian, as stored, and never written in place (see
	// stamp). Its capacity is its length, so that an append copies it.
	writes []byte
}

// live reports whether rec is a guest: not deleted, not linked.
func (rec *Record) live() bool { return !rec.Deleted && rec.LinkedTo == "" }

// leased reports whether a link holds rec's lease at now.
func (rec *Record) leased(now time.Time) bool {
	return rec.ClaimOwner != "" && now.Before(rec.ClaimUntil)
}

// durable reports whether a write of rec guards exactly-once linking or
// deletion (a claim, or the record a link or a delete leaves), which a Store
// must not lose (Entry.Durable).
func (rec *Record) durable() bool { return rec.ClaimOwner != "" || !rec.live() }

// Entry is a value a Store keeps under a key: opaque bytes, with a version
// and an expiry.
type Entry struct {
	// Value is the bytes the package wrote, which the Store keeps and
	// returns byte for byte, whatever they are: at least 64 KiB of them.
	// A Store keeps its own copy on a write, and Get's Value is the
	// caller's own.
	Value []byte
	// Version counts the writes under the key: Create stores version 1, and
	// each Update one more. Get returns it; Update names the version it
	// replaces. Create ignores it.
	Version uint64
	// Expires is when the Store drops the entry: no read returns it at or
	// after that instant, with at least millisecond precision. A Store
	// needs no cron job for it. Get may leave it zero: the package reads
	// the expiry from the value.
	Expires time.Time
	// Durable, on a write, marks one the package must not lose: a link's
	// claim, or the record a link or a delete leaves. A Store with
	// replicas may wait for them to have it (redisstore's WaitReplicas); a
	// Store with a cap keeps room for a Durable Create (memstore's
	// headroom). A Store may ignore it. Get returns it false.
	Durable bool
}

// Store keeps the package's records: a small, versioned key-value store of
// opaque bytes. The Manager reads an entry, decides, and writes it back
// only if nobody wrote it meanwhile, so that a Store needs no knowledge of
// guests, leases, links or tokens. Keys are guest ids: non-empty printable
// ASCII of at most 64 bytes, without '{' or '}'. Every method takes a
// context and honours its cancellation and deadline; every method is safe
// for concurrent use. A Get that follows a write's return sees that write
// (or a later one), also when the write's reply was lost: the package
// recognises its own writes by reading them back. The package storetest
// checks an implementation against this contract; docs/stores.md shows a
// whole one.
type Store interface {
	// Create stores a copy of e.Value under key as version 1, expiring at
	// e.Expires, unless key holds an entry that has not expired, in which
	// case it returns ErrExists and changes nothing. Of concurrent Creates
	// of one key exactly one succeeds.
	Create(ctx context.Context, key string, e Entry) error

	// Get returns the entry under key, in one round trip, or ErrNotFound
	// when there is none or it has expired.
	Get(ctx context.Context, key string) (Entry, error)

	// Update replaces the entry under key with a copy of e.Value, as
	// version e.Version+1 and expiring at e.Expires, if the stored version
	// is e.Version; otherwise it returns ErrConflict and changes nothing.
	// It returns ErrNotFound when there is no entry or it has expired. Of
	// concurrent Updates of one version exactly one succeeds. A Store with
	// a cap may refuse an Update that grows the entry, ErrStoreFull,
	// changing nothing.
	Update(ctx context.Context, key string, e Entry) error
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
