package anonymous

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/oklog/ulid/v2"
)

// The guest cookie claims gorilla/securecookie's format, and sign-only keys
// have a second implementation of it (appendEncoded / verify). These tests
// check the claim against securecookie itself, in both directions, and check
// that the two implementations accept exactly the same values.

const ckName = "anonymous_guest"

var (
	// ckNow is the decoding clock; ckExp, a month later, the usual expiry.
	ckNow = time.Unix(1_800_000_000, 0)
	ckExp = ckNow.Add(30 * 24 * time.Hour)

	ckSignKey = Key{Hash: ckKey(1, 32)}
	ckOldKey  = Key{Hash: ckKey(2, 64)}
	ckGoneKey = Key{Hash: ckKey(3, 32)}
	ckAES128  = Key{Hash: ckKey(4, 32), Block: ckKey(5, 16)}
	ckAES192  = Key{Hash: ckKey(6, 64), Block: ckKey(7, 24)}
	ckAES256  = Key{Hash: ckKey(8, 32), Block: ckKey(9, 32)}
)

func ckKey(tag byte, n int) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = tag*31 + byte(i)*7
	}
	return k
}

// ckID is a ULID with the given time and entropy.
func ckID(t time.Time, entropy []byte) string {
	var b [ulid.EncodedSize]byte
	ulidText(b[:], t, entropy)
	return string(b[:])
}

// ckToken is a well-formed session token, distinct per seed.
func ckToken(seed byte) string {
	id := ckID(time.UnixMilli(1_700_000_000_000+int64(seed)), bytes.Repeat([]byte{seed}, 10))
	return id + "." + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{seed ^ 0x5a}, 32))
}

// ckPending is a pending guest as newGuest makes one, for token.
func ckPending(token string) *Record {
	id := tokenID(token)
	created := time.UnixMilli(1_700_000_000_123).UTC()
	return &Record{
		User: User{
			ID: id, Email: "temp@" + strings.ToLower(id) + ".com", Name: "Anonymous",
			CreatedAt: created, UpdatedAt: created, IsAnonymous: true,
		},
		Session: Session{
			ID: ckID(created, bytes.Repeat([]byte{0xee}, 10)), UserID: id,
			ExpiresAt: ckExp, CreatedAt: created, UpdatedAt: created,
		},
	}
}

// The payload format, written out here from its description rather than
// by the code under test.

func ckHead(kind byte, exp int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{kind}, uint64(exp))
}

func ckStr(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func ckShortPayload(exp time.Time, token string) []byte {
	return ckStr(ckHead(kindStored, exp.Unix()), token)
}

func ckLongPayload(exp time.Time, token string, rec *Record) []byte {
	b := ckStr(ckHead(kindPending, exp.Unix()), token)
	b = binary.BigEndian.AppendUint64(b, uint64(rec.User.CreatedAt.UnixMilli()))
	b = ckStr(b, rec.Session.ID)
	b = ckStr(b, rec.User.Email)
	b = ckStr(b, rec.User.Name)
	if len(rec.Data) > 0 {
		b = ckStr(b, string(rec.Data))
	}
	return b
}

func ckCat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// ckSecure builds securecookie codecs for keys, independently of
// newCookieCodec, configured as the package documents: raw payload bytes,
// no age limit.
func ckSecure(keys ...Key) []securecookie.Codec {
	pairs := make([][]byte, 0, 2*len(keys))
	for _, k := range keys {
		var block []byte
		if len(k.Block) > 0 {
			block = k.Block
		}
		pairs = append(pairs, k.Hash, block)
	}
	codecs := securecookie.CodecsFromPairs(pairs...)
	for _, c := range codecs {
		c.(*securecookie.SecureCookie).SetSerializer(securecookie.NopEncoder{}).MaxAge(0)
	}
	return codecs
}

// ckSign signs (and, with a block key, encrypts) payload with securecookie.
func ckSign(t testing.TB, name string, payload []byte, key Key) string {
	t.Helper()
	// securecookie encrypts in place: keep the caller's bytes.
	v, err := securecookie.EncodeMulti(name, bytes.Clone(payload), ckSecure(key)...)
	if err != nil {
		t.Fatalf("securecookie.EncodeMulti: %v", err)
	}
	return v
}

// ckOpen decodes value with securecookie.
func ckOpen(name, value string, keys ...Key) ([]byte, error) {
	var b []byte
	err := securecookie.DecodeMulti(name, value, &b, ckSecure(keys...)...)
	return b, err
}

// ckSignRaw signs a value by hand in securecookie's sign-only format,
// base64url("date|value|mac") with the HMAC-SHA256 over "name|date|value",
// so that values securecookie never writes (an odd date, a value that is not
// base64) can carry a valid signature.
func ckSignRaw(hashKey []byte, name, date, value string) string {
	h := hmac.New(sha256.New, hashKey)
	h.Write([]byte(name + "|" + date + "|" + value))
	return base64.URLEncoding.EncodeToString(h.Sum([]byte(date + "|" + value + "|")))
}

func b64(b []byte) string { return base64.URLEncoding.EncodeToString(b) }

func ckCodec(t testing.TB, keys ...Key) *cookieCodec {
	t.Helper()
	cc, err := newCookieCodec(ckName, keys)
	if err != nil {
		t.Fatalf("newCookieCodec: %v", err)
	}
	return cc
}

// ckSlow is cc without its fast path: every value goes through securecookie.
func ckSlow(cc *cookieCodec) *cookieCodec {
	return &cookieCodec{name: cc.name, codecs: cc.codecs, namePipe: cc.namePipe}
}

func ckEncode(t testing.TB, cc *cookieCodec, token string, exp time.Time, pending *Record) string {
	t.Helper()
	v, err := cc.appendEncoded(nil, token, time.Now(), exp, pending)
	if err != nil {
		t.Fatalf("appendEncoded: %v", err)
	}
	return string(v)
}

// ckCheck asserts that c is the credential for token, exp and, when rec is
// not nil, the pending guest rec.
func ckCheck(t testing.TB, c *credential, err error, token string, exp time.Time, rec *Record) {
	t.Helper()
	if err != nil || c.id == "" {
		t.Fatalf("decode = %v, %v; want a credential", c, err)
	}
	id := tokenID(token)
	if id == "" {
		t.Fatalf("test token %q is malformed", token)
	}
	sum := sha256.Sum256([]byte(token))
	if c.id != id || c.token != token || c.tokenHash != sum {
		t.Fatalf("credential = {%q %q %x}, want {%q %q %x}", c.id, c.token, c.tokenHash, id, token, sum)
	}
	if rec == nil {
		if c.pending != nil {
			t.Fatalf("short form decoded with a pending guest %+v", c.pending)
		}
		return
	}
	p := c.pending
	if p == nil {
		t.Fatal("long form decoded without its pending guest")
	}
	created := time.UnixMilli(rec.User.CreatedAt.UnixMilli())
	wantExp := time.Unix(exp.Unix(), 0)
	u, s := p.User, p.Session
	switch {
	case u.ID != id, u.Email != rec.User.Email, u.Name != rec.User.Name, !u.IsAnonymous, u.EmailVerified:
		t.Fatalf("pending user = %+v, want id %q email %q name %q, anonymous", u, id, rec.User.Email, rec.User.Name)
	case !u.CreatedAt.Equal(created), !u.UpdatedAt.Equal(created), u.CreatedAt.Location() != time.UTC:
		t.Fatalf("pending user times = %v, %v; want %v UTC", u.CreatedAt, u.UpdatedAt, created)
	case s.ID != rec.Session.ID, s.UserID != id, s.Token != "", s.IPAddress != "", s.UserAgent != "":
		t.Fatalf("pending session = %+v, want id %q user %q", s, rec.Session.ID, id)
	case !s.ExpiresAt.Equal(wantExp), !s.CreatedAt.Equal(created), !s.UpdatedAt.Equal(created):
		t.Fatalf("pending session times = %v, %v, %v; want %v, %v", s.ExpiresAt, s.CreatedAt, s.UpdatedAt, wantExp, created)
	case p.TokenHash != sum, p.LinkedTo != "":
		t.Fatalf("pending record hash %x linked %q, want %x", p.TokenHash, p.LinkedTo, sum)
	case !bytes.Equal(p.Data, rec.Data), (p.Data == nil) != (len(rec.Data) == 0):
		t.Fatalf("pending data = %q, want %q", p.Data, rec.Data)
	}
}

// ckInvariants holds for every credential decode returns.
func ckInvariants(t testing.TB, c *credential) {
	t.Helper()
	id := tokenID(c.token)
	if id == "" || c.id != id || c.tokenHash != sha256.Sum256([]byte(c.token)) {
		t.Fatalf("accepted credential {%q %q %x} breaks the token invariants", c.id, c.token, c.tokenHash)
	}
	if p := c.pending; p != nil {
		if p.User.ID != id || p.Session.UserID != id || p.TokenHash != c.tokenHash ||
			len(p.Session.ID) > maxField || len(p.User.Email) > maxField || len(p.User.Name) > maxField {
			t.Fatalf("accepted pending guest %+v does not match credential %q", p, id)
		}
	}
}

// ckAgree decodes value with the fast path and with securecookie, fails the
// test unless both accept or both reject it (with the same payload and
// credential), and reports whether it was accepted.
func ckAgree(t testing.TB, fast *cookieCodec, value string) bool {
	t.Helper()
	if fast.macs == nil {
		t.Fatal("ckAgree needs a sign-only codec")
	}
	slow := ckSlow(fast)
	buf := new([2 * maxCookie]byte)
	fp, ferr := fast.verify(value, buf)
	sp, serr := slow.decodeSecure(value)
	if (ferr == nil) != (serr == nil) || !bytes.Equal(fp, sp) {
		t.Fatalf("value %q:\nfast path:    %x, %v\nsecurecookie: %x, %v", value, fp, ferr, sp, serr)
	}
	fc, ferr := fast.decode(value, ckNow)
	sc, serr := slow.decode(value, ckNow)
	if (ferr == nil) != (serr == nil) || !reflect.DeepEqual(fc, sc) {
		t.Fatalf("value %q:\nfast path:    %+v, %v\nsecurecookie: %+v, %v", value, fc, ferr, sc, serr)
	}
	if ferr != nil {
		if !reflect.DeepEqual(fc, credential{}) {
			t.Fatalf("value %q: error %v with credential %+v", value, ferr, fc)
		}
		return false
	}
	ckInvariants(t, &fc)
	return true
}

func TestCookieRoundTrip(t *testing.T) {
	tok := ckToken(1)
	long := ckPending(tok)
	full := ckPending(tok)
	full.User.Email = strings.Repeat("e", maxField-len("@x.com")) + "@x.com"
	full.User.Name = strings.Repeat("n", maxField)
	full.Session.ID = strings.Repeat("s", maxField)
	empty := ckPending(tok)
	empty.User.Email, empty.User.Name, empty.Session.ID = "", "", ""
	// CreatedAt travels in milliseconds and comes back in UTC.
	fine := ckPending(tok)
	fine.User.CreatedAt = time.Date(2027, 3, 4, 5, 6, 7, 891_234_567, time.FixedZone("X", 3600))
	// A guest held in its cookie keeps its data there, up to maxCookieData.
	cart := ckPending(tok)
	cart.Data = []byte(`{"tea":2}`)
	fullCart := ckPending(tok)
	fullCart.Data = bytes.Repeat([]byte{0xff}, maxCookieData)

	for _, kc := range []struct {
		name string
		keys []Key
		fast bool
	}{
		{"sign-only", []Key{ckSignKey}, true},
		{"sign-only 64-byte hash key", []Key{ckOldKey}, true},
		{"sign-only empty block key", []Key{{Hash: ckSignKey.Hash, Block: []byte{}}}, true},
		{"sign-only rotated", []Key{ckSignKey, ckOldKey, ckGoneKey}, true},
		{"AES-128", []Key{ckAES128}, false},
		{"AES-192", []Key{ckAES192}, false},
		{"AES-256", []Key{ckAES256}, false},
		{"AES-256 then sign-only", []Key{ckAES256, ckSignKey}, false},
		{"sign-only then AES-128", []Key{ckSignKey, ckAES128}, false},
	} {
		cc := ckCodec(t, kc.keys...)
		if (cc.macs != nil) != kc.fast {
			t.Fatalf("%s: fast path in use = %v, want %v", kc.name, cc.macs != nil, kc.fast)
		}
		for _, fc := range []struct {
			name string
			exp  time.Time
			rec  *Record
		}{
			{"short", ckExp, nil},
			{"short, sub-second expiry", ckExp.Add(987 * time.Millisecond), nil},
			{"long", ckExp, long},
			{"long, fields at maxField", ckExp, full},
			{"long, empty fields", ckExp, empty},
			{"long, sub-millisecond CreatedAt", ckExp, fine},
			{"long, with data", ckExp, cart},
			{"long, data at maxCookieData", ckExp, fullCart},
		} {
			t.Run(kc.name+"/"+fc.name, func(t *testing.T) {
				dst := []byte("anonymous_guest=")
				out, err := cc.appendEncoded(dst, tok, time.Now(), fc.exp, fc.rec)
				if err != nil {
					t.Fatalf("appendEncoded: %v", err)
				}
				if !bytes.HasPrefix(out, dst) {
					t.Fatalf("appendEncoded lost dst: %q", out)
				}
				v := string(out[len(dst):])
				if strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=") != "" {
					t.Fatalf("value %q is not base64url", v)
				}
				c, err := cc.decode(v, ckNow)
				ckCheck(t, &c, err, tok, fc.exp, fc.rec)
				// The expiry is exact to the second: valid until it, not at it.
				exp := time.Unix(fc.exp.Unix(), 0)
				c, err = cc.decode(v, exp.Add(-time.Nanosecond))
				ckCheck(t, &c, err, tok, fc.exp, fc.rec)
				if c, err := cc.decode(v, exp); err == nil || c.id != "" {
					t.Fatalf("decode at the expiry = %+v, %v; want an error", c, err)
				}
				if kc.fast {
					c, err := ckSlow(cc).decode(v, ckNow)
					ckCheck(t, &c, err, tok, fc.exp, fc.rec)
				}
			})
		}
	}
}

func TestCookieKeyRotation(t *testing.T) {
	tok := ckToken(2)
	rec := ckPending(tok)
	sign3 := []Key{ckOldKey, ckSignKey, ckGoneKey}
	aes3 := []Key{ckAES128, ckAES192, ckAES256}
	for _, rc := range []struct {
		name string
		keys []Key // oldest first
	}{
		{"sign-only", sign3},
		{"encrypting", aes3},
		{"sign-only to encrypting", []Key{ckSignKey, ckAES256, ckAES128}},
		{"encrypting to sign-only", []Key{ckAES256, ckSignKey, ckOldKey}},
	} {
		k1, k2, k3 := rc.keys[0], rc.keys[1], rc.keys[2]
		for _, pending := range []*Record{nil, rec} {
			form := "short"
			if pending != nil {
				form = "long"
			}
			t.Run(rc.name+"/"+form, func(t *testing.T) {
				old := ckEncode(t, ckCodec(t, k1), tok, ckExp, pending)
				// k2 is added as the newest key: k1's cookies still decode.
				cur := ckCodec(t, k2, k1)
				c, err := cur.decode(old, ckNow)
				ckCheck(t, &c, err, tok, ckExp, pending)
				// New cookies use k2 alone.
				v := ckEncode(t, cur, tok, ckExp, pending)
				if _, err := ckOpen(ckName, v, k2); err != nil {
					t.Fatalf("a new cookie is not under the newest key: %v", err)
				}
				if _, err := ckOpen(ckName, v, k1); err == nil {
					t.Fatal("a new cookie opens under the older key")
				}
				// k1 is dropped: its cookies fail, k2's still decode.
				next := ckCodec(t, k3, k2)
				if c, err := next.decode(old, ckNow); err == nil || c.id != "" {
					t.Fatalf("a cookie under a dropped key decoded: %+v, %v", c, err)
				}
				c, err = next.decode(v, ckNow)
				ckCheck(t, &c, err, tok, ckExp, pending)
			})
		}
	}
}

func TestCookieSecurecookieInterop(t *testing.T) {
	tok := ckToken(3)
	rec := ckPending(tok)
	for _, k := range []struct {
		name string
		key  Key
	}{
		{"sign-only", ckSignKey},
		{"sign-only 64-byte hash key", ckOldKey},
		{"AES-128", ckAES128},
		{"AES-192", ckAES192},
		{"AES-256", ckAES256},
	} {
		cc := ckCodec(t, k.key)
		for _, f := range []struct {
			name    string
			rec     *Record
			payload []byte
		}{
			{"short", nil, ckShortPayload(ckExp, tok)},
			{"long", rec, ckLongPayload(ckExp, tok, rec)},
		} {
			t.Run(k.name+"/"+f.name+"/to securecookie", func(t *testing.T) {
				v := ckEncode(t, cc, tok, ckExp, f.rec)
				got, err := ckOpen(ckName, v, k.key)
				if err != nil {
					t.Fatalf("securecookie.DecodeMulti: %v", err)
				}
				if !bytes.Equal(got, f.payload) {
					t.Fatalf("payload = %x\nwant      %x", got, f.payload)
				}
				// The date is securecookie's: a current Unix time, which a
				// codec with securecookie's default age limit accepts.
				var block []byte
				if len(k.key.Block) > 0 {
					block = k.key.Block
				}
				aged := securecookie.New(k.key.Hash, block).SetSerializer(securecookie.NopEncoder{})
				if err := aged.Decode(ckName, v, &got); err != nil {
					t.Fatalf("securecookie with its default MaxAge: %v", err)
				}
				if k.key.Block == nil {
					raw, _ := base64.URLEncoding.DecodeString(v)
					date, _, _ := bytes.Cut(raw, []byte("|"))
					if d, err := strconv.ParseInt(string(date), 10, 64); err != nil || time.Since(time.Unix(d, 0)).Abs() > time.Minute {
						t.Fatalf("date %q is not the current Unix time", date)
					}
				}
			})
			t.Run(k.name+"/"+f.name+"/from securecookie", func(t *testing.T) {
				v := ckSign(t, ckName, f.payload, k.key)
				c, err := cc.decode(v, ckNow)
				ckCheck(t, &c, err, tok, ckExp, f.rec)
				if cc.macs != nil {
					c, err := ckSlow(cc).decode(v, ckNow)
					ckCheck(t, &c, err, tok, ckExp, f.rec)
				}
			})
		}
	}
	t.Run("hand-signed matches securecookie", func(t *testing.T) {
		// ckSignRaw, used below for values securecookie cannot write, is
		// securecookie's format.
		payload := ckShortPayload(ckExp, tok)
		v := ckSignRaw(ckSignKey.Hash, ckName, "1700000000", b64(payload))
		got, err := ckOpen(ckName, v, ckSignKey)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("securecookie.DecodeMulti = %x, %v; want %x", got, err, payload)
		}
	})
}

func TestCookieNameInMAC(t *testing.T) {
	tok := ckToken(4)
	payload := ckShortPayload(ckExp, tok)
	for _, key := range []Key{ckSignKey, ckAES256} {
		cc := ckCodec(t, key)
		other, err := newCookieCodec("other_cookie", []Key{key})
		if err != nil {
			t.Fatal(err)
		}
		name := "sign-only"
		if key.Block != nil {
			name = "encrypting"
		}
		t.Run(name, func(t *testing.T) {
			// Made for the right name, everything reads it.
			if _, err := other.decode(ckEncode(t, other, tok, ckExp, nil), ckNow); err != nil {
				t.Fatalf("own name: %v", err)
			}
			for _, vc := range []struct{ name, value string }{
				{"appendEncoded", ckEncode(t, other, tok, ckExp, nil)},
				{"securecookie", ckSign(t, "other_cookie", payload, key)},
			} {
				if c, err := cc.decode(vc.value, ckNow); err == nil || c.id != "" {
					t.Fatalf("%s value for another name decoded: %+v, %v", vc.name, c, err)
				}
				if cc.macs != nil {
					if c, err := ckSlow(cc).decode(vc.value, ckNow); err == nil || c.id != "" {
						t.Fatalf("%s value for another name decoded by securecookie: %+v, %v", vc.name, c, err)
					}
				}
			}
			if _, err := ckOpen("other_cookie", ckEncode(t, cc, tok, ckExp, nil), key); err == nil {
				t.Fatal("securecookie opened the value under another name")
			}
		})
	}
}

// ckPad signs payload by hand with a date of leading zeros that makes the
// value exactly n characters (n a multiple of 4), to probe the length limit.
func ckPad(t testing.TB, hashKey []byte, payload []byte, n int) string {
	t.Helper()
	p := b64(payload)
	rawLen := n / 4 * 3 // no padding
	d := rawLen - len(p) - 2 - sha256.Size
	date := "1700000000"
	if d < len(date) {
		t.Fatalf("payload too long to pad to %d", n)
	}
	v := ckSignRaw(hashKey, ckName, strings.Repeat("0", d-len(date))+date, p)
	if len(v) != n {
		t.Fatalf("padded value is %d characters, want %d", len(v), n)
	}
	return v
}

// ckMalformed are payloads that decode must refuse, though correctly
// signed: want is errPayload, or nil for an expired payload.
func ckMalformed() []struct {
	name    string
	payload []byte
	want    error
} {
	tok := ckToken(5)
	rec := ckPending(tok)
	exp := ckExp.Unix()
	short := ckShortPayload(ckExp, tok)
	long := ckLongPayload(ckExp, tok, rec)
	head := ckHead(kindStored, exp)
	phead := ckStr(ckHead(kindPending, exp), tok)
	created := binary.BigEndian.AppendUint64(nil, uint64(rec.User.CreatedAt.UnixMilli()))
	over := strings.Repeat("x", maxField+1)
	id := tokenID(tok)
	secret := tok[len(id)+1:]
	expired := errors.New("expired")
	cases := []struct {
		name    string
		payload []byte
		want    error
	}{
		{"unknown kind x", ckCat([]byte{'x'}, short[1:]), errPayload},
		{"unknown kind NUL", ckCat([]byte{0}, short[1:]), errPayload},
		{"unknown kind S", ckCat([]byte{'S'}, short[1:]), errPayload},
		{"expired at now", ckShortPayload(ckNow, tok), expired},
		{"expired a second ago", ckShortPayload(ckNow.Add(-time.Second), tok), expired},
		{"expiry zero", ckShortPayload(time.Unix(0, 0), tok), expired},
		{"expiry negative", ckStr(ckHead(kindStored, -1), tok), expired},
		{"long form expired", ckLongPayload(ckNow, tok, rec), expired},
		{"no token", head, errPayload},
		{"token length varint cut", ckCat(head, []byte{0x80}), errPayload},
		{"token length varint overflows", ckCat(head, bytes.Repeat([]byte{0xff}, 10), []byte{1}), errPayload},
		{"token length over maxField", ckStr(head, strings.Repeat("A", maxField+1)), errPayload},
		{"token length past the end", ckCat(head, []byte{byte(len(tok))}, []byte(tok[:len(tok)-1])), errPayload},
		{"empty token", ckStr(head, ""), errPayload},
		{"token without a dot", ckStr(head, id+"A"+secret), errPayload},
		{"token with a short secret", ckStr(head, tok[:len(tok)-1]), errPayload},
		{"token with a long secret", ckStr(head, tok+"A"), errPayload},
		{"token with a short id", ckStr(head, id[1:]+"."+secret+"A"), errPayload},
		{"token id not Crockford base32", ckStr(head, "U"+id[1:]+"."+secret), errPayload},
		{"token id overflows", ckStr(head, "8"+id[1:]+"."+secret), errPayload},
		{"token is not a token", ckStr(head, "not-a-token"), errPayload},
		{"short form, trailing byte", ckCat(short, []byte{0}), errPayload},
		{"short form with a long form's fields", ckCat([]byte{kindStored}, long[1:]), errPayload},
		{"long form, no CreatedAt", phead, errPayload},
		{"long form, CreatedAt cut", ckCat(phead, created[:7]), errPayload},
		{"long form, no strings", ckCat(phead, created), errPayload},
		{"long form, no email", ckStr(ckCat(phead, created), rec.Session.ID), errPayload},
		{"long form, no name", ckStr(ckStr(ckCat(phead, created), rec.Session.ID), rec.User.Email), errPayload},
		{"long form, session id over maxField", ckStr(ckStr(ckStr(ckCat(phead, created), over), "e"), "n"), errPayload},
		{"long form, email over maxField", ckStr(ckStr(ckStr(ckCat(phead, created), "s"), over), "n"), errPayload},
		{"long form, name over maxField", ckStr(ckStr(ckStr(ckCat(phead, created), "s"), "e"), over), errPayload},
		{"long form, name past the end", ckCat(long[:len(long)-len(rec.User.Name)-1], []byte{byte(len(rec.User.Name) + 1)}, []byte(rec.User.Name)), errPayload},
		{"long form, string length varint cut", ckCat(phead, created, []byte{0x80}), errPayload},
		{"long form, trailing byte", ckCat(long, []byte{0}), errPayload},
		{"long form, empty data", ckStr(long, ""), errPayload},
		{"long form, data over maxCookieData", ckStr(long, strings.Repeat("x", maxCookieData+1)), errPayload},
		{"long form, data then a trailing byte", ckCat(ckStr(long, "x"), []byte{0}), errPayload},
		{"long form, data cut short", ckCat(long, []byte{5, 'x'}), errPayload},
	}
	for n := range 9 {
		cases = append(cases, struct {
			name    string
			payload []byte
			want    error
		}{fmt.Sprintf("payload of %d bytes", n), bytes.Clone(short[:n]), errPayload})
	}
	return cases
}

func TestCookieDecodeMalformed(t *testing.T) {
	fast := ckCodec(t, ckSignKey, ckOldKey)
	codecs := []struct {
		name string
		cc   *cookieCodec
		key  Key // signs the payloads
	}{
		{"fast path", fast, ckSignKey},
		{"fast path, older key", fast, ckOldKey},
		{"securecookie", ckSlow(fast), ckSignKey},
		{"encrypting", ckCodec(t, ckAES256, ckAES128), ckAES128},
	}
	for _, mc := range ckMalformed() {
		for _, cd := range codecs {
			t.Run(mc.name+"/"+cd.name, func(t *testing.T) {
				v := ckSign(t, ckName, mc.payload, cd.key)
				got, err := ckOpen(ckName, v, cd.key)
				switch {
				case err == nil && !bytes.Equal(got, mc.payload):
					t.Fatalf("securecookie opened %x, want %x", got, mc.payload)
				case err != nil && (cd.key.Block == nil || len(mc.payload) != 0):
					t.Fatalf("securecookie does not open the case's own value: %v", err)
				}
				c, err := cd.cc.decode(v, ckNow)
				if err == nil || c.id != "" {
					t.Fatalf("decode = %+v, %v; want an error and no credential", c, err)
				}
				if got == nil {
					return // an empty payload does not survive encryption
				}
				if mc.want == errPayload && err != errPayload {
					t.Fatalf("error %v, want %v", err, errPayload)
				}
				if mc.want != errPayload && !strings.Contains(err.Error(), "expired") {
					t.Fatalf("error %v, want expiry", err)
				}
			})
		}
	}

	// Values whose failure is in the envelope, not the payload.
	tok := ckToken(6)
	short := ckShortPayload(ckExp, tok)
	good := ckSign(t, ckName, short, ckSignKey)
	raw, _ := base64.URLEncoding.DecodeString(good)
	flipped := bytes.Clone(raw)
	flipped[len(flipped)-1] ^= 1
	i := bytes.IndexByte(raw, '|')
	for _, ec := range []struct {
		name, value string
		want        error // from the fast path
	}{
		{"over 4096 characters", ckPad(t, ckSignKey.Hash, short, maxCookie+4), errPayload},
		{"not base64", "***", errPayload},
		{"not base64 at the end", good[:len(good)-4] + "*AAA", errPayload},
		{"base64 with padding inside", good[:8] + "====" + good[8:], errPayload},
		{"no pipe", b64([]byte("no pipe at all")), errMAC},
		{"one pipe", b64([]byte("1700000000|" + b64(short))), errMAC},
		{"empty", "", errMAC},
		{"bad MAC", b64(flipped), errMAC},
		{"MAC cut", b64(raw[:len(raw)-1]), errMAC},
		{"MAC extended", b64(append(bytes.Clone(raw), 0)), errMAC},
		{"no MAC", b64(raw[:len(raw)-sha256.Size]), errMAC},
		{"MAC from a key not listed", ckSign(t, ckName, short, ckGoneKey), errMAC},
		{"MAC for an encrypting pair", ckSign(t, ckName, short, ckAES256), errMAC},
		{"date changed", b64(ckCat([]byte("9"), raw[1:])), errMAC},
		{"value moved into the date", b64(ckCat(raw[:i], []byte("0"), raw[i:])), errMAC},
		{"MAC ok, payload not base64", ckSignRaw(ckSignKey.Hash, ckName, "1700000000", "*not base64*"), errPayload},
		{"MAC ok, payload with a pipe", ckSignRaw(ckSignKey.Hash, ckName, "1700000000", "ab|cd"), errMAC},
		{"MAC ok, date not a number", ckSignRaw(ckSignKey.Hash, ckName, "x", b64(short)), errPayload},
		{"MAC ok, date empty", ckSignRaw(ckSignKey.Hash, ckName, "", b64(short)), errPayload},
		{"MAC ok, date over int64", ckSignRaw(ckSignKey.Hash, ckName, "9223372036854775808", b64(short)), errPayload},
	} {
		for _, cd := range codecs[:3] {
			t.Run(ec.name+"/"+cd.name, func(t *testing.T) {
				c, err := cd.cc.decode(ec.value, ckNow)
				if err == nil || c.id != "" {
					t.Fatalf("decode = %+v, %v; want an error and no credential", c, err)
				}
				if cd.cc.macs != nil && err != ec.want {
					t.Fatalf("error %v, want %v", err, ec.want)
				}
			})
		}
	}
}

// TestCookieDecodeBounds checks the values at the edge of acceptance, so
// that the malformed cases above are refused for their flaw alone.
func TestCookieDecodeBounds(t *testing.T) {
	tok := ckToken(7)
	rec := ckPending(tok)
	rec.User.Email = strings.Repeat("e", maxField)
	rec.User.Name = strings.Repeat("n", maxField)
	rec.Session.ID = strings.Repeat("s", maxField)
	short := ckShortPayload(ckExp, tok)
	cc := ckCodec(t, ckSignKey)
	g := ckSign(t, ckName, short, ckSignKey)
	for _, bc := range []struct {
		name, value string
		exp         time.Time
		rec         *Record
	}{
		{"expiry a second after now", ckSign(t, ckName, ckShortPayload(ckNow.Add(time.Second), tok), ckSignKey), ckNow.Add(time.Second), nil},
		{"strings of maxField bytes", ckSign(t, ckName, ckLongPayload(ckExp, tok, rec), ckSignKey), ckExp, rec},
		{"value of 4096 characters", ckPad(t, ckSignKey.Hash, short, maxCookie), ckExp, nil},
		{"date zero", ckSignRaw(ckSignKey.Hash, ckName, "0", b64(short)), ckExp, nil},
		{"date negative", ckSignRaw(ckSignKey.Hash, ckName, "-1", b64(short)), ckExp, nil},
		{"date with a plus sign", ckSignRaw(ckSignKey.Hash, ckName, "+1700000000", b64(short)), ckExp, nil},
		{"date at int64 max", ckSignRaw(ckSignKey.Hash, ckName, "9223372036854775807", b64(short)), ckExp, nil},
		{"line breaks inside the value", g[:20] + "\r\n" + g[20:40] + "\n" + g[40:], ckExp, nil},
	} {
		t.Run(bc.name, func(t *testing.T) {
			c, err := cc.decode(bc.value, ckNow)
			ckCheck(t, &c, err, tok, bc.exp, bc.rec)
			if !ckAgree(t, cc, bc.value) {
				t.Fatal("not accepted by both implementations")
			}
		})
	}
}

// ckCorpus is a corpus of values for the sign-only codec of ckSignKey and
// ckOldKey: valid ones, each tampered at every position and cut at every
// length, and malformed ones of every kind.
func ckCorpus(t testing.TB) []string {
	cc := ckCodec(t, ckSignKey, ckOldKey)
	tok := ckToken(8)
	rec := ckPending(tok)
	sp, lp := ckShortPayload(ckExp, tok), ckLongPayload(ckExp, tok, rec)
	short := ckEncode(t, cc, tok, ckExp, nil)
	long := ckEncode(t, cc, tok, ckExp, rec)
	c := []string{
		short, long,
		ckEncode(t, ckCodec(t, ckOldKey), tok, ckExp, nil),
		ckEncode(t, ckCodec(t, ckOldKey), tok, ckExp, rec),
		ckEncode(t, ckCodec(t, ckGoneKey), tok, ckExp, nil),
		ckEncode(t, ckCodec(t, ckAES256), tok, ckExp, nil),
		ckSign(t, ckName, sp, ckSignKey),
		ckSign(t, ckName, lp, ckOldKey),
		ckSign(t, "other", sp, ckSignKey),
		ckEncode(t, cc, tok, ckNow, nil), // expired
		"", "*", "A", "AA", "AAA", "AAAA", "AA==", "A===", "====", "%3D%3D", "\n", "\r\n",
		b64([]byte("|")), b64([]byte("||")), b64([]byte("|||")), b64([]byte("1|2|3|4")),
		strings.Repeat("A", maxCookie+1), strings.Repeat("A", 2*maxCookie),
		short + strings.Repeat("A", maxCookie),
		ckPad(t, ckSignKey.Hash, sp, maxCookie), ckPad(t, ckSignKey.Hash, sp, maxCookie+4),
		ckPad(t, ckSignKey.Hash, sp, maxCookie) + "\n",
		short + "=", short + "A", "=" + short, " " + short, short + " ",
	}
	for _, date := range []string{"", "x", "1.5", " 1", "1 ", "0x10", "1_000", "+1", "-1", "+-1", "0",
		"007", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809"} {
		c = append(c, ckSignRaw(ckSignKey.Hash, ckName, date, b64(sp)))
	}
	for _, value := range []string{"", "*", b64(sp) + "|", "|" + b64(sp), b64(sp)[:10] + "|" + b64(sp)[10:], b64(sp) + "="} {
		c = append(c, ckSignRaw(ckSignKey.Hash, ckName, "1700000000", value))
	}
	for _, mc := range ckMalformed() {
		c = append(c, ckSign(t, ckName, mc.payload, ckSignKey))
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(short) {
		next := alphabet[(strings.IndexByte(alphabet, short[i])+1)%len(alphabet)]
		c = append(c,
			short[:i]+string(next)+short[i+1:],
			short[:i]+"*"+short[i+1:],
			short[:i]+"|"+short[i+1:],
			short[:i]+"\n"+short[i:],
			short[:i]+short[i+1:])
	}
	for _, v := range []string{short, long} {
		raw, err := base64.URLEncoding.DecodeString(v)
		if err != nil {
			t.Fatal(err)
		}
		for i := range raw {
			for _, b := range []byte{raw[i] ^ 1, raw[i] ^ 0x80, '|'} {
				r := bytes.Clone(raw)
				r[i] = b
				c = append(c, b64(r))
			}
			c = append(c, b64(ckCat(raw[:i], []byte("|"), raw[i:])))
		}
		for n := range len(v) + 1 {
			c = append(c, v[:n])
		}
	}
	return c
}

func TestCookieFastPathAgreesWithSecurecookie(t *testing.T) {
	corpus := ckCorpus(t)
	for _, kc := range []struct {
		name string
		keys []Key
	}{
		{"one key", []Key{ckSignKey}},
		{"rotated keys", []Key{ckSignKey, ckOldKey}},
		{"older key first", []Key{ckOldKey, ckSignKey}},
	} {
		t.Run(kc.name, func(t *testing.T) {
			cc := ckCodec(t, kc.keys...)
			accepted := 0
			for _, v := range corpus {
				if ckAgree(t, cc, v) {
					accepted++
				}
			}
			// Both outcomes are well represented.
			if accepted < 8 || accepted > len(corpus)/2 {
				t.Fatalf("%d of %d values accepted", accepted, len(corpus))
			}
			t.Logf("%d of %d values accepted by both", accepted, len(corpus))
		})
	}
}

func TestNewCookieCodecKeys(t *testing.T) {
	h32, h64 := ckKey(11, 32), ckKey(12, 64)
	for _, kc := range []struct {
		name    string
		keys    []Key
		wantErr string // "" for success
	}{
		{"32-byte hash key", []Key{{Hash: h32}}, ""},
		{"64-byte hash key", []Key{{Hash: h64}}, ""},
		{"64-byte hash keys, rotated", []Key{{Hash: h64}, {Hash: ckKey(13, 64)}}, ""},
		{"64-byte hash key with AES-256", []Key{{Hash: h64, Block: ckKey(13, 32)}}, ""},
		{"AES-128", []Key{{Hash: h32, Block: ckKey(13, 16)}}, ""},
		{"AES-192", []Key{{Hash: h32, Block: ckKey(13, 24)}}, ""},
		{"AES-256", []Key{{Hash: h32, Block: ckKey(13, 32)}}, ""},
		{"no hash key", []Key{{}}, "Keys[0].Hash is 0 bytes"},
		{"16-byte hash key", []Key{{Hash: ckKey(11, 16)}}, "Keys[0].Hash is 16 bytes"},
		{"31-byte hash key", []Key{{Hash: ckKey(11, 31)}}, "Keys[0].Hash is 31 bytes"},
		{"33-byte hash key", []Key{{Hash: ckKey(11, 33)}}, "Keys[0].Hash is 33 bytes"},
		{"48-byte hash key", []Key{{Hash: ckKey(11, 48)}}, "Keys[0].Hash is 48 bytes"},
		{"63-byte hash key", []Key{{Hash: ckKey(11, 63)}}, "Keys[0].Hash is 63 bytes"},
		{"65-byte hash key", []Key{{Hash: ckKey(11, 65)}}, "Keys[0].Hash is 65 bytes"},
		{"128-byte hash key", []Key{{Hash: ckKey(11, 128)}}, "Keys[0].Hash is 128 bytes"},
		{"bad hash key second", []Key{{Hash: h32}, {Hash: ckKey(11, 20)}}, "Keys[1].Hash is 20 bytes"},
		{"1-byte block key", []Key{{Hash: h32, Block: ckKey(13, 1)}}, "Keys[0].Block is 1 bytes"},
		{"8-byte block key", []Key{{Hash: h32, Block: ckKey(13, 8)}}, "Keys[0].Block is 8 bytes"},
		{"15-byte block key", []Key{{Hash: h32, Block: ckKey(13, 15)}}, "Keys[0].Block is 15 bytes"},
		{"17-byte block key", []Key{{Hash: h32, Block: ckKey(13, 17)}}, "Keys[0].Block is 17 bytes"},
		{"31-byte block key", []Key{{Hash: h32, Block: ckKey(13, 31)}}, "Keys[0].Block is 31 bytes"},
		{"33-byte block key", []Key{{Hash: h32, Block: ckKey(13, 33)}}, "Keys[0].Block is 33 bytes"},
		{"64-byte block key", []Key{{Hash: h32, Block: ckKey(13, 64)}}, "Keys[0].Block is 64 bytes"},
		{"bad block key second", []Key{{Hash: h32}, {Hash: h64, Block: ckKey(13, 12)}}, "Keys[1].Block is 12 bytes"},
		{"block key is the hash key", []Key{{Hash: h32, Block: bytes.Clone(h32)}}, "Keys[0].Block is its hash key"},
		{"block key is the hash key, second pair", []Key{{Hash: h64}, {Hash: h32, Block: bytes.Clone(h32)}}, "Keys[1].Block is its hash key"},
		{"hash key repeated", []Key{{Hash: h32}, {Hash: bytes.Clone(h32)}}, "Keys[1].Hash repeats Keys[0].Hash"},
		{"hash key repeated, other block keys", []Key{{Hash: h32, Block: ckKey(13, 16)}, {Hash: h64}, {Hash: bytes.Clone(h32), Block: ckKey(14, 32)}}, "Keys[2].Hash repeats Keys[0].Hash"},
		{"64-byte hash key repeated", []Key{{Hash: h64}, {Hash: h32}, {Hash: bytes.Clone(h64)}}, "Keys[2].Hash repeats Keys[0].Hash"},
	} {
		t.Run(kc.name, func(t *testing.T) {
			cc, err := newCookieCodec(ckName, kc.keys)
			if kc.wantErr != "" {
				if err == nil || cc != nil || !strings.Contains(err.Error(), kc.wantErr) {
					t.Fatalf("newCookieCodec = %v, %v; want error %q", cc, err, kc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("newCookieCodec: %v", err)
			}
			tok := ckToken(9)
			c, err := cc.decode(ckEncode(t, cc, tok, ckExp, nil), ckNow)
			ckCheck(t, &c, err, tok, ckExp, nil)
		})
	}
}

func TestCookieEncodeTooLong(t *testing.T) {
	tok := ckToken(10)
	for _, key := range []Key{ckSignKey, ckAES256} {
		cc := ckCodec(t, key)
		encoders := []*cookieCodec{cc}
		if cc.macs != nil {
			encoders = append(encoders, ckSlow(cc))
		}
		// The value grows by 4 characters per 3 bytes of name: step over
		// securecookie's limit and check where each encoder stops.
		var limits []int
		for _, enc := range encoders {
			limit := -1
			for n := 1900; n < 2400; n++ {
				rec := ckPending(tok)
				rec.User.Name = strings.Repeat("n", n)
				v, err := enc.appendEncoded([]byte("x="), tok, time.Now(), ckExp, rec)
				if err != nil {
					if string(v) != "x=" {
						t.Fatalf("failed encode returned %q", v)
					}
					if limit < 0 {
						limit = n
					}
					continue
				}
				if limit >= 0 {
					t.Fatalf("name of %d bytes encoded after %d failed", n, limit)
				}
				if len(v)-2 > maxCookie {
					t.Fatalf("encoded value of %d characters", len(v)-2)
				}
			}
			if limit < 0 {
				t.Fatal("no name was too long")
			}
			limits = append(limits, limit)
		}
		if len(limits) == 2 && limits[0] != limits[1] {
			t.Fatalf("fast path refuses names from %d bytes, securecookie from %d", limits[0], limits[1])
		}
	}
}

// TestCookieConcurrent runs the pooled buffers and HMAC states from many
// goroutines: each must get back its own guest.
func TestCookieConcurrent(t *testing.T) {
	for _, keys := range [][]Key{{ckSignKey, ckOldKey}, {ckAES128}} {
		cc := ckCodec(t, keys...)
		old := ckCodec(t, keys[len(keys)-1])
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 100 {
					tok := ckToken(byte(g*100 + i))
					var rec *Record
					if i%2 == 1 {
						rec = ckPending(tok)
					}
					enc := cc
					if i%3 == 0 {
						enc = old
					}
					v, err := enc.appendEncoded(nil, tok, time.Now(), ckExp, rec)
					if err != nil {
						t.Error(err)
						return
					}
					c, err := cc.decode(string(v), ckNow)
					if err != nil || c.token != tok || (c.pending != nil) != (rec != nil) {
						t.Errorf("goroutine %d: decode = %+v, %v; want token %q", g, c, err, tok)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}

func FuzzCookieDecode(f *testing.F) {
	fast := ckCodec(f, ckSignKey, ckOldKey)
	enc := ckCodec(f, ckAES256, ckAES128)
	tok := ckToken(11)
	rec := ckPending(tok)
	for _, v := range []string{
		ckEncode(f, fast, tok, ckExp, nil),
		ckEncode(f, fast, tok, ckExp, rec),
		ckEncode(f, ckCodec(f, ckOldKey), tok, ckExp, rec),
		ckEncode(f, enc, tok, ckExp, nil),
		ckEncode(f, enc, tok, ckExp, rec),
		ckEncode(f, ckCodec(f, ckGoneKey), tok, ckExp, nil),
		ckSignRaw(ckSignKey.Hash, ckName, "x", b64(ckShortPayload(ckExp, tok))),
		ckSignRaw(ckSignKey.Hash, ckName, "", b64(ckShortPayload(ckExp, tok))),
		ckSignRaw(ckSignKey.Hash, ckName, "1700000000", "*"),
		ckPad(f, ckSignKey.Hash, ckShortPayload(ckExp, tok), maxCookie),
		"", "*", "AAAA", b64([]byte("1|2|3")), strings.Repeat("A", maxCookie+1),
	} {
		f.Add(v)
	}
	for _, mc := range ckMalformed() {
		f.Add(ckSign(f, ckName, mc.payload, ckSignKey))
		f.Add(ckSign(f, ckName, mc.payload, ckAES128))
	}
	f.Fuzz(func(t *testing.T, value string) {
		ckAgree(t, fast, value)
		c, err := enc.decode(value, ckNow)
		if err != nil {
			if !reflect.DeepEqual(c, credential{}) {
				t.Fatalf("error %v with credential %+v", err, c)
			}
			return
		}
		ckInvariants(t, &c)
	})
}

func BenchmarkCookieDecode(b *testing.B) {
	fast := ckCodec(b, ckSignKey)
	value := ckEncode(b, fast, ckToken(12), ckExp, nil)
	for _, bc := range []struct {
		name string
		cc   *cookieCodec
	}{{"fast", fast}, {"securecookie", ckSlow(fast)}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.cc.decode(value, ckNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCookieEncode(b *testing.B) {
	fast := ckCodec(b, ckSignKey)
	tok := ckToken(12)
	for _, bc := range []struct {
		name string
		cc   *cookieCodec
	}{{"fast", fast}, {"securecookie", ckSlow(fast)}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			dst := make([]byte, 0, 512)
			for b.Loop() {
				var err error
				if dst, err = bc.cc.appendEncoded(dst[:0], tok, time.Now(), ckExp, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// cookieValues must yield the values net/http's own parser finds, and
// beyond them only values that are not base64.
func FuzzCookieValues(f *testing.F) {
	for _, h := range []string{
		"", "a=1", ckName + "=v1", ckName + "=v1; " + ckName + "=v2",
		"x=1;" + ckName + "=\"quoted\" ; y=2", " " + ckName + " = v ", ckName + "=", ckName,
		ckName + "=a=b", ckName + "=\"", ckName + "=\"\"", ckName + "=bad\\byte;" + ckName + "=ok",
		";;" + ckName + "=v;;", ckName + "=v\x00w", "\t" + ckName + "=tab\t", ckName + "=\n0000",
	} {
		f.Add(h, "other=1")
	}
	f.Fuzz(func(t *testing.T, h1, h2 string) {
		if strings.Count(h1+h2, ";") >= 3000 {
			return // net/http then reads none (GODEBUG httpcookiemaxnum)
		}
		r := &http.Request{Header: http.Header{"Cookie": {h1, h2}}}
		var ours, theirs []string
		for v := range cookieValues(r, ckName) {
			ours = append(ours, v)
		}
		for _, c := range r.CookiesNamed(ckName) {
			theirs = append(theirs, c.Value)
		}
		// The values net/http drops and cookieValues does not are never a
		// guest cookie: base64 refuses them.
		ours = slices.DeleteFunc(ours, func(v string) bool {
			_, err := strictURL.DecodeString(v)
			return err != nil && !slices.Contains(theirs, v)
		})
		if !slices.Equal(ours, theirs) {
			t.Fatalf("headers %q: cookieValues %q, net/http %q", []string{h1, h2}, ours, theirs)
		}
	})
}
