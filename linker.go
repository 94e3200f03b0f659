package anonymous

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/codes"
)

// realUser returns the real user Options.Identify names, nil when there is
// none, it is anonymous, or Identify is not set.
func (m *Manager) realUser(r *http.Request) (*User, error) {
	if m.opts.Identify == nil {
		return nil, nil
	}
	u, err := m.opts.Identify(r)
	switch {
	case err != nil || u == nil || u.IsAnonymous:
		return nil, err
	case u.ID == "":
		return nil, fmt.Errorf("%w: Options.Identify named one without", ErrInvalidUser)
	}
	return u, nil
}

// linkOnRequest links the request's guest, if any, to the real user
// Identify named, and returns the link's error. A real user needs no store,
// so a store failure only postpones the link. st is the middleware's state
// for r, nil for the endpoints.
func (m *Manager) linkOnRequest(w http.ResponseWriter, r *http.Request, real *User, st *reqState) error {
	g, err := m.lookup(r, st)
	if err != nil {
		m.log.ErrorContext(r.Context(), "anonymous: store failed; the guest is linked later", "user", real.ID, "err", err)
		return nil
	}
	if g == nil || g == held {
		return nil
	}
	err = m.link(w, r, g, real)
	if err != nil {
		if !errors.Is(err, ErrClaimed) {
			m.log.ErrorContext(r.Context(), "anonymous: linking guest failed; it is kept and retried on its next request",
				"guest", g.rec.User.ID, "user", real.ID, "err", err)
		}
		m.renewCookie(w, st, g)
	}
	return err
}

// Link turns the request's guest into newUser, the real user the
// application has just authenticated: call it from a login or sign-up
// handler. It claims the guest, runs OnLinkAccount, then deletes the guest
// (or revokes it, with DisableDeleteAnonymousUser) and expires its cookie;
// with a TxStore, it does all of it in one transaction of the store's (see
// TxStore), with no claim.
// The request's guest is the one its cookie or bearer token names, as the
// middleware found it.
//
// A guest that the budget or a full store kept in its cookie links too,
// with the data its cookie holds: the link stores it, charged to newUser's account rather than to
// the client (see Options.Budget), and a full memstore keeps headroom for
// it.
//
// It returns nil, doing nothing, when the request brought no guest (a guest
// the middleware issued on this very request has nothing to hand over),
// when newUser is nil, is the guest itself or is anonymous, when a
// concurrent request has already linked the guest, when the cookie is a copy
// of one whose guest another browser stored, or when newUser's account has
// linked more never-stored guests than its budget allows (the guest stays
// in its cookie and links later). Otherwise it returns nil once the guest is
// linked, or an error:
//   - wrapping ErrInvalidUser for a newUser with an empty ID;
//   - wrapping ErrClaimed while another request is linking the same guest
//     (that one finishes the link), or when OnLinkAccount outlasted
//     LinkLease and another request took the guest over;
//   - wrapping OnLinkAccount's error when the callback fails;
//   - wrapping the store's error when the store fails (ErrStoreFull past a
//     full memstore's headroom).
//
// On any error but the last step's (the callback succeeded, recording the
// link failed: see Options.OnLinkAccount), the guest and its data are kept
// (a guest never stored is stored now, and its cookie re-set) and the link
// is retried on the guest's next
// request when Identify is set, or on the next call to Link. It never
// returns a budget error. So a login handler logs its user in whatever
// Link returns, and may log the error.
//
// With Options.Identify set, calling Link is optional: the middleware links
// on the first request after any login by itself. When the middleware has
// already met a real user on this request, Link does not link again: it
// returns the middleware's link error, or nil.
func (m *Manager) Link(w http.ResponseWriter, r *http.Request, newUser *User) error {
	switch {
	case newUser == nil || newUser.IsAnonymous:
		return nil
	case newUser.ID == "":
		return fmt.Errorf("%w: Link was given one without", ErrInvalidUser)
	}
	var g *guest
	switch st := m.state(r.Context()); {
	case st != nil && st.real():
		return st.linkErr
	case st != nil:
		g = st.guest
	default:
		var err error
		if g, err = m.lookup(r, nil); err != nil {
			return err
		}
	}
	if g == nil || g == held || g.issued {
		return nil
	}
	return m.link(w, r, g, newUser)
}

// errGone is a claim's answer for a guest that is no longer a guest: linked
// or deleted by a concurrent request.
var errGone = errors.New("anonymous: guest already linked or deleted")

// link runs the exactly-once link of guest g to newUser, in a span of its
// own: in one transaction of the store's when it is a TxStore (txlink.go),
// else with a claim and a lease.
func (m *Manager) link(w http.ResponseWriter, r *http.Request, g *guest, newUser *User) error {
	ctx, span := m.metrics.tracer.Start(r.Context(), "anonymous.link")
	defer span.End()
	var err error
	if tx := m.txStore(); tx != nil {
		err = m.linkInTx(w, r.WithContext(ctx), g, newUser, tx)
	} else {
		err = m.linkGuest(w, r.WithContext(ctx), g, newUser)
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "link failed")
	}
	return err
}

// linkGuest runs the exactly-once link of guest g to newUser.
func (m *Manager) linkGuest(w http.ResponseWriter, r *http.Request, g *guest, newUser *User) error {
	rec := g.rec
	if newUser.IsAnonymous || newUser.ID == rec.User.ID {
		return nil // the spec's guards: nothing to link, nothing to delete
	}
	// The store work after the claim must finish even if the client goes.
	ctx := context.WithoutCancel(r.Context())
	id := rec.User.ID
	owner := hex.EncodeToString(randomBytes(16))
	// The lease is counted from before the claim's round trip, and the
	// callback's deadline from the same instant, a fifth of the lease
	// earlier: a callback that honours its context ends, and the link
	// writes its outcome, before another request can take the guest over.
	leaseEnd := time.Now().Add(m.opts.LinkLease)
	deadline := leaseEnd.Add(-m.opts.LinkLease / 5)
	claim := func(rec *Record) error {
		switch {
		case !rec.live():
			return errGone
		case rec.leased(time.Now()):
			return ErrClaimed
		}
		rec.ClaimOwner, rec.ClaimUntil = owner, leaseEnd
		return nil
	}
	var claimed *Record
	var err error
	if rec.Version == 0 {
		// A guest never stored (a first visit, or one the budget or a full
		// store kept out) is stored now, claimed, with the data its cookie
		// holds: that reserves its id, so that a replayed cookie links
		// nothing. The client's budget does not bound it (the login is the
		// application's), nor does a full store, which keeps headroom for
		// it; the account's own budget does (see mayLink).
		if !m.mayLink(r, newUser) {
			return nil
		}
		var applied bool
		if claimed, applied, err = m.storeOnce(w, r, g, sourceLink, claim); err == nil && !applied {
			claimed, err = m.modify(ctx, claimed, claim) // stored earlier in this request
		}
	} else {
		claimed, err = m.modify(ctx, rec, claim)
	}
	switch {
	case errors.Is(err, errGone), errors.Is(err, ErrNotFound):
		// A concurrent request linked it already (the same login in another
		// tab), or the visitor deleted it.
		m.expireCookie(w)
		return nil
	case errors.Is(err, ErrClaimed):
		return fmt.Errorf("anonymous: linking guest %s: %w", id, err)
	case err != nil:
		// The claim may have been written even though its answer was lost,
		// or stored unconfirmed with the guest (claimed is that guest).
		if claimed != nil {
			rec = claimed
		}
		m.release(ctx, rec, owner)
		m.metrics.linkFailed.Add(ctx, 1, m.metrics.linkFailure[failStore]...)
		return fmt.Errorf("anonymous: claiming guest %s: %w", id, err)
	}
	if cb := m.opts.OnLinkAccount; cb != nil {
		ev := LinkEvent{
			AnonymousUser: Account{User: &claimed.User, Session: &claimed.Session},
			NewUser:       Account{User: newUser},
			Data:          bytes.Clone(claimed.Data), // the callback's to keep
		}
		cctx, cancel := context.WithDeadline(r.Context(), deadline)
		err := cb(cctx, ev)
		cancel()
		if err != nil {
			m.release(ctx, claimed, owner)
			m.metrics.linkFailed.Add(ctx, 1, m.metrics.linkFailure[failCallback]...)
			return fmt.Errorf("anonymous: OnLinkAccount for guest %s: %w", id, err)
		}
	}
	return m.finish(w, ctx, claimed, owner, newUser, leaseEnd)
}

// release drops owner's lease on the guest; if even that fails, the lease
// runs out by itself and retries wait until then.
func (m *Manager) release(ctx context.Context, rec *Record, owner string) {
	_, err := m.modify(ctx, rec, func(rec *Record) error {
		if rec.ClaimOwner != owner {
			return errStop
		}
		rec.ClaimOwner, rec.ClaimUntil = "", time.Time{}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) && !errors.Is(err, ErrNotFound) {
		m.log.ErrorContext(ctx, "anonymous: releasing link claim failed", "guest", rec.User.ID, "err", err)
	}
}

// LinkedTo returns the id of the real user the guest with this id was linked
// to, "" while it is still a guest. It returns ErrNotFound when there is no
// such guest: never created, expired, or deleted without a link. A linked
// guest can be resolved until the guest's own expiry, so that a payment
// webhook or a queued job that carries a guest id and arrives after the
// login finds the account.
func (m *Manager) LinkedTo(ctx context.Context, guestID string) (string, error) {
	rec, err := m.get(ctx, guestID)
	switch {
	case err != nil:
		return "", err
	case rec.LinkedTo == "" && rec.Deleted:
		return "", ErrNotFound
	}
	return rec.LinkedTo, nil
}
