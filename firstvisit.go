package anonymous

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// A first-visit cookie (the default, without PersistOnIssue) carries a
// whole guest that is not stored yet. The request that brings it back
// stores the guest, under a token derived from the cookie's own: every
// request of the page that carries the same cookie at the same time (a
// page's parallel requests) derives the same token, so each is served the
// one guest and handed the same new cookie, and nothing is written to say
// the new cookie was seen.
// The derivation is keyed, so that holding the first-visit cookie is not
// enough to compute the stored token.

// siblingWindow is the grace, counted from the moment a guest was first
// stored, during which another request carrying its first-visit cookie is
// taken for a sibling of the storing request and served the guest. A copy
// presented after it (one planted in another browser) gets a guest of its
// own. The moment is the storing instance's clock, read against the serving
// one's: instances' clocks must agree within a second or so.
const siblingWindow = 10 * time.Second

// tokenKeyLabel is what each Key's hash key signs to give the key that
// derives stored tokens, so that no key serves two purposes.
const tokenKeyLabel = "anonymous: stored token of a first-visit cookie"

// tokenMAC is an HMAC state keyed to derive stored tokens, with room for
// its input and sum: a hash.Hash's arguments escape, and would otherwise
// cost an allocation each.
type tokenMAC struct {
	h   hash.Hash
	buf [tokenSize + sha256.Size]byte
}

// tokenKeys returns pools of tokenMACs keyed with the keys that derive
// stored tokens, one per Key, in the same order: keying an HMAC costs more
// than using it.
func tokenKeys(keys []Key) []*sync.Pool {
	out := make([]*sync.Pool, len(keys))
	for i, k := range keys {
		h := hmac.New(sha256.New, k.Hash)
		h.Write([]byte(tokenKeyLabel))
		key := h.Sum(nil)
		out[i] = &sync.Pool{New: func() any { return &tokenMAC{h: hmac.New(sha256.New, key)} }}
	}
	return out
}

// storedToken is the token a guest from a first-visit cookie with token
// first is stored under: its id, a dot, and the HMAC of first under key, in
// unpadded base64url.
func storedToken(key *sync.Pool, first string) string {
	m := key.Get().(*tokenMAC)
	defer key.Put(m)
	m.h.Reset()
	n := copy(m.buf[:tokenSize], first)
	m.h.Write(m.buf[:n])
	sum := m.h.Sum(m.buf[tokenSize:tokenSize])
	var t [tokenSize]byte
	copy(t[:], tokenID(first))
	t[ulid.EncodedSize] = '.'
	base64.RawURLEncoding.Encode(t[ulid.EncodedSize+1:], sum)
	return string(t[:])
}

// firstStored is rec, a guest not stored yet, as it is first stored: under
// token, with a whole Lifetime from now. User.UpdatedAt records the moment,
// which no later write changes: the sibling grace counts from it.
func (m *Manager) firstStored(rec *Record, token string, now time.Time) Record {
	now = now.UTC().Truncate(time.Millisecond)
	next := *rec
	next.Session.Token, next.TokenHash = "", sha256.Sum256([]byte(token))
	next.Session.ExpiresAt, next.Session.UpdatedAt, next.User.UpdatedAt = now.Add(m.opts.Lifetime), now, now
	return next
}

// storeFirstVisit stores p, a guest that lives in its first-visit cookie
// with token first, with apply's change (nil for none), if the budget of r's
// client allows; or, when a sibling request stored it, applies apply to the
// stored guest. issued says that p was made on this request: no response
// has carried first yet, so no sibling can have stored it; refused, that
// the budget refused to store it on this request, and is not asked again.
// It returns the guest as stored, its Session.Token set. A guest the
// budget or a full store keeps out is an error for which notStored holds,
// returned with the record that was refused (apply's change made); one
// that is not this request's to share (see sibling) is ErrNotFound;
// apply's own error is returned as it is.
func (m *Manager) storeFirstVisit(r *http.Request, p *Record, first string, issued, refused bool, source string, apply func(*Record) error) (*Record, error) {
	if !issued {
		// A sibling that comes after the store finds the guest without
		// spending the budget.
		if rec, found, err := m.storedSibling(r, p.User.ID, first, apply); found {
			return rec, err
		}
	}
	token := storedToken(m.tokenKeys[0], first)
	now := time.Now()
	next := m.firstStored(p, token, now)
	next.Session.IPAddress, next.Session.UserAgent = m.clientIP(r), userAgent(r)
	if source == sourceLink {
		// Stored to be linked at once: its record need outlive only the
		// cookies that could replay it, which FirstVisitWindow bounds (a
		// failed link's guest gets its Lifetime at its next refresh).
		next.Session.ExpiresAt = now.Add(m.opts.FirstVisitWindow)
	}
	if apply != nil {
		if err := apply(&next); err != nil {
			return nil, err
		}
	}
	if refused {
		return &next, ErrOverBudget
	}
	var u *unconfirmed
	switch err := m.storeShared(r, &next, source, issued); {
	case errors.As(err, &u):
		// Stored, though the store did not confirm it: the guest is
		// stored all the same, and whoever asked must let go of it.
		u.rec.Session.Token = token
		return u.rec, err
	case errors.Is(err, ErrExists): // a sibling stored it meanwhile
		rec, err := m.get(r.Context(), p.User.ID)
		if err != nil {
			return nil, err
		}
		return m.sibling(r, rec, first, apply)
	case notStored(err) && !issued:
		return m.siblingAfterRefusal(r, &next, first, apply, err)
	case notStored(err):
		return &next, err
	case err != nil:
		return nil, err
	}
	next.Version, next.Session.Token = 1, token
	return &next, nil
}

// storeShared is storeNew for rec, a first-visit guest that a sibling
// request may be storing too (unless issued on this request): it counts the
// attempt in m.storing while it lasts.
func (m *Manager) storeShared(r *http.Request, rec *Record, source string, issued bool) error {
	if !issued {
		defer m.storing.leave(rec.User.ID, m.storing.enter(rec.User.ID))
	}
	_, err := m.storeNew(r, rec, source)
	return err
}

// siblingAfterRefusal is storeFirstVisit for next, a guest that the budget
// or a full store refused (err) on a request that brought its first-visit
// cookie: when a sibling request stores it all the same (the budget charged
// that one, then refused this one), it is that sibling's guest, shared as
// any sibling's, and the budget is not charged again. A sibling of this
// process may be between its charge and its store: wait for it first.
// Otherwise next is returned, with err.
func (m *Manager) siblingAfterRefusal(r *http.Request, next *Record, first string, apply func(*Record) error, err error) (*Record, error) {
	m.storing.wait(r.Context(), next.User.ID)
	if rec, found, gerr := m.storedSibling(r, next.User.ID, first, apply); found {
		return rec, gerr
	}
	return next, err
}

// storedSibling reads guest id and, when the store has it, serves it as r's
// sibling (see sibling); found is false when the store has no such guest.
// A failed read is found, with its error: the guest may be stored.
func (m *Manager) storedSibling(r *http.Request, id, first string, apply func(*Record) error) (rec *Record, found bool, err error) {
	rec, err = m.get(r.Context(), id)
	switch {
	case err == nil:
		rec, err = m.sibling(r, rec, first, apply)
		return rec, true, err
	case errors.Is(err, ErrNotFound):
		return nil, false, nil
	}
	return nil, true, err
}

// storeOnce stores g's guest, which was not stored when the request began,
// with apply's change (see storeFirstVisit), and re-sets its cookie in w:
// once per request, however many of its goroutines update or link it.
// Later calls return the guest as stored, and applied false: apply was not
// run. When the budget or a full store keeps it out, an update
// (sourceData) keeps the guest's data in its first-visit cookie instead
// (see holdInCookie); a link, which the budget does not bound, gets the
// error of a full store.
func (m *Manager) storeOnce(w http.ResponseWriter, r *http.Request, g *guest, source string, apply func(*Record) error) (rec *Record, applied bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stored != nil && g.stored.Version > 0 {
		return g.stored, false, nil
	}
	cur := g.rec
	if g.stored != nil {
		cur = g.stored // held in its cookie, updated earlier in this request
	}
	// A guest the budget refused on this very request is not asked about
	// again (a sibling may have stored it meanwhile all the same).
	refused := g.refused && source == sourceData
	next, err := m.storeFirstVisit(r, cur, cur.Session.Token, g.issued, refused, source, apply)
	switch {
	case notStored(err) && source == sourceData:
		if err := m.holdInCookie(w, g, cur, next.Data); err != nil {
			return nil, false, err
		}
		return g.stored, true, nil
	case err != nil && next != nil && next.Version > 0:
		// Stored, but not confirmed (see unconfirmed): the guest is the
		// stored one from now on, and the caller gets the error.
		g.stored = next
		m.replaceCookie(w, next.Session.Token, time.Now(), next.Session.ExpiresAt, nil)
		return next, true, err
	case err != nil:
		return nil, false, err
	}
	g.stored = next
	m.replaceCookie(w, next.Session.Token, time.Now(), next.Session.ExpiresAt, nil)
	return next, true, nil
}

// holdInCookie keeps data, the new data of cur, a guest the budget or a
// full store kept from being stored, in its first-visit cookie: at most
// maxCookieData bytes, and the cookie's window starts again, so that an
// active visitor keeps its cart while it waits to be stored. g.mu is held.
func (m *Manager) holdInCookie(w http.ResponseWriter, g *guest, cur *Record, data []byte) error {
	if len(data) > maxCookieData {
		return fmt.Errorf("%w: %d bytes, over the %d a guest not stored yet keeps in its cookie", ErrDataTooLarge, len(data), maxCookieData)
	}
	held := *cur
	held.Data = data
	now := time.Now()
	m.replaceCookie(w, held.Session.Token, now, now.Add(m.opts.FirstVisitWindow), &held)
	g.stored = &held
	return nil
}

// sibling returns rec, a guest stored from the first-visit cookie with token
// first, with apply's change (nil for none), when r is a sibling of the
// request that stored it: rec is live, was stored within the grace, by the
// same client (as Budget.Client names it: an IPv4 address or IPv6 /64),
// under the token derived from first. Anything else is ErrNotFound: the
// first-visit cookie opens nothing, and its holder gets a guest of its own.
// The client keeps a copy planted in another browser, and presented while
// the grace runs, out.
func (m *Manager) sibling(r *http.Request, rec *Record, first string, apply func(*Record) error) (*Record, error) {
	if !rec.live() || time.Since(rec.User.UpdatedAt) >= siblingWindow ||
		!sameClient(ClientAddr(rec.Session.IPAddress), m.clientAddr(r)) {
		return nil, ErrNotFound
	}
	if rec.Session.Token = m.siblingToken(rec, first); rec.Session.Token == "" {
		return nil, ErrNotFound
	}
	if apply == nil {
		return rec, nil
	}
	return m.modify(r.Context(), rec, apply)
}

// siblingToken returns the token rec was stored under if it was derived
// from first with any of the keys (an instance with another key first may
// have stored it), else "".
func (m *Manager) siblingToken(rec *Record, first string) string {
	for _, k := range m.tokenKeys {
		t := storedToken(k, first)
		if h := sha256.Sum256([]byte(t)); subtle.ConstantTimeCompare(h[:], rec.TokenHash[:]) == 1 {
			return t
		}
	}
	return ""
}

// sameClient reports whether the addresses x and y are one client's: one
// IPv4 address (an embedded one included) or one IPv6 /64.
func sameClient(x, y netip.Addr) bool {
	if x4, ok := embeddedIPv4(x); ok {
		x = x4
	}
	if y4, ok := embeddedIPv4(y); ok {
		y = y4
	}
	if !x.Is6() || !y.Is6() {
		return x == y
	}
	px, _ := x.Prefix(64)
	py, _ := y.Prefix(64)
	return px == py
}
