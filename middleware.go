package anonymous

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/securecookie"
)

// ctxKey is the context key of a request's reqState.
type ctxKey struct{}

// reqState is what the middleware learned about a request: its user (a
// guest or a real user) and, for a guest, the session.
type reqState struct {
	user    *User
	session *Session
	// guest is the request's guest, nil for a real user or nobody.
	guest *Record
	// stored is false for a guest that exists only in its cookie so far.
	stored bool
	// renew asks for the cookie to be re-set in its short form: the guest
	// was just stored, or its expiry moved.
	renew bool
	// linkErr is the middleware's link of this request's guest to its real
	// user, for Link to report rather than run again.
	linkErr error
}

// UserFrom returns the request's user: a guest (IsAnonymous true) or the real
// user Options.Identify named. It returns nil outside the middleware, for a
// skipped request, when Options.Identify failed, or when the store failed
// (see Options.OnStoreError).
// The result is shared by the request: do not modify it.
func UserFrom(ctx context.Context) *User {
	if s, _ := ctx.Value(ctxKey{}).(*reqState); s != nil {
		return s.user
	}
	return nil
}

// SessionFrom returns the guest's session, nil when the request has no
// guest. The result is shared by the request: do not modify it.
func SessionFrom(ctx context.Context) *Session {
	if s, _ := ctx.Value(ctxKey{}).(*reqState); s != nil {
		return s.session
	}
	return nil
}

func withState(r *http.Request, s *reqState) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), ctxKey{}, s))
}

// Middleware loads the request's guest, issues one to a new visitor, links
// the guest when Options.Identify names a real user, and puts the user in the
// request's context (see UserFrom and SessionFrom) before calling next. It
// sets the cookie before next runs and wraps no ResponseWriter.
//
// A cookie that fails to decode, has expired, or names a guest the store
// does not have counts as no cookie: the visitor gets a fresh guest. When the
// store fails, the visitor's cookie is left untouched (see
// Options.OnStoreError). Requests under Options.BasePath pass through: the
// JSON endpoints (Handler) do their own work.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.skip(r) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Cookie")
		real, err := m.realUser(r)
		if err != nil {
			// The application's own auth failed: neither link nor issue.
			m.log.ErrorContext(r.Context(), "anonymous: Identify failed", "err", err)
			next.ServeHTTP(w, r)
			return
		}
		if real != nil {
			next.ServeHTTP(w, withState(r, m.linkOnRequest(w, r, real)))
			return
		}
		st, err := m.load(w, r)
		if err == nil && st == nil {
			st, err = m.issue(w, r, m.opts.Persist == PersistOnIssue)
		}
		if err != nil {
			m.storeFailed(w, r, next, err)
			return
		}
		next.ServeHTTP(w, withState(r, st))
	})
}

// linkOnRequest links the request's guest, if any, to the real user
// Identify named, and returns the state the handler sees: that user. A real
// user needs no store, so a store failure only postpones the link.
func (m *Manager) linkOnRequest(w http.ResponseWriter, r *http.Request, real *User) *reqState {
	st, err := m.lookup(r)
	if err != nil {
		m.log.ErrorContext(r.Context(), "anonymous: store failed; the guest is linked later", "user", real.ID, "err", err)
		return &reqState{user: real}
	}
	if st == nil {
		return &reqState{user: real}
	}
	if err = m.link(w, r, st, real); err != nil {
		if !errors.Is(err, ErrClaimed) {
			m.log.ErrorContext(r.Context(), "anonymous: linking guest failed; it is kept and retried on its next request",
				"guest", st.guest.User.ID, "user", real.ID, "err", err)
		}
		m.renewCookie(w, st)
	}
	return &reqState{user: real, linkErr: err}
}

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

func (m *Manager) skip(r *http.Request) bool {
	return m.underBasePath(r.URL.Path) || (m.opts.Skip != nil && m.opts.Skip(r))
}

func (m *Manager) underBasePath(p string) bool {
	b := m.opts.BasePath
	return strings.HasPrefix(p, b) && (len(p) == len(b) || p[len(b)] == '/')
}

// storeFailed applies Options.OnStoreError; the visitor's cookie is never
// touched, so its guest comes back with the store.
func (m *Manager) storeFailed(w http.ResponseWriter, r *http.Request, next http.Handler, err error) {
	m.log.ErrorContext(r.Context(), "anonymous: store failed; serving the request without a guest", "err", err)
	if m.opts.OnStoreError == FailClosed {
		http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		return
	}
	next.ServeHTTP(w, r)
}

// lookup returns the guest the request's cookie or bearer token names, nil
// when there is none (no credential, a bad one, or one the store does not
// know). It stores a guest that so far lived only in its cookie, and slides
// the expiry once per RefreshAfter; the caller re-sets the cookie when
// renew says so. A non-nil error is a store failure.
func (m *Manager) lookup(r *http.Request) (*reqState, error) {
	now := m.opts.Now()
	c, fromCookie := m.credential(r, now)
	if c == nil {
		return nil, nil
	}
	ctx := r.Context()
	if c.pending != nil {
		c.pending.Session.IPAddress, c.pending.Session.UserAgent = clientIP(r), userAgent(r)
		err := m.store.Create(ctx, c.pending)
		if err == nil {
			st := m.state(c.pending, c.token, true)
			st.renew = true
			return st, nil
		}
		if !errors.Is(err, ErrExists) {
			return nil, err
		}
		// Another request stored it first, or it was linked or deleted: the
		// store's word is final.
	}
	rec, err := m.store.Get(ctx, c.id)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	if subtle.ConstantTimeCompare(c.tokenHash[:], rec.TokenHash[:]) != 1 || !now.Before(rec.Session.ExpiresAt) {
		return nil, nil
	}
	st := m.state(rec, c.token, true)
	if now.Sub(rec.Session.ExpiresAt.Add(-m.opts.Lifetime)) >= m.opts.RefreshAfter {
		exp := now.Add(m.opts.Lifetime)
		switch err := m.store.Touch(ctx, rec.User.ID, exp, now); {
		case errors.Is(err, ErrNotFound):
			return nil, nil
		case err != nil:
			// The guest is valid; only its extension failed. Try again next time.
			m.log.WarnContext(ctx, "anonymous: refreshing guest expiry failed", "guest", rec.User.ID, "err", err)
		default:
			rec.Session.ExpiresAt, rec.Session.UpdatedAt = exp, now
			st.renew = fromCookie // a bearer client has no cookie to renew
		}
	}
	return st, nil
}

// load is lookup for code that answers the request itself, such as the
// endpoints: it re-sets the cookie at once when lookup asks for it.
func (m *Manager) load(w http.ResponseWriter, r *http.Request) (*reqState, error) {
	st, err := m.lookup(r)
	m.renewCookie(w, st)
	return st, err
}

// renewCookie re-sets the guest's cookie when lookup asked for it.
func (m *Manager) renewCookie(w http.ResponseWriter, st *reqState) {
	if st != nil && st.renew {
		m.setCookie(w, st.session.Token, st.session.ExpiresAt, nil)
	}
}

func (m *Manager) state(rec *Record, token string, stored bool) *reqState {
	rec.Session.Token = token
	return &reqState{user: &rec.User, session: &rec.Session, guest: rec, stored: stored}
}

// issue creates a new guest and sets its cookie. With persist, it is stored
// now; otherwise the cookie carries it until the visitor returns.
func (m *Manager) issue(w http.ResponseWriter, r *http.Request, persist bool) (*reqState, error) {
	rec, token, err := m.newGuest(r)
	if err != nil {
		return nil, err
	}
	if persist {
		if err := m.store.Create(r.Context(), rec); err != nil {
			return nil, err
		}
		m.setCookie(w, token, rec.Session.ExpiresAt, nil)
	} else {
		m.setCookie(w, token, rec.Session.ExpiresAt, rec)
	}
	return m.state(rec, token, persist), nil
}

// setCookie sets the guest cookie: the short form (token and expiry) for a
// stored guest, the long form (the whole guest) for a pending one.
func (m *Manager) setCookie(w http.ResponseWriter, token string, exp time.Time, pending *Record) {
	line := make([]byte, 0, 640)
	line = append(append(line, m.opts.CookieName...), '=')
	line, err := m.cc.appendEncoded(line, token, exp, pending)
	if err != nil {
		// newGuest bounds every field, so this is a bug, not bad input.
		m.log.Error("anonymous: encoding the guest cookie failed", "err", err)
		return
	}
	m.writeCookie(w, line, max(int(exp.Sub(m.opts.Now()).Round(time.Second)/time.Second), 1))
}

// expireCookie tells the browser to drop the guest cookie.
func (m *Manager) expireCookie(w http.ResponseWriter) {
	m.writeCookie(w, append([]byte(m.opts.CookieName), '='), 0)
}

// writeCookie finishes and writes a Set-Cookie line that starts with
// "name=value". The middleware writes it itself: the value is base64url and
// the attributes were checked by New, so http.SetCookie's sanitising of
// every byte would be work done twice.
func (m *Manager) writeCookie(w http.ResponseWriter, line []byte, maxAge int) {
	line = append(line, "; Max-Age="...)
	line = strconv.AppendInt(line, int64(maxAge), 10)
	line = append(line, m.cookieAttrs...)
	h := w.Header()
	h["Set-Cookie"] = append(h["Set-Cookie"], string(line))
	h.Set("Cache-Control", `no-cache="Set-Cookie"`)
}

// cookieAttributes renders the guest cookie's fixed attributes once.
func cookieAttributes(o *Options) string {
	a := "; Path=" + o.CookiePath
	if o.CookieDomain != "" {
		a += "; Domain=" + strings.TrimPrefix(o.CookieDomain, ".")
	}
	a += "; HttpOnly"
	if !o.CookieInsecure {
		a += "; Secure"
	}
	switch o.CookieSameSite {
	case http.SameSiteStrictMode:
		a += "; SameSite=Strict"
	case http.SameSiteNoneMode:
		a += "; SameSite=None"
	default:
		a += "; SameSite=Lax"
	}
	return a
}

// credential is a decoded guest credential.
type credential struct {
	id, token string
	// tokenHash is the SHA-256 of token, hashed from the cookie's own bytes
	// (hashing the string would copy it to the heap).
	tokenHash [sha256.Size]byte
	// pending is the whole guest, for a long-form cookie of a guest not
	// stored yet (PersistOnReturn).
	pending *Record
}

// credential reads the guest cookie, or else an "Authorization: Bearer"
// token. Anything malformed, forged or expired is nil. fromCookie tells
// whether the cookie (which the middleware keeps up to date) was the source.
func (m *Manager) credential(r *http.Request, now time.Time) (c *credential, fromCookie bool) {
	if ck, err := r.Cookie(m.opts.CookieName); err == nil && ck.Value != "" {
		c, _ := m.cc.decode(ck.Value, now) // nil for any error
		return c, true
	}
	if tok, ok := bearer(r); ok {
		if id := tokenID(tok); id != "" {
			return &credential{id: id, token: tok, tokenHash: sha256.Sum256([]byte(tok))}, false
		}
	}
	return nil, false
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(h) <= len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(h[len(p):]), true
}

// cookieCodec signs (and optionally encrypts) guest cookies with
// securecookie, the cookie name inside the MAC, several key pairs for
// rotation. The payload is a compact binary form, not gob.
type cookieCodec struct {
	name   string
	codecs []securecookie.Codec
	// macs verifies sign-only cookies, securecookie's format, with pooled
	// HMAC states: securecookie keys a new HMAC on every call, the largest
	// cost of a returning visitor. One pool per hash key, newest first; nil
	// when a pair encrypts, and securecookie decodes.
	macs []*sync.Pool
	// namePipe is "name|", the MAC's prefix, built once: a conversion per
	// call escapes through hash.Hash.
	namePipe []byte
}

// maxCookie is securecookie's bound on an encoded value.
const maxCookie = 4096

// decodeBufs hold a cookie's bytes and its base64-decoded form.
var decodeBufs = sync.Pool{New: func() any { return new([2 * maxCookie]byte) }}

// Payload kinds: a stored guest's short form and a pending guest's long form.
const (
	kindStored  = 's'
	kindPending = 'p'
	// maxField bounds each string in a payload (a generated email or name
	// included), keeping the cookie well under securecookie's 4096 bytes.
	maxField = 256
)

var errPayload = errors.New("anonymous: malformed cookie payload")

func newCookieCodec(name string, keys [][]byte) (*cookieCodec, error) {
	keys = append([][]byte(nil), keys...) // the caller's slice stays as it was
	if len(keys)%2 != 0 {
		keys = append(keys, nil) // a trailing hash key without its block key
	}
	for i := 0; i < len(keys); i += 2 {
		if n := len(keys[i]); n != 32 && n != 64 {
			return nil, fmt.Errorf("key %d is a %d-byte hash key, want 32 or 64 bytes", i, n)
		}
		if n := len(keys[i+1]); n != 0 && n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("key %d is a %d-byte block key, want none, 16, 24 or 32 bytes", i+1, n)
		}
		if len(keys[i+1]) == 0 {
			keys[i+1] = nil // an empty block key means "sign only"
		}
	}
	codecs := securecookie.CodecsFromPairs(keys...)
	for _, c := range codecs {
		// Expiry is checked against the payload with Options.Now, so tests
		// can move the clock; securecookie's own check uses the wall clock.
		c.(*securecookie.SecureCookie).MaxAge(0).SetSerializer(securecookie.NopEncoder{})
	}
	cc := &cookieCodec{name: name, codecs: codecs, namePipe: []byte(name + "|")}
	for i := 0; i < len(keys); i += 2 {
		if keys[i+1] != nil {
			cc.macs = nil
			break
		}
		key := keys[i]
		cc.macs = append(cc.macs, &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }})
	}
	if _, err := cc.appendEncoded(nil, "x", time.Now(), nil); err != nil {
		return nil, fmt.Errorf("cookie keys: %w", err)
	}
	return cc, nil
}

// scratch holds a payload and its signed form while a cookie is encoded.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// appendEncoded appends the cookie value to dst. The payload is the kind,
// the expiry (Unix seconds), the token, and for a pending guest the rest of
// it.
func (cc *cookieCodec) appendEncoded(dst []byte, token string, exp time.Time, pending *Record) ([]byte, error) {
	sp := scratch.Get().(*[]byte)
	defer scratch.Put(sp)
	b := (*sp)[:0]
	if pending == nil {
		b = append(b, kindStored)
	} else {
		b = append(b, kindPending)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(exp.Unix()))
	b = appendString(b, token)
	if pending != nil {
		u, s := &pending.User, &pending.Session
		b = binary.BigEndian.AppendUint64(b, uint64(u.CreatedAt.UnixMilli()))
		b = appendString(b, s.ID)
		b = appendString(b, u.Email)
		b = appendString(b, u.Name)
	}
	*sp = b
	if cc.macs == nil {
		v, err := securecookie.EncodeMulti(cc.name, b, cc.codecs[0])
		return append(dst, v...), err
	}
	// securecookie's Encode for a sign-only pair, with a pooled HMAC:
	// base64("date|base64(payload)|mac"), the mac over
	// "name|date|base64(payload)". The date is informational, as there.
	n := len(b)
	b = strconv.AppendInt(b, time.Now().Unix(), 10)
	b = append(b, '|')
	b = base64.URLEncoding.AppendEncode(b, b[:n])
	h := cc.macs[0].Get().(hash.Hash)
	h.Reset()
	h.Write(cc.namePipe)
	h.Write(b[n:])
	b = h.Sum(append(b, '|'))
	cc.macs[0].Put(h)
	*sp = b
	if e := base64.URLEncoding.EncodedLen(len(b) - n); e > maxCookie {
		return dst, fmt.Errorf("anonymous: encoded cookie is %d bytes, over %d", e, maxCookie)
	}
	return base64.URLEncoding.AppendEncode(dst, b[n:]), nil
}

// decode verifies and parses a cookie value; an expired payload is an error.
func (cc *cookieCodec) decode(value string, now time.Time) (*credential, error) {
	var b []byte
	if cc.macs == nil {
		var err error
		if b, err = cc.decodeSecure(value); err != nil {
			return nil, err
		}
	} else {
		buf := decodeBufs.Get().(*[2 * maxCookie]byte)
		defer decodeBufs.Put(buf)
		var err error
		if b, err = cc.verify(value, buf); err != nil {
			return nil, err
		}
	}
	if len(b) < 9 || (b[0] != kindStored && b[0] != kindPending) {
		return nil, errPayload
	}
	kind := b[0]
	exp := time.Unix(int64(binary.BigEndian.Uint64(b[1:9])), 0)
	if !now.Before(exp) {
		return nil, errors.New("anonymous: cookie expired")
	}
	b = b[9:]
	raw, b, ok := readBytes(b)
	token := string(raw)
	id := tokenID(token)
	if !ok || id == "" {
		return nil, errPayload
	}
	c := &credential{id: id, token: token, tokenHash: sha256.Sum256(raw)}
	if kind == kindStored {
		if len(b) != 0 {
			return nil, errPayload
		}
		return c, nil
	}
	if len(b) < 8 {
		return nil, errPayload
	}
	created := time.UnixMilli(int64(binary.BigEndian.Uint64(b))).UTC()
	b = b[8:]
	sid, b, ok1 := readString(b)
	email, b, ok2 := readString(b)
	name, b, ok3 := readString(b)
	if !ok1 || !ok2 || !ok3 || len(b) != 0 {
		return nil, errPayload
	}
	c.pending = &Record{
		User: User{ID: id, Email: email, Name: name, CreatedAt: created, UpdatedAt: created, IsAnonymous: true},
		Session: Session{
			ID: sid, UserID: id, ExpiresAt: exp, CreatedAt: created, UpdatedAt: created,
		},
		TokenHash: c.tokenHash,
	}
	return c, nil
}

// decodeSecure decodes through securecookie (encrypted pairs), apart from
// decode so that its &b, which escapes, leaves decode's b on the stack.
func (cc *cookieCodec) decodeSecure(value string) ([]byte, error) {
	var b []byte
	err := securecookie.DecodeMulti(cc.name, value, &b, cc.codecs...)
	return b, err
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readBytes(b []byte) ([]byte, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxField || uint64(len(b)-k) < n {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

func readString(b []byte) (string, []byte, bool) {
	v, rest, ok := readBytes(b)
	return string(v), rest, ok
}

var errMAC = errors.New("anonymous: cookie signature is not valid")

// verify checks a sign-only securecookie value, base64("date|value|mac")
// where mac signs "name|date|value" and value is base64(payload), and
// returns the payload, decoded into buf's first half.
func (cc *cookieCodec) verify(value string, buf *[2 * maxCookie]byte) ([]byte, error) {
	if len(value) > maxCookie {
		return nil, errPayload
	}
	src, raw := buf[:copy(buf[:maxCookie], value)], buf[maxCookie:]
	n, err := base64.URLEncoding.Decode(raw, src)
	if err != nil {
		return nil, errPayload
	}
	raw = raw[:n]
	// The date and the base64 value hold no '|'; the binary mac may.
	i := bytes.IndexByte(raw, '|')
	if i < 0 {
		return nil, errMAC
	}
	j := bytes.IndexByte(raw[i+1:], '|') + i + 1
	if j <= i {
		return nil, errMAC
	}
	signed, mac := raw[:j], raw[j+1:]
	ok := false
	for _, p := range cc.macs {
		h := p.Get().(hash.Hash)
		h.Reset()
		h.Write(cc.namePipe)
		h.Write(signed)
		// The sum goes into buf's first half, free until the value is decoded.
		ok = hmac.Equal(h.Sum(buf[:0]), mac)
		p.Put(h)
		if ok {
			break
		}
	}
	if !ok {
		return nil, errMAC
	}
	// The first half held the encoded cookie, no longer needed.
	m, err := base64.URLEncoding.Decode(buf[:maxCookie], raw[i+1:j])
	if err != nil {
		return nil, errPayload
	}
	return buf[:m], nil
}
