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
// on the first request after any login by itself.
func (m *Manager) Link(w http.ResponseWriter, r *http.Request, newUser User) error {
	st, _ := r.Context().Value(ctxKey{}).(*reqState)
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
	switch err := m.store.Claim(r.Context(), g.User.ID, owner, m.opts.Now().Add(m.opts.LinkLease)); {
	case errors.Is(err, ErrNotFound):
		// A concurrent request linked (or the visitor deleted) it already.
		m.expireCookie(w)
		return nil
	case err != nil:
		return fmt.Errorf("anonymous: claiming guest %s: %w", g.User.ID, err)
	}
	if cb := m.opts.OnLinkAccount; cb != nil {
		link := Link{
			AnonymousUser: Account{User: &g.User, Session: &g.Session},
			NewUser:       Account{User: newUser},
		}
		if err := cb(r.Context(), link); err != nil {
			if rerr := m.store.Release(ctx, g.User.ID, owner); rerr != nil {
				// The lease runs out by itself; until then retries wait.
				m.log.ErrorContext(ctx, "anonymous: releasing link claim failed", "guest", g.User.ID, "err", rerr)
			}
			return fmt.Errorf("anonymous: OnLinkAccount for guest %s: %w", g.User.ID, err)
		}
	}
	var err error
	if m.opts.DisableDeleteAnonymousUser {
		err = m.store.Revoke(ctx, g.User.ID, newUser.ID)
	} else {
		err = m.store.Delete(ctx, g.User.ID)
	}
	if err != nil {
		// The callback ran; keeping the claim makes retries wait out the lease.
		return fmt.Errorf("anonymous: OnLinkAccount succeeded but removing guest %s failed: %w", g.User.ID, err)
	}
	m.expireCookie(w)
	return nil
}
