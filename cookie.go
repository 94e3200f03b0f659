package anonymous

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/securecookie"
)

// The guest cookie is in gorilla/securecookie's format, so that its keys
// rotate as securecookie's do and any securecookie codec with the same keys
// reads and writes it. Its payload is a compact binary form, not gob.

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
	// maxCookieData bounds the data a guest held in its first-visit cookie
	// keeps there. The cookie's value is base64 of base64, about 371 + 1.78
	// bytes per byte of data: a Set-Cookie near 4 KB breaks browsers'
	// 4096-byte limit and reverse proxies' default 4 KB header buffers.
	maxCookieData = 1 << 10
)

var errPayload = errors.New("anonymous: malformed cookie payload")

// newCookieCodec checks the key pairs and builds their codecs.
func newCookieCodec(name string, keys []Key) (*cookieCodec, error) {
	pairs := make([][]byte, 0, 2*len(keys))
	signOnly := true
	for i, k := range keys {
		if err := checkKey(keys, i); err != nil {
			return nil, err
		}
		block := k.Block
		if len(block) == 0 {
			block = nil // an empty block key means "sign only"
		}
		signOnly = signOnly && block == nil
		pairs = append(pairs, k.Hash, block)
	}
	codecs := securecookie.CodecsFromPairs(pairs...)
	for _, c := range codecs {
		// Expiry is checked against the payload, whose date is exact;
		// securecookie's own check reads the date it wrote.
		c.(*securecookie.SecureCookie).MaxAge(0).SetSerializer(securecookie.NopEncoder{})
	}
	cc := &cookieCodec{name: name, codecs: codecs, namePipe: []byte(name + "|")}
	if signOnly {
		for _, k := range keys {
			key := bytes.Clone(k.Hash)
			cc.macs = append(cc.macs, &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }})
		}
	}
	if _, err := cc.appendEncoded(nil, "x", time.Now(), time.Now(), nil); err != nil {
		return nil, fmt.Errorf("cookie keys: %w", err)
	}
	return cc, nil
}

// checkKey reports what is wrong with keys[i], if anything.
func checkKey(keys []Key, i int) error {
	k := keys[i]
	switch n, b := len(k.Hash), len(k.Block); {
	case n != 32 && n != 64:
		return fmt.Errorf("Keys[%d].Hash is %d bytes, want 32 or 64", i, n)
	case b != 0 && b != 16 && b != 24 && b != 32:
		return fmt.Errorf("Keys[%d].Block is %d bytes, want none, 16, 24 or 32", i, b)
	case isZero(k.Hash):
		return fmt.Errorf("Keys[%d].Hash is all zero bytes: use random keys from a secret store", i)
	case b > 0 && isZero(k.Block):
		return fmt.Errorf("Keys[%d].Block is all zero bytes: use random keys from a secret store", i)
	case bytes.Equal(k.Hash, k.Block):
		return fmt.Errorf("Keys[%d].Block is its hash key: use two independent keys", i)
	}
	for j, o := range keys[:i] {
		if bytes.Equal(o.Hash, k.Hash) {
			return fmt.Errorf("Keys[%d].Hash repeats Keys[%d].Hash", i, j)
		}
	}
	return nil
}

// isZero reports whether every byte of b is zero: a key left unfilled.
func isZero(b []byte) bool { return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) }

// scratch holds a payload and its signed form while a cookie is encoded.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// appendEncoded appends the cookie value to dst. The payload is the kind,
// the expiry (Unix seconds), the token, and for a pending guest the rest of
// it, its data (at most maxCookieData bytes) last. now is the time securecookie's format records.
func (cc *cookieCodec) appendEncoded(dst []byte, token string, now, exp time.Time, pending *Record) ([]byte, error) {
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
		if len(pending.Data) > 0 {
			b = binary.AppendUvarint(b, uint64(len(pending.Data)))
			b = append(b, pending.Data...)
		}
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
	b = strconv.AppendInt(b, now.Unix(), 10)
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
func (cc *cookieCodec) decode(value string, now time.Time) (credential, error) {
	var b []byte
	if cc.macs == nil {
		var err error
		if b, err = cc.decodeSecure(value); err != nil {
			return credential{}, err
		}
	} else {
		buf := decodeBufs.Get().(*[2 * maxCookie]byte)
		defer decodeBufs.Put(buf)
		var err error
		if b, err = cc.verify(value, buf); err != nil {
			return credential{}, err
		}
	}
	if len(b) < 9 || (b[0] != kindStored && b[0] != kindPending) {
		return credential{}, errPayload
	}
	kind := b[0]
	exp := time.Unix(int64(binary.BigEndian.Uint64(b[1:9])), 0)
	if !now.Before(exp) {
		return credential{}, errors.New("anonymous: cookie expired")
	}
	b = b[9:]
	raw, b, ok := readBytes(b, maxField)
	if !ok {
		return credential{}, errPayload
	}
	room := 0
	if kind == kindStored {
		room = recordText
	}
	c := ownCredential(str(raw), room)
	if c.id == "" {
		return credential{}, errPayload
	}
	if kind == kindStored {
		if len(b) != 0 {
			return credential{}, errPayload
		}
		return c, nil
	}
	pending, err := decodePending(b, c.id, exp, c.tokenHash)
	if err != nil {
		return credential{}, err
	}
	c.pending = pending
	return c, nil
}

// decodePending parses the rest of a first-visit cookie's payload, b: the
// guest it carries, not stored yet.
func decodePending(b []byte, id string, exp time.Time, tokenHash [sha256.Size]byte) (*Record, error) {
	if len(b) < 8 {
		return nil, errPayload
	}
	created := time.UnixMilli(int64(binary.BigEndian.Uint64(b))).UTC()
	b = b[8:]
	sid, b, ok1 := readString(b)
	email, b, ok2 := readString(b)
	name, b, ok3 := readString(b)
	if !ok1 || !ok2 || !ok3 {
		return nil, errPayload
	}
	var data []byte
	if len(b) > 0 {
		// The guest's data, when it has some: never empty, so that no
		// other spelling of a cookie without data is read as that cookie.
		d, rest, ok := readBytes(b, maxCookieData)
		if !ok || len(d) == 0 || len(rest) != 0 {
			return nil, errPayload
		}
		data = bytes.Clone(d) // b is a pooled buffer's
	}
	return &Record{
		User: User{ID: id, Email: email, Name: name, CreatedAt: created, UpdatedAt: created, IsAnonymous: true},
		Session: Session{
			ID: sid, UserID: id, ExpiresAt: exp, CreatedAt: created, UpdatedAt: created,
		},
		TokenHash: tokenHash,
		Data:      data,
	}, nil
}

// decodeSecure decodes through securecookie (encrypted pairs), apart from
// decode so that its &b, which escapes, leaves decode's b on the stack.
// securecookie's base64 is lenient; the outer layer is checked strictly
// first (the MAC covers the inner one).
func (cc *cookieCodec) decodeSecure(value string) ([]byte, error) {
	if len(value) > maxCookie {
		return nil, errPayload
	}
	if _, err := strictURL.DecodeString(value); err != nil {
		return nil, errPayload
	}
	var b []byte
	err := securecookie.DecodeMulti(cc.name, value, &b, cc.codecs...)
	return b, err
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// readBytes reads a length-prefixed field of at most max bytes off b.
func readBytes(b []byte, max uint64) ([]byte, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > max || uint64(len(b)-k) < n {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

func readString(b []byte) (string, []byte, bool) {
	v, rest, ok := readBytes(b, maxField)
	return string(v), rest, ok
}

var errMAC = errors.New("anonymous: cookie signature is not valid")

// strictURL decodes base64url only in its canonical form: a value with other
// padding bits is another spelling of the same cookie, and is refused.
var strictURL = base64.URLEncoding.Strict()

// verify checks a sign-only securecookie value, base64("date|value|mac")
// where mac signs "name|date|value" and value is base64(payload), and
// returns the payload, decoded into buf's first half.
func (cc *cookieCodec) verify(value string, buf *[2 * maxCookie]byte) ([]byte, error) {
	if len(value) > maxCookie {
		return nil, errPayload
	}
	src, raw := buf[:copy(buf[:maxCookie], value)], buf[maxCookie:]
	n, err := strictURL.Decode(raw, src)
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
	// securecookie refuses a date that is not an integer, signed or not.
	if _, err := strconv.ParseInt(string(raw[:i]), 10, 64); err != nil {
		return nil, errPayload
	}
	// The first half held the encoded cookie, no longer needed.
	m, err := strictURL.Decode(buf[:maxCookie], raw[i+1:j])
	if err != nil {
		return nil, errPayload
	}
	return buf[:m], nil
}
