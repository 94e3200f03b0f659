package anonymous

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"
)

// Sentinel errors of the package and of Store implementations. They are
// usually wrapped: compare with errors.Is.
var (
	// ErrNotFound is returned when the store has no such guest: never
	// created, expired or deleted, or, for Touch and Claim, revoked by a
	// link.
	ErrNotFound = errors.New("anonymous: guest not found")
	// ErrExists is returned by Store.Create when a guest with the same id
	// exists or the id is reserved.
	ErrExists = errors.New("anonymous: guest already exists")
	// ErrClaimed is returned when another link holds the guest's claim.
	ErrClaimed = errors.New("anonymous: guest is being linked")
)

// Record is what a Store keeps for one guest.
type Record struct {
	User User
	// Session.Token is always empty in a store: TokenHash stands for it.
	Session Session
	// TokenHash is the SHA-256 of Session.Token. All zero once revoked.
	TokenHash [sha256.Size]byte
	// LinkedTo is the id of the real user the guest was linked to, set by
	// Store.Revoke when the guest is kept after a link
	// (Options.DisableDeleteAnonymousUser). Such a guest has no session and
	// is never linked again.
	LinkedTo string
}

// Store keeps guests. Every method takes a context and honours its
// cancellation and deadline; every method is safe for concurrent use. A
// guest's record vanishes by itself at Session.ExpiresAt (as moved by
// Touch): no Store needs a cron job. The package storetest checks an
// implementation against this contract.
type Store interface {
	// Create stores a copy of rec, expiring at rec.Session.ExpiresAt and
	// without Session.Token, unless a guest with the same User.ID exists (or
	// its id is reserved, see Delete), in which case it returns ErrExists and
	// changes nothing. Of concurrent Creates of one id exactly one succeeds.
	Create(ctx context.Context, rec *Record) error

	// Get returns the guest with this id in one round trip, or ErrNotFound
	// when there is none or it has expired. The result is the caller's own
	// copy.
	Get(ctx context.Context, id string) (*Record, error)

	// Touch moves the guest's expiry to expiresAt (in the record's
	// Session.ExpiresAt and in the store's own expiry) and sets
	// Session.UpdatedAt to now. It returns ErrNotFound when there is no such
	// guest or it was revoked.
	Touch(ctx context.Context, id string, expiresAt, now time.Time) error

	// Claim takes the guest's link lease for owner until the given time. It
	// returns ErrNotFound when there is no such guest or it was revoked, and
	// ErrClaimed while another owner's lease has not run out; the lease's
	// own owner may claim again, which moves it. Of concurrent Claims exactly
	// one succeeds; a lease that runs out (a crashed process) can be claimed
	// by anyone.
	Claim(ctx context.Context, id, owner string, until time.Time) error

	// Release drops owner's lease on the guest. A lease held by someone else,
	// no lease, or no guest at all is left as it is, and is not an error.
	Release(ctx context.Context, id, owner string) error

	// Delete removes the guest, its session and any lease. The id stays
	// reserved until the guest's expiry: Get returns ErrNotFound and Create
	// ErrExists, so a replayed cookie of a guest not stored yet cannot bring
	// it back. Deleting a guest that does not exist is not an error.
	Delete(ctx context.Context, id string) error

	// Revoke keeps the guest's user record but ends its session for good:
	// it zeroes TokenHash, sets LinkedTo, and drops any lease; the record
	// still expires at its Session.ExpiresAt. It returns ErrNotFound when
	// there is no such guest or it was revoked already.
	Revoke(ctx context.Context, id, linkedTo string) error
}
