package anonymous

import (
	"context"
	"fmt"
	"net/http"
)

// ctxKey is the context key of a request's reqState.
type ctxKey struct{}

// reqState is what a Manager's middleware learned about a request. It is
// the request's context itself (its parent's, plus Value(ctxKey{})), and it
// holds the request the handler gets, the request's guest and the header
// values the middleware sets, so that all of it costs one allocation. It is
// never modified once the handler has it.
type reqState struct {
	context.Context
	m *Manager
	// outer is the state an outer Manager's middleware put in the context,
	// so that two Managers in one handler chain do not hide each other.
	outer *reqState
	// user is the request's user: the guest's, or the real user's.
	user *User
	// guest is the request's guest, nil for a real user or nobody; own is
	// where the middleware keeps it.
	guest *guest
	own   guest
	// linkErr, when Identify named a real user (real), is the outcome of
	// the middleware's link of the request's guest, if it had one.
	linkErr error
	// req is the request the handler gets: r with s as its context (see
	// request).
	req http.Request
	// The header values the middleware sets, held here (see headerValue).
	vary   [2]string
	values [2]string // by slotSetCookie, slotCacheControl
}

const (
	slotSetCookie = iota
	slotCacheControl
)

// Value answers the state for ctxKey{}, and the parent's values otherwise.
func (s *reqState) Value(key any) any {
	if _, ok := key.(ctxKey); ok {
		return s
	}
	return s.Context.Value(key)
}

// String names the context as context.WithValue's does: the state holds
// the request's headers and the guest's token, which must not be printed
// with it.
func (s *reqState) String() string {
	parent := fmt.Sprintf("%T", s.Context)
	if p, ok := s.Context.(fmt.Stringer); ok {
		parent = p.String()
	}
	return parent + ".WithValue(anonymous.ctxKey, *anonymous.reqState)"
}

// UserFrom returns the request's user: a guest (IsAnonymous true) or the real
// user Options.Identify named. Behind the middleware, every request that is
// not a real user's has a guest: on its first visit, on a page's parallel
// requests, over budget. UserFrom returns nil only
//   - outside the middleware, or for a request Options.Skip skipped;
//   - when Options.Identify failed (or named a user with an empty ID);
//   - when the store failed, unless Options.FailClosed: the
//     visitor's cookie is kept, and its guest comes back with the store; so
//     does a failure of GenerateRandomEmail, which is handled as one;
//   - when the request carried more than 16 guest cookies, none of those
//     checked valid.
//
// Behind several Managers' middleware, it is the innermost Manager's user.
// The result is shared by the request: do not modify it. To keep it past
// the request, keep a copy or its strings, not the pointer, which holds
// the request's memory.
func UserFrom(ctx context.Context) *User {
	if s, _ := ctx.Value(ctxKey{}).(*reqState); s != nil {
		return s.user
	}
	return nil
}

// SessionFrom returns the guest's session: nil for a real user's request,
// and in the cases where UserFrom is nil. Behind several Managers'
// middleware, it is the innermost Manager's guest. The result is shared by
// the request: do not modify it, and keep a copy or its strings, not the
// pointer.
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

// newState returns a request's state, to be filled by m's middleware and
// handed on as the request's context.
func (m *Manager) newState(r *http.Request) *reqState {
	var s *reqState
	if len(r.Header["Cookie"]) > 0 || len(r.Header["Authorization"]) > 0 {
		// A returning guest's record is decoded into the state's own
		// room, in the same allocation; a new visitor does without.
		p := new(stateWithRecord)
		s, p.reqState.own.read = &p.reqState, &p.read
	} else {
		s = new(reqState)
	}
	s.Context, s.m, s.vary = r.Context(), m, [2]string{"Cookie", "Authorization"}
	s.outer, _ = s.Context.Value(ctxKey{}).(*reqState)
	return s
}

// stateWithRecord is a request's state and room to decode its guest into.
// The text of the guest's strings is not here (credential.text): a
// handler that keeps one would keep the state, and the request it holds.
type stateWithRecord struct {
	reqState
	read Record
}

// setVary adds the headers every answer of the middleware depends on to
// Vary, in s's storage when the response has no Vary yet: its capacity is
// its length, so an append by the handler copies it.
func (s *reqState) setVary(h http.Header) {
	if v := h["Vary"]; len(v) > 0 {
		h["Vary"] = append(v, s.vary[:]...)
	} else {
		h["Vary"] = s.vary[:]
	}
}

// headerValue returns v as a header's values: in st's slot when st is not
// nil (a request the middleware serves), so that it costs no allocation.
// Its capacity is its length, so that an append copies it.
func (st *reqState) headerValue(slot int, v string) []string {
	if st == nil {
		return []string{v}
	}
	st.values[slot] = v
	return st.values[slot : slot+1 : slot+1]
}

// real reports whether Identify named the request's user, a real user: a
// user without a guest. (A field would take the state past its size class:
// TestStateFits896Bytes.)
func (s *reqState) real() bool { return s.user != nil && s.guest == nil }

// guestSlot returns where a guest found or made for st's request goes: st's
// own, or a new guest when st is nil.
func (st *reqState) guestSlot() *guest {
	if st == nil {
		return new(guest)
	}
	return &st.own
}

// request returns r with s as its context, held in s: r.WithContext's copy,
// which does not escape, made in place.
func (s *reqState) request(r *http.Request) *http.Request {
	s.req = *r.WithContext(s)
	return &s.req
}
