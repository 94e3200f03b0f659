package anonymous

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
)

// Link turns the request's guest into newUser, the real user the
// application has just authenticated: call it from a login or sign-up
// handler. It claims the guest, runs OnLinkAccount, then deletes the guest
// (or revokes it, with DisableDeleteAnonymousUser) and expires its cookie.
// The request's guest is the one the middleware put in the context, or else
// the one its cookie or bearer token names.
//
// It returns nil, doing nothing, when the request has no guest, when newUser
// is the guest itself or is anonymous, or when a concurrent request has
// already linked the guest. It returns an error wrapping ErrClaimed while
// another request is linking the same guest (the guest will be linked by
// that one, or retried), and OnLinkAccount's error, wrapped, when the
// callback fails; the guest and its cookie are then kept intact and the link
// is retried on the guest's next request when Identify is set, or on the
// next call to Link.
//
// With Options.Identify set, calling Link is optional: the middleware links
// on the first request after any login by itself. When the middleware has
// already met a real user on this request, Link does not link again: it
// returns the middleware's link error, or nil.
func (m *Manager) Link(w http.ResponseWriter, r *http.Request, newUser User) error {
	st, _ := r.Context().Value(ctxKey{}).(*reqState)
	if st != nil && st.guest == nil && st.user != nil {
		// The middleware met a real user and did the link already.
		return st.linkErr
	}
	if st == nil || st.guest == nil {
		var err error
		if st, err = m.lookup(r); err != nil || st == nil {
			return err
		}
	}
	return m.link(w, r, st, &newUser)
}

// link runs the exactly-once link of st's guest to newUser.
func (m *Manager) link(w http.ResponseWriter, r *http.Request, st *reqState, newUser *User) error {
	g := st.guest
	if newUser.IsAnonymous || newUser.ID == g.User.ID {
		return nil // the spec's guards: nothing to link, nothing to delete
	}
	// The store work after the claim must finish even if the client goes.
	ctx := context.WithoutCancel(r.Context())
	if !st.stored {
		// A guest issued on this very request: store it, so that the claim
		// below decides between concurrent links like for any other guest.
		if err := m.store.Create(ctx, g); err != nil && !errors.Is(err, ErrExists) {
			return fmt.Errorf("anonymous: storing guest %s before linking: %w", g.User.ID, err)
		}
		st.stored = true
	}
	owner := hex.EncodeToString(randomBytes(16))
	id := g.User.ID
	switch err := m.store.Claim(ctx, id, owner, m.opts.Now().Add(m.opts.LinkLease)); {
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
		link := Link{
			AnonymousUser: Account{User: &g.User, Session: &g.Session},
			NewUser:       Account{User: newUser},
		}
		// Once the lease runs out another request may claim the guest, so
		// the callback's context ends with it.
		cctx, cancel := context.WithTimeout(r.Context(), m.opts.LinkLease)
		err := cb(cctx, link)
		cancel()
		if err != nil {
			m.release(ctx, id, owner)
			return fmt.Errorf("anonymous: OnLinkAccount for guest %s: %w", id, err)
		}
	}
	// Renewing the lease proves it is still ours: a callback that outlasted
	// it leaves the guest to the request that took it over.
	switch err := m.store.Claim(ctx, id, owner, m.opts.Now().Add(m.opts.LinkLease)); {
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
		if perr := m.store.Claim(ctx, id, owner, g.Session.ExpiresAt); perr != nil {
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
