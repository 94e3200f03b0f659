package bench_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/guestpass/anonymous/internal/redistest"
)

// BenchmarkFloor measures the steps no guest middleware can skip, done
// with nothing around them, on the same cookies package anonymous uses:
// the floor its own work is compared with (cmd/ratios).
//
//	returning  find the guest cookie among the request's cookies;
//	           base64-decode it; check its HMAC-SHA256 (a pooled HMAC
//	           state); base64-decode the payload; SHA-256 the token; look
//	           the id up in a map behind a read lock and copy the stored
//	           record out, into what is handed on (the one allocation); read
//	           the clock and check the record's expiry; compare the token
//	           hashes; hand the guest to the handler, which reads its id.
//	returning-redis  the same, with the guest's record kept in Redis: one
//	           GET of its key, as go-redis makes and sends it, takes the
//	           place of the map's lookup and copy.
//	new        read 52 random bytes; encode two ULIDs and the token; SHA-256
//	           the token; lay out the first-visit payload (id, session id,
//	           email, name, times); base64 it, HMAC-SHA256 it, base64 the
//	           result; write the Set-Cookie line (one string) into the
//	           response's headers; hand the guest's id (one string) to the
//	           handler, which reads it.
//
// Handing the guest on is a new request whose context holds it, the only
// way net/http lets a middleware give its handler a value (a handler must
// not modify its request); the floor makes the request, the context and
// the guest in one allocation, as package anonymous does. The -bare cases
// (returning-bare, new-bare) do the rest alone: no request, no handler, no
// clock read for a returning guest, the cookie's value given. They were the
// floor until the steps a middleware cannot skip included handing on what
// it found.
//
// It runs in parallel, as the contenders do, over the same headerWriter and
// a request made as theirs.
func BenchmarkFloor(b *testing.B) {
	b.Run("returning", func(b *testing.B) {
		returning, fresh := anonymousMem(onReturn)(b)
		ck := settle(b, returning, fresh)
		f := newFloor(b, cookieValue(b, ck))
		runFloor(b, ck, func(w http.ResponseWriter, r *http.Request, _ *floorBuf) { f.ServeHTTP(w, r) })
	})
	b.Run("returning-redis", func(b *testing.B) {
		returning, fresh := anonymousMem(onReturn)(b)
		ck := settle(b, returning, fresh)
		f := newRedisFloor(b, cookieValue(b, ck))
		runFloor(b, ck, func(w http.ResponseWriter, r *http.Request, _ *floorBuf) { f.ServeHTTP(w, r) })
	})
	b.Run("returning-bare", func(b *testing.B) {
		returning, fresh := anonymousMem(onReturn)(b)
		value := cookieValue(b, settle(b, returning, fresh))
		f := newFloor(b, value)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			header := defaultCookie + "=" + value
			for pb.Next() {
				if !f.returning(header) {
					b.Error("the floor did not find the guest")
					return
				}
			}
		})
	})
	b.Run("new", func(b *testing.B) {
		runFloor(b, "", func(w http.ResponseWriter, r *http.Request, buf *floorBuf) { floorServeNew(w, r, buf) })
	})
	b.Run("new-bare", func(b *testing.B) {
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			w := &headerWriter{h: http.Header{}}
			var buf floorBuf
			for pb.Next() {
				clear(w.h)
				_, line := floorNew(&buf)
				w.h["Set-Cookie"] = append(w.h["Set-Cookie"], line)
				if w.h["Set-Cookie"] == nil {
					b.Error("the floor set no cookie")
					return
				}
			}
		})
	})
}

// runFloor runs serve in the contenders' loop (benchContenders): a request
// with cookieHeader, reused, and a headerWriter cleared each time; the
// handler must report an id.
func runFloor(b *testing.B, cookieHeader string, serve func(http.ResponseWriter, *http.Request, *floorBuf)) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var id string
		r := request(cookieHeader, &id)
		w := &headerWriter{h: http.Header{}}
		var buf floorBuf
		for pb.Next() {
			clear(w.h)
			id = ""
			serve(w, r, &buf)
			if id == "" {
				b.Error("the floor handed the handler no guest")
				return
			}
		}
	})
}

// TestFloor checks that the floor does its steps: the returning one, with
// its record in a map or in Redis, hands on the settled guest, as package
// anonymous reads it, and refuses a tampered cookie, a record of another
// token and an expired record; the new one writes a cookie package
// anonymous accepts as a first visit's and hands on its guest's id.
func TestFloor(t *testing.T) {
	returning, fresh := anonymousMem(onReturn)(t)
	ck := settle(t, returning, fresh)
	value := cookieValue(t, ck)
	f := newFloor(t, value)
	name := defaultCookie + "="
	if !f.returning(name + value) {
		t.Fatal("the bare floor refused the settled cookie")
	}
	if f.returning(tamper(name + value)) {
		t.Fatal("the bare floor accepted a tampered cookie")
	}
	var want string
	returning.ServeHTTP(&headerWriter{h: http.Header{}}, request(ck, &want))
	t.Run("map", func(t *testing.T) { checkReturningFloor(t, f, ck, want) })
	t.Run("redis", func(t *testing.T) { checkReturningFloor(t, newRedisFloor(t, value), ck, want) })

	w := &headerWriter{h: http.Header{}}
	var handed string
	floorServeNew(w, request("", &handed), new(floorBuf))
	var id string
	returning.ServeHTTP(&headerWriter{h: http.Header{}}, request(cookieHeader(w.h), &id))
	if id == "" || id != handed {
		t.Fatalf("package anonymous read id %q from the floor's cookie %q, which handed on %q", id, w.h["Set-Cookie"], handed)
	}
}

// checkReturningFloor checks that f hands on the guest of cookie header ck,
// whose id package anonymous reads as want, only while its record is
// there, live and of its token.
func checkReturningFloor(t *testing.T, f *floor, ck, want string) {
	serve := func(cookieHeader string) string {
		var id string
		f.ServeHTTP(&headerWriter{h: http.Header{}}, request("other=1; "+cookieHeader, &id))
		return id
	}
	if got := serve(ck); got == "" || got != want {
		t.Fatalf("the floor handed on %q, package anonymous %q", got, want)
	}
	if got := serve(tamper(ck)); got != "" {
		t.Fatalf("the floor handed on %q for a tampered cookie", got)
	}
	id, rec := floorRecord(t, cookieValue(t, ck))
	other := bytes.Clone(rec)
	other[len(other)-1] ^= 1
	f.store(id, other)
	if got := serve(ck); got != "" {
		t.Fatalf("the floor handed on %q for a record of another token", got)
	}
	binary.BigEndian.PutUint64(rec, uint64(time.Now().Add(-time.Second).Unix()))
	f.store(id, rec)
	if got := serve(ck); got != "" {
		t.Fatalf("the floor handed on %q for an expired record", got)
	}
	f.store(id, nil)
	if got := serve(ck); got != "" {
		t.Fatalf("the floor handed on %q with no record", got)
	}
}

// The returning floor hands on in one allocation; the new visitor's in
// three: its state, the id, the cookie's line.
func TestFloorAllocations(t *testing.T) {
	if raceBuild {
		t.Skip("the race detector allocates; .ci/run runs this test without it")
	}
	returning, fresh := anonymousMem(onReturn)(t)
	ck := settle(t, returning, fresh)
	f := newFloor(t, cookieValue(t, ck))
	w, r := &headerWriter{h: http.Header{}}, request(ck, new(string))
	if n := testing.AllocsPerRun(100, func() { f.ServeHTTP(w, r) }); n != 1 {
		t.Errorf("the returning floor made %v allocations, want 1", n)
	}
	buf, r := new(floorBuf), request("", new(string))
	if n := testing.AllocsPerRun(100, func() { floorServeNew(w, r, buf) }); n != 3 {
		t.Errorf("the new visitor's floor made %v allocations, want 3", n)
	}
}

// cookieValue is the guest cookie's value in a Cookie header.
func cookieValue(tb testing.TB, header string) string {
	v, ok := strings.CutPrefix(header, defaultCookie+"=")
	if !ok || strings.Contains(v, ";") {
		tb.Fatalf("want one guest cookie, have %q", header)
	}
	return v
}

var (
	floorName    = []byte(defaultCookie + "|")
	floorMACs    = sync.Pool{New: func() any { return hmac.New(sha256.New, hashKey) }}
	floorDecoder = base64.URLEncoding.Strict()
	floorBufs    = sync.Pool{New: func() any { return new([3 * 512]byte) }}
)

// floor is a returning guest's floor: its one guest's record, as large as
// memstore's (its expiry first, Unix seconds, big-endian; the token's hash
// last), kept in a map keyed by id or, for a floor of its own
// (newRedisFloor), in Redis.
type floor struct {
	mu      sync.RWMutex
	records map[string]floorEntry
	// get, when set, reads the record of the guest whose token is token
	// instead of the map: it returns the guest's id and its record.
	get func(ctx context.Context, token []byte) (string, []byte)
	// set, with get, stores a guest's record under its id, or removes it
	// when the record is nil.
	set func(id string, rec []byte)
}

type floorEntry struct {
	id  string
	rec []byte
}

// floorKey is the context key under which the floor hands its handler a
// *floorHanded.
type floorKey struct{}

// floorHanded is the context the floor hands its handler: its parent's,
// plus Value(floorKey{}), which gives the guest's id.
type floorHanded struct {
	context.Context
	id string
}

func (h *floorHanded) Value(key any) any {
	if _, ok := key.(floorKey); ok {
		return h
	}
	return h.Context.Value(key)
}

// floorGuest is a returning guest as the floor hands it on, in one
// allocation, as the middleware's state is: the context, the copy of the
// guest's record and the request the handler gets.
type floorGuest struct {
	floorHanded
	rec [256]byte
	req http.Request
}

// floorVisitor is a new visitor as the floor hands it on, in one
// allocation with its context, its request and its Set-Cookie header's
// value; its id is one string more.
type floorVisitor struct {
	floorHanded
	setCookie [1]string
	req       http.Request
}

// floorNext is the floor's handler: it reads the id it was handed.
var floorNext = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if h, _ := r.Context().Value(floorKey{}).(*floorHanded); h != nil {
		report(r, h.id)
	}
})

func newFloor(tb testing.TB, value string) *floor {
	f := &floor{records: map[string]floorEntry{}}
	id, rec := floorRecord(tb, value)
	f.store(id, rec)
	return f
}

// newRedisFloor is the floor of a guest kept in Redis: one GET of its key,
// as made and sent by go-redis, takes the place of the map's lookup.
func newRedisFloor(tb testing.TB, value string) *floor {
	c := redistest.Client(tb)
	prefix := redistest.Prefix(tb, c)
	f := &floor{
		get: func(ctx context.Context, token []byte) (string, []byte) {
			key := prefix + string(token[:ulid.EncodedSize])
			rec, err := c.Get(ctx, key).Bytes()
			if err != nil {
				return "", nil
			}
			return key[len(prefix):], rec
		},
		set: func(id string, rec []byte) {
			var err error
			if rec == nil {
				err = c.Del(context.Background(), prefix+id).Err()
			} else {
				err = c.Set(context.Background(), prefix+id, rec, lifetime).Err()
			}
			if err != nil {
				tb.Fatal(err)
			}
		},
	}
	f.store(floorRecord(tb, value))
	return f
}

// floorRecord returns the id and a record of the guest whose cookie's
// value is value.
func floorRecord(tb testing.TB, value string) (string, []byte) {
	token, ok := floorToken(value, make([]byte, 3*len(value)))
	if !ok {
		tb.Fatal("the floor cannot read the package's cookie")
	}
	sum := sha256.Sum256(token)
	rec := binary.BigEndian.AppendUint64(nil, uint64(time.Now().Add(lifetime).Unix()))
	rec = append(append(rec, bytes.Repeat([]byte{'r'}, 212)...), sum[:]...)
	return string(token[:ulid.EncodedSize]), rec
}

// store keeps rec as the record of guest id; a nil rec removes it.
func (f *floor) store(id string, rec []byte) {
	if f.set != nil {
		f.set(id, rec)
		return
	}
	f.mu.Lock()
	if rec == nil {
		delete(f.records, id)
	} else {
		f.records[id] = floorEntry{id, rec}
	}
	f.mu.Unlock()
}

// floorToken checks a cookie value's MAC and returns the token in its
// payload, a slice of buf, which is at least three times as long as value.
func floorToken(value string, buf []byte) ([]byte, bool) {
	src := buf[:copy(buf, value)]
	buf = buf[len(src):]
	n, err := floorDecoder.Decode(buf, src)
	if err != nil {
		return nil, false
	}
	raw := buf[:n]
	i := bytes.IndexByte(raw, '|')
	j := i + 1 + bytes.IndexByte(raw[i+1:], '|')
	if i < 0 || j <= i {
		return nil, false
	}
	h := floorMACs.Get().(hash.Hash)
	h.Reset()
	h.Write(floorName)
	h.Write(raw[:j])
	// The sum goes into buf past the decoded value: a hash.Hash's argument
	// escapes, and an array of its own would cost an allocation.
	ok := hmac.Equal(h.Sum(buf[n:n]), raw[j+1:])
	floorMACs.Put(h)
	if !ok {
		return nil, false
	}
	payload := buf[n:]
	m, err := floorDecoder.Decode(payload, raw[i+1:j])
	if err != nil || m < 10+70 {
		return nil, false
	}
	// kind, 8 bytes of expiry, the token's length, the token
	return payload[10 : 10+70], true
}

// returning is the bare floor: header is the Cookie header, the guest's
// cookie alone.
func (f *floor) returning(header string) bool {
	_, value, ok := strings.Cut(header, "=")
	if !ok {
		return false
	}
	buf := floorBufs.Get().(*[3 * 512]byte)
	defer floorBufs.Put(buf)
	if 3*len(value) > len(buf) {
		return false
	}
	token, ok := floorToken(value, buf[:])
	if !ok {
		return false
	}
	sum := sha256.Sum256(token)
	f.mu.RLock()
	stored := f.records[string(token[:ulid.EncodedSize])].rec
	rec := append([]byte(nil), stored...)
	f.mu.RUnlock()
	return len(rec) > sha256.Size && subtle.ConstantTimeCompare(sum[:], rec[len(rec)-sha256.Size:]) == 1
}

// ServeHTTP is the returning floor: it hands floorNext the request's
// guest, and does nothing for a request without one.
func (f *floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	value, ok := floorCookie(r)
	if !ok {
		return
	}
	buf := floorBufs.Get().(*[3 * 512]byte)
	defer floorBufs.Put(buf)
	if 3*len(value) > len(buf) {
		return
	}
	token, ok := floorToken(value, buf[:])
	if !ok {
		return
	}
	sum := sha256.Sum256(token)
	g := &floorGuest{floorHanded: floorHanded{Context: r.Context()}}
	var rec []byte
	if f.get != nil {
		g.id, rec = f.get(r.Context(), token)
	} else {
		f.mu.RLock()
		e := f.records[string(token[:ulid.EncodedSize])]
		g.id = e.id
		rec = g.rec[:copy(g.rec[:], e.rec)]
		f.mu.RUnlock()
	}
	n := len(rec)
	if n < 8+sha256.Size || time.Now().Unix() >= int64(binary.BigEndian.Uint64(rec)) ||
		subtle.ConstantTimeCompare(sum[:], rec[n-sha256.Size:]) != 1 {
		return
	}
	g.req = *r.WithContext(&g.floorHanded)
	floorNext.ServeHTTP(w, &g.req)
}

// floorCookie returns the value of the request's first guest cookie.
func floorCookie(r *http.Request) (string, bool) {
	for _, line := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			name, value, _ := strings.Cut(textproto.TrimString(part), "=")
			if name == defaultCookie {
				return value, true
			}
		}
	}
	return "", false
}

// floorBuf is a new visitor's scratch space, reused between requests.
type floorBuf struct {
	payload, signed, line []byte
	sum                   [sha256.Size]byte
}

// floorServeNew is the new visitor's floor: it sets the cookie and hands
// floorNext the guest's id.
func floorServeNew(w http.ResponseWriter, r *http.Request, buf *floorBuf) {
	g := &floorVisitor{floorHanded: floorHanded{Context: r.Context()}}
	id, line := floorNew(buf)
	g.id, g.setCookie[0] = string(id[:]), line
	w.Header()["Set-Cookie"] = g.setCookie[:]
	g.req = *r.WithContext(&g.floorHanded)
	floorNext.ServeHTTP(w, &g.req)
}

// floorNew is the bare new visitor's floor: a first-visit cookie as package
// anonymous writes it, with no store. It returns the guest's id and the
// Set-Cookie line.
func floorNew(buf *floorBuf) ([ulid.EncodedSize]byte, string) {
	var ent [52]byte
	rand.Read(ent[:])
	now := time.Now()
	var id, sid ulid.ULID
	_ = id.SetTime(ulid.Timestamp(now))
	_ = id.SetEntropy(ent[:10])
	_ = sid.SetTime(ulid.Timestamp(now))
	_ = sid.SetEntropy(ent[10:20])
	var idText, sidText [ulid.EncodedSize]byte
	_ = id.MarshalTextTo(idText[:])
	_ = sid.MarshalTextTo(sidText[:])
	var token [70]byte
	copy(token[:], idText[:])
	token[ulid.EncodedSize] = '.'
	base64.RawURLEncoding.Encode(token[ulid.EncodedSize+1:], ent[20:])
	buf.sum = sha256.Sum256(token[:]) // kept with the guest, not in the cookie
	var email [5 + ulid.EncodedSize + 4]byte
	copy(email[:], "temp@")
	for i, c := range idText {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		email[5+i] = c
	}
	copy(email[5+ulid.EncodedSize:], ".com")

	exp := now.Add(time.Hour)
	p := append(buf.payload[:0], 'p')
	p = binary.BigEndian.AppendUint64(p, uint64(exp.Unix()))
	p = append(append(p, byte(len(token))), token[:]...)
	p = binary.BigEndian.AppendUint64(p, uint64(now.UnixMilli()))
	p = append(append(p, ulid.EncodedSize), sidText[:]...)
	p = append(append(p, byte(len(email))), email[:]...)
	p = append(append(p, 9), "Anonymous"...)
	buf.payload = p

	s := strconv.AppendInt(buf.signed[:0], now.Unix(), 10)
	s = append(s, '|')
	s = base64.URLEncoding.AppendEncode(s, p)
	h := floorMACs.Get().(hash.Hash)
	h.Reset()
	h.Write(floorName)
	h.Write(s)
	s = h.Sum(append(s, '|'))
	floorMACs.Put(h)
	buf.signed = s

	l := append(buf.line[:0], defaultCookie...)
	l = base64.URLEncoding.AppendEncode(append(l, '='), s)
	l = append(l, "; Max-Age=3600; Path=/; HttpOnly; Secure; SameSite=Lax"...)
	buf.line = l
	return idText, string(l)
}
