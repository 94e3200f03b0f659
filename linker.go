package anonymous

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// realUser returns the real user Options.Identify names, nil when there is
// none, it is anonymous, or Identify is not set.
func (m *Manager) realUser(r *http.Request) (*User, error) {
	if m.opts.Identify == nil {
		return nil, nil
	}
	u, err := m.opts.Identify(r)
	if err != nil || u == nil || u.IsAnonymous {
		return nil, err
	}
	return u, nil
}

// linkOnRequest links the request's guest, if any, to the real user
// Identify named, and returns the state the handler sees: that user. A real
// user needs no store, so a store failure only postpones the link.
func (m *Manager) linkOnRequest(w http.ResponseWriter, r *http.Request, real *User) *reqState {
	st := &reqState{user: real, real: true}
	g, err := m.lookup(r)
	if err != nil {
		m.log.ErrorContext(r.Context(), "anonymous: store failed; the guest is linked later", "user", real.ID, "err", err)
		return st
	}
	if g == nil || g == held {
		return st
	}
	if st.linkErr = m.link(w, r, g, real); st.linkErr != nil {
		if !errors.Is(st.linkErr, ErrClaimed) {
			m.log.ErrorContext(r.Context(), "anonymous: linking guest failed; it is kept and retried on its next request",
				"guest", g.rec.User.ID, "user", real.ID, "err", st.linkErr)
		}
		m.renewCookie(w, g)
	}
	return st
}

// Link turns the request's guest into newUser, the real user the
// application has just authenticated: call it from a login or sign-up
// handler. It claims the guest, runs OnLinkAccount, then deletes the guest
// (or revokes it, with DisableDeleteAnonymousUser) and expires its cookie.
// The request's guest is the one its cookie or bearer token names, as the
// middleware found it.
//
// It returns nil, doing nothing, when the request brought no guest (a guest
// the middleware issued on this very request has nothing to hand over),
// when newUser is nil, is the guest itself or is anonymous, or when a
// concurrent request has already linked the guest. It returns an error
// wrapping ErrClaimed while another request is linking the same guest (the
// guest will be linked by that one, or retried), and OnLinkAccount's error,
// wrapped, when the callback fails; the guest and its cookie are then kept
// intact and the link is retried on the guest's next request when Identify
// is set, or on the next call to Link.
//
// With Options.Identify set, calling Link is optional: the middleware links
// on the first request after any login by itself. When the middleware has
// already met a real user on this request, Link does not link again: it
// returns the middleware's link error, or nil.
func (m *Manager) Link(w http.ResponseWriter, r *http.Request, newUser *User) error {
	if newUser == nil {
		return nil
	}
	var g *guest
	switch st := m.state(r.Context()); {
	case st != nil && st.real:
		return st.linkErr
	case st != nil:
		g = st.guest
	default:
		var err error
		if g, err = m.lookup(r); err != nil {
			return err
		}
	}
	if g == nil || g == held || g.issued {
		return nil
	}
	return m.link(w, r, g, newUser)
}

// link runs the exactly-once link of guest g, which lookup found stored, to
// newUser.
func (m *Manager) link(w http.ResponseWriter, r *http.Request, g *guest, newUser *User) error {
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
	// confirms its lease, before another request can take the guest over.
	leaseEnd := time.Now().Add(m.opts.LinkLease)
	deadline := leaseEnd.Add(-m.opts.LinkLease / 5)
	switch err := m.store.Claim(ctx, id, owner, leaseEnd); {
	case errors.Is(err, ErrNotFound):
		// A concurrent request linked (or the visitor deleted) it already.
		m.expireCookie(w)
		return nil
	case errors.Is(err, ErrClaimed):
		return fmt.Errorf("anonymous: linking guest %s: %w", id, err)
	case err != nil:
		// The claim may have been taken even though its answer was lost.
		m.release(ctx, id, owner)
		return fmt.Errorf("anonymous: claiming guest %s: %w", id, err)
	}
	if cb := m.opts.OnLinkAccount; cb != nil {
		ev := LinkEvent{
			AnonymousUser: Account{User: &rec.User, Session: &rec.Session},
			NewUser:       Account{User: newUser},
		}
		cctx, cancel := context.WithDeadline(r.Context(), deadline)
		err := cb(cctx, ev)
		cancel()
		if err != nil {
			m.release(ctx, id, owner)
			return fmt.Errorf("anonymous: OnLinkAccount for guest %s: %w", id, err)
		}
	}
	// Renewing the lease proves it is still ours: a callback that outlasted
	// it leaves the guest to the request that took it over.
	switch err := m.store.Claim(ctx, id, owner, time.Now().Add(m.opts.LinkLease)); {
	case errors.Is(err, ErrClaimed):
		m.log.ErrorContext(ctx, "anonymous: OnLinkAccount outlasted LinkLease and another request took the guest over; it may run again", "guest", id)
		return fmt.Errorf("anonymous: linking guest %s: %w", id, err)
	case errors.Is(err, ErrNotFound):
		m.expireCookie(w) // deleted by its visitor meanwhile
		return nil
	}
	var err error
	if m.opts.DisableDeleteAnonymousUser {
		err = m.store.Revoke(ctx, id, newUser.ID)
	} else {
		err = m.store.Delete(ctx, id)
	}
	if err != nil {
		// The data has moved: hold the claim for the guest's whole life so
		// that no retry runs the callback again.
		if perr := m.store.Claim(ctx, id, owner, rec.Session.ExpiresAt); perr != nil {
			m.log.ErrorContext(ctx, "anonymous: pinning a linked guest failed; the link may run again after LinkLease", "guest", id, "err", perr)
		}
		return fmt.Errorf("anonymous: OnLinkAccount succeeded but removing guest %s failed: %w", id, err)
	}
	m.expireCookie(w)
	return nil
}

// release drops a link's claim; if even that fails, the lease runs out by
// itself and retries wait until then.
func (m *Manager) release(ctx context.Context, id, owner string) {
	if err := m.store.Release(ctx, id, owner); err != nil {
		m.log.ErrorContext(ctx, "anonymous: releasing link claim failed", "guest", id, "err", err)
	}
}
