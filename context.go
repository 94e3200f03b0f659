package anonymous

import (
	"context"
	"net/http"
)

// ctxKey is the context key of a request's reqState.
type ctxKey struct{}

// reqState is what a Manager's middleware learned about a request. It is
// made once per request and never modified.
type reqState struct {
	m *Manager
	// outer is the state an outer Manager's middleware put in the context,
	// so that two Managers in one handler chain do not hide each other.
	outer *reqState
	// user is the request's user: the guest's, or the real user's.
	user *User
	// guest is the request's guest, nil for a real user or nobody.
	guest *guest
	// real is true when Identify named a real user; linkErr is then the
	// outcome of the middleware's link of the request's guest, if it had one.
	real    bool
	linkErr error
}

// UserFrom returns the request's user: a guest (IsAnonymous true) or the real
// user Options.Identify named. It returns nil outside the middleware, for a
// skipped request, when Options.Identify failed, or when the store failed
// (see Options.OnStoreError). Behind several Managers' middleware, it is the
// innermost Manager's user. The result is shared by the request: do not
// modify it.
func UserFrom(ctx context.Context) *User {
	if s, _ := ctx.Value(ctxKey{}).(*reqState); s != nil {
		return s.user
	}
	return nil
}

// SessionFrom returns the guest's session, nil when the request has no
// guest. Behind several Managers' middleware, it is the innermost Manager's
// guest. The result is shared by the request: do not modify it.
func SessionFrom(ctx context.Context) *Session {
	if s, _ := ctx.Value(ctxKey{}).(*reqState); s != nil && s.guest != nil {
		return &s.guest.rec.Session
	}
	return nil
}

// state returns the state m's middleware put in ctx, nil if none.
func (m *Manager) state(ctx context.Context) *reqState {
	s, _ := ctx.Value(ctxKey{}).(*reqState)
	for s != nil && s.m != m {
		s = s.outer
	}
	return s
}

// withState returns r carrying s, which m's middleware made.
func (m *Manager) withState(r *http.Request, s *reqState) *http.Request {
	s.m = m
	s.outer, _ = r.Context().Value(ctxKey{}).(*reqState)
	return r.WithContext(context.WithValue(r.Context(), ctxKey{}, s))
}
