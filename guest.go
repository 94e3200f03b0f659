package anonymous

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// guest is a request's guest, as found by lookup or made by issue. Only
// stored changes once it is made.
type guest struct {
	// rec is the guest, with Session.Token set; nil for held.
	rec *Record
	// issued is true for a guest made on this request: no credential
	// brought it. A guest not stored yet (without PersistOnIssue, or over
	// the budget) has rec.Version 0.
	issued bool
	// renew asks for the cookie to be re-set: in its short form when the
	// guest was just stored or its expiry moved, in its long form, with a
	// new window, for a guest held in its cookie past half its window.
	renew bool
	// refused is true for a guest the budget or a full store kept from
	// being stored on this request: its updates are held in its cookie
	// without asking again.
	refused bool
	// mu guards stored, the guest as the request stored it when it was not
	// stored as the request began (rec.Version 0): see storeOnce.
	mu     sync.Mutex
	stored *Record
	// read, when not nil, is where lookup decodes a stored guest: it comes
	// with the request's state, in its one allocation.
	read *Record
}

// credential is a decoded guest credential.
type credential struct {
	id, token string
	// tokenHash is the SHA-256 of token, hashed from the cookie's own bytes
	// (hashing the string would copy it to the heap).
	tokenHash [sha256.Size]byte
	// pending is the whole guest, for a long-form cookie of a guest not
	// stored yet (without PersistOnIssue).
	pending *Record
	// text, for a stored guest's cookie or a bearer token, is room for the
	// text its record is decoded into (decodeInto), in the token's
	// allocation: what a handler keeps of the guest's strings keeps that,
	// not the request.
	text []byte
}

// maxCookies bounds how many guest cookies of one request are checked: each
// costs an HMAC. A request with more, none of which verified, is served
// without a guest and without a cookie (held), so that cookies tossed in
// from elsewhere cannot push the real one out.
const maxCookies = 16

// credential reads the guest cookie, or else an "Authorization: Bearer"
// token. Anything malformed, forged or expired is no credential (c.id is
// ""). Of several cookies with the guest cookie's name, the first that
// verifies counts, so that a cookie another site of the domain tossed in
// cannot hide the real one. fromCookie tells whether a cookie (which the
// middleware keeps up to date) was the source; crowded, that the request
// sent more guest cookies than maxCookies and none of those checked
// verified.
//
// now is the time cookies expire against, read once a request has a
// cookie (a clock read costs as much as a small lookup) and returned for
// the caller, or the zero time.
func (m *Manager) credential(r *http.Request) (c credential, now time.Time, fromCookie, crowded bool) {
	checked := 0
	for v := range cookieValues(r, m.opts.CookieName) {
		if checked == maxCookies {
			return credential{}, now, false, true
		}
		if now.IsZero() {
			now = time.Now()
		}
		if c, err := m.cc.decode(v, now); err == nil {
			return c, now, true, false
		}
		// A value net/http drops as malformed fails on its bytes, before
		// any HMAC, and does not count.
		if validCookieValue(v) {
			checked++
		}
	}
	if tok, ok := bearer(r); ok {
		if c := ownCredential(tok, recordText); c.id != "" {
			return c, now, false, false
		}
	}
	return credential{}, now, false, false
}

// ownCredential returns the credential of token, a copy of it with room
// for the text of a stored guest's record after it (text), in one
// allocation that holds no part of the request; or none when token is not
// a token.
func ownCredential(token string, room int) credential {
	id := tokenID(token)
	if id == "" {
		return credential{}
	}
	own := append(make([]byte, 0, len(token)+room), token...)
	c := credential{token: str(own), tokenHash: sha256.Sum256(own), text: own[len(own):]}
	c.id = c.token[:len(id)] // the token begins with the id
	return c
}

// cookieValues yields the values of the request's cookies called name, in
// order, as r.CookiesNamed does (quotes around a value removed), without
// allocating: a returning visitor's request pays for no Cookie it does not
// use. The values are slices of the header. Of the values net/http skips
// as malformed, it skips those with line breaks (base64 would skip them,
// and read another spelling of a valid cookie); the rest fail to decode.
func cookieValues(r *http.Request, name string) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		for _, line := range r.Header["Cookie"] {
			for part := range strings.SplitSeq(line, ";") {
				if v, ok := cookieValue(part, name); ok && !yield(v) {
					return
				}
			}
		}
	}
}

// cookieValue returns the value of part, one "name=value" of a Cookie
// header, when its name is name, quotes removed; false for another name
// or a value with a line break.
func cookieValue(part, name string) (string, bool) {
	n, v, _ := strings.Cut(textproto.TrimString(part), "=")
	if textproto.TrimString(n) != name {
		return "", false
	}
	if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	return v, strings.IndexByte(v, '\n') < 0 && strings.IndexByte(v, '\r') < 0
}

// validCookieValue reports whether every byte of v may be in a cookie
// value, by net/http's rule.
func validCookieValue(v string) bool {
	for i := range len(v) {
		if b := v[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return false
		}
	}
	return true
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(h) <= len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(h[len(p):]), true
}

// held is what lookup returns for a request that sent more guest cookies
// than maxCookies, none of those checked valid: it is served without a
// guest and without a cookie, so that cookies tossed in from elsewhere
// cannot replace the visitor's guest.
var held = &guest{}

// lookup returns the guest the request's cookie or bearer token names, nil
// when there is none (no credential, a bad one, or one the store does not
// know), or held. A first-visit cookie's guest is stored now (see
// storeFirstVisit), or shared with the sibling request that stored it. It
// slides the expiry once per RefreshAfter; the caller re-sets the cookie
// when renew says so. A non-nil error is a store failure. st is the
// middleware's state for r, nil elsewhere.
func (m *Manager) lookup(r *http.Request, st *reqState) (*guest, error) {
	c, now, fromCookie, crowded := m.credential(r)
	switch {
	case crowded:
		return held, nil
	case c.id == "":
		return nil, nil
	case now.IsZero(): // a bearer token
		now = time.Now()
	}
	if c.pending != nil {
		return m.lookupFirstVisit(r, st, &c, now)
	}
	ctx := r.Context()
	g := st.guestSlot()
	rec := g.read
	if rec == nil || g.rec != nil { // none, or a lookup earlier in the request holds it
		rec = new(Record)
	}
	err := m.getInto(ctx, c.id, rec, c.text)
	switch {
	case errors.Is(err, ErrNotFound):
		if fromCookie { // a signed cookie of a guest the store lost, or that expired there first
			m.metrics.unknown.Add(ctx, 1)
		}
		return nil, nil
	case err != nil:
		return nil, err
	}
	if !rec.live() || subtle.ConstantTimeCompare(c.tokenHash[:], rec.TokenHash[:]) != 1 || !now.Before(rec.Session.ExpiresAt) {
		return nil, nil
	}
	g.rec = rec
	if now.Sub(rec.Session.ExpiresAt.Add(-m.opts.Lifetime)) >= m.opts.RefreshAfter {
		if !m.refresh(ctx, g, now, fromCookie) {
			return nil, nil
		}
	}
	g.rec.Session.Token = c.token
	m.metrics.returning.Add(ctx, 1)
	return g, nil
}

// lookupFirstVisit is lookup for a first-visit cookie's guest, c.pending:
// stored now, or shared with the sibling request that stored it, or held
// in its cookie when the budget or a full store says no.
func (m *Manager) lookupFirstVisit(r *http.Request, st *reqState, c *credential, now time.Time) (*guest, error) {
	p := c.pending
	rec, err := m.storeFirstVisit(r, p, c.token, false, false, sourceFirstReturn, nil)
	switch {
	case notStored(err):
		// The budget or a full store said no, and nobody has stored it:
		// the guest lives on in its cookie, stored on a later visit. rec
		// is the record that was refused: its address and User-Agent are
		// the request's, already read.
		p.Session.Token = c.token
		p.Session.IPAddress, p.Session.UserAgent = rec.Session.IPAddress, rec.Session.UserAgent
		rec = p
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	g := st.guestSlot()
	g.rec, g.refused = rec, rec.Version == 0
	// A stored guest's cookie is re-set to its short form; one held in its
	// cookie, once past half its window, so that a visitor who browses
	// without updating keeps it however long it waits.
	g.renew = rec.Version > 0 || rec.Session.ExpiresAt.Sub(now) < m.opts.FirstVisitWindow/2
	return g, nil
}

// refresh slides g's expiry to a Lifetime from now, and asks for its
// cookie to be renewed. It reports false when the guest is gone. A failed
// refresh leaves the guest valid: the next request tries again.
func (m *Manager) refresh(ctx context.Context, g *guest, now time.Time, fromCookie bool) bool {
	next := *g.rec
	next.Session.ExpiresAt, next.Session.UpdatedAt = now.Add(m.opts.Lifetime), now
	switch err := m.put(ctx, &next, 0, false, false); {
	case errors.Is(err, ErrNotFound):
		return false
	case err != nil:
		// Only the extension failed, or another request wrote the guest
		// meanwhile.
		if !errors.Is(err, ErrConflict) {
			m.log.WarnContext(ctx, "anonymous: refreshing guest expiry failed", "guest", next.User.ID, "err", err)
		}
	default:
		next.Version++
		g.rec = &next
		g.renew = fromCookie // a bearer client has no cookie to renew
	}
	return true
}

// load is lookup for code that answers the request itself, such as the
// endpoints: it re-sets the cookie at once when lookup asks for it.
func (m *Manager) load(w http.ResponseWriter, r *http.Request, st *reqState) (*guest, error) {
	g, err := m.lookup(r, st)
	m.renewCookie(w, st, g)
	return g, err
}

// renewCookie re-sets the guest's cookie when lookup asked for it: the
// short form of a stored guest, the long form, with a new window, of one
// held in its cookie.
func (m *Manager) renewCookie(w http.ResponseWriter, st *reqState, g *guest) {
	if g == nil || !g.renew {
		return
	}
	now := time.Now()
	if g.rec.Version == 0 {
		m.setCookie(w, st, g.rec.Session.Token, now, now.Add(m.opts.FirstVisitWindow), g.rec)
		return
	}
	m.setCookie(w, st, g.rec.Session.Token, now, g.rec.Session.ExpiresAt, nil)
}

// issue creates a new guest and sets its cookie. With a source, it is
// stored now; when the client's budget is spent or the store is full, strict
// returns that error (ErrOverBudget, with how long to wait, or ErrStoreFull)
// and sets no cookie, and otherwise the guest is not stored. A guest not
// stored lives in its cookie until the visitor returns, for at most
// FirstVisitWindow. st is the middleware's state for r, nil elsewhere.
func (m *Manager) issue(w http.ResponseWriter, r *http.Request, source string, strict bool, st *reqState) (*guest, time.Duration, error) {
	rec, token, err := m.newGuest(r, time.Now())
	if err != nil {
		return nil, 0, err
	}
	if source != "" {
		wait, err := m.storeNew(r, rec, source)
		switch {
		case err == nil:
			rec.Version = 1
		case strict || !notStored(err):
			return nil, wait, err
		}
	}
	if rec.Version == 1 {
		m.setCookie(w, st, token, rec.Session.CreatedAt, rec.Session.ExpiresAt, nil)
	} else {
		m.setCookie(w, st, token, rec.Session.CreatedAt, rec.Session.CreatedAt.Add(m.opts.FirstVisitWindow), rec)
	}
	rec.Session.Token = token
	m.warnPlainHTTP(r)
	m.metrics.issued.Add(r.Context(), 1)
	g := st.guestSlot()
	g.rec, g.issued, g.refused = rec, true, source != "" && rec.Version == 0
	return g, 0, nil
}

// DeleteGuest deletes the guest with this id, as the delete-anonymous-user
// endpoint does for its visitor: its data and session are gone, its cookie
// opens nothing, and OnGuestDeleted runs. It returns ErrNotFound when there
// is no such guest (or it was linked), and an error wrapping ErrClaimed
// while it is being linked.
func (m *Manager) DeleteGuest(ctx context.Context, id string) error {
	rec, err := m.get(ctx, id)
	if err != nil {
		return err
	}
	return m.delete(ctx, rec, DeletedByApplication)
}

// delete buries guest rec and tells OnGuestDeleted.
func (m *Manager) delete(ctx context.Context, rec *Record, reason DeleteReason) error {
	if rec.Version == 0 {
		// Never stored (held in its cookie): there is nothing to delete
		// but the cookie, which the caller expires.
		m.deleted(ctx, &rec.User, reason)
		return nil
	}
	_, err := m.modify(ctx, rec, func(rec *Record) error {
		switch {
		case !rec.live():
			return ErrNotFound
		case rec.leased(time.Now()):
			return fmt.Errorf("anonymous: deleting guest %s: %w", rec.User.ID, ErrClaimed)
		}
		bury(rec, "", false)
		return nil
	})
	if err == nil {
		m.deleted(ctx, &rec.User, reason)
	}
	return err
}

// deleted counts a deleted guest and runs OnGuestDeleted, if set.
func (m *Manager) deleted(ctx context.Context, u *User, reason DeleteReason) {
	m.metrics.deleted.Add(ctx, 1, m.metrics.deletedBy[reason]...)
	if m.opts.OnGuestDeleted != nil {
		m.opts.OnGuestDeleted(ctx, u, reason)
	}
}
