package anonymous

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
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

// ckToken is a well-formed session token, distinct per seed.
func ckToken(seed byte) string {
	id := newID(time.UnixMilli(1_700_000_000_000+int64(seed)), bytes.Repeat([]byte{seed}, 10))
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
			ID: newID(created, bytes.Repeat([]byte{0xee}, 10)), UserID: id,
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
	return ckStr(b, rec.User.Name)
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
	v, err := cc.appendEncoded(nil, token, exp, pending)
	if err != nil {
		t.Fatalf("appendEncoded: %v", err)
	}
	return string(v)
}

// ckCheck asserts that c is the credential for token, exp and, when rec is
// not nil, the pending guest rec.
func ckCheck(t testing.TB, c *credential, err error, token string, exp time.Time, rec *Record) {
	t.Helper()
	if err != nil || c == nil {
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
	}
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
		} {
			t.Run(kc.name+"/"+fc.name, func(t *testing.T) {
				dst := []byte("anonymous_guest=")
				out, err := cc.appendEncoded(dst, tok, fc.exp, fc.rec)
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
				ckCheck(t, c, err, tok, fc.exp, fc.rec)
				// The expiry is exact to the second: valid until it, not at it.
				exp := time.Unix(fc.exp.Unix(), 0)
				c, err = cc.decode(v, exp.Add(-time.Nanosecond))
				ckCheck(t, c, err, tok, fc.exp, fc.rec)
				if c, err := cc.decode(v, exp); err == nil || c != nil {
					t.Fatalf("decode at the expiry = %+v, %v; want an error", c, err)
				}
				if kc.fast {
					c, err := ckSlow(cc).decode(v, ckNow)
					ckCheck(t, c, err, tok, fc.exp, fc.rec)
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
				ckCheck(t, c, err, tok, ckExp, pending)
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
				if c, err := next.decode(old, ckNow); err == nil || c != nil {
					t.Fatalf("a cookie under a dropped key decoded: %+v, %v", c, err)
				}
				c, err = next.decode(v, ckNow)
				ckCheck(t, c, err, tok, ckExp, pending)
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
				ckCheck(t, c, err, tok, ckExp, f.rec)
				if cc.macs != nil {
					c, err := ckSlow(cc).decode(v, ckNow)
					ckCheck(t, c, err, tok, ckExp, f.rec)
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
				if c, err := cc.decode(vc.value, ckNow); err == nil || c != nil {
					t.Fatalf("%s value for another name decoded: %+v, %v", vc.name, c, err)
				}
				if cc.macs != nil {
					if c, err := ckSlow(cc).decode(vc.value, ckNow); err == nil || c != nil {
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
