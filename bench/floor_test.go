package bench_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

// BenchmarkFloor measures the steps no guest middleware can skip, done
// with nothing around them, on the same cookies package anonymous uses:
// the floor its own work is compared with (cmd/ratios: at most 1.5× on
// both paths).
//
//	returning  find the cookie in the header; base64-decode it; check its
//	           HMAC-SHA256 (a pooled HMAC state); base64-decode the payload;
//	           SHA-256 the token; look the id up in a map behind a read
//	           lock and copy the stored record out (one allocation), then
//	           compare the token hashes.
//	new        read 52 random bytes; encode two ULIDs and the token; SHA-256
//	           the token; lay out the first-visit payload (id, session id,
//	           email, name, times); base64 it, HMAC-SHA256 it, base64 the
//	           result; write the Set-Cookie line (one string) into the
//	           response's headers.
//
// It runs in parallel, as the contenders do, over the same headerWriter.
func BenchmarkFloor(b *testing.B) {
	b.Run("returning", func(b *testing.B) {
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
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			w := &headerWriter{h: http.Header{}}
			var buf floorBuf
			for pb.Next() {
				clear(w.h)
				floorNew(w, &buf)
				if w.h["Set-Cookie"] == nil {
					b.Error("the floor set no cookie")
					return
				}
			}
		})
	})
}

// TestFloor checks that the floor does its steps: the returning one finds
// the settled guest and refuses a tampered cookie, the new one writes a
// cookie package anonymous accepts as a first visit's.
func TestFloor(t *testing.T) {
	returning, fresh := anonymousMem(onReturn)(t)
	value := cookieValue(t, settle(t, returning, fresh))
	f := newFloor(t, value)
	name := defaultCookie + "="
	if !f.returning(name + value) {
		t.Fatal("the floor refused the settled cookie")
	}
	if f.returning(tamper(name + value)) {
		t.Fatal("the floor accepted a tampered cookie")
	}

	w := &headerWriter{h: http.Header{}}
	floorNew(w, new(floorBuf))
	var id string
	returning.ServeHTTP(&headerWriter{h: http.Header{}}, request(cookieHeader(w.h), &id))
	if id == "" {
		t.Fatalf("package anonymous refused the floor's cookie %q", w.h["Set-Cookie"])
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

// floor is a returning guest's floor: a map of the one guest, keyed by id,
// holding a record as large as memstore's with the token's hash.
type floor struct {
	mu      sync.RWMutex
	records map[string][]byte
}

func newFloor(tb testing.TB, value string) *floor {
	token, ok := floorToken(value, make([]byte, 3*len(value)))
	if !ok {
		tb.Fatal("the floor cannot read the package's cookie")
	}
	sum := sha256.Sum256(token)
	rec := append(bytes.Repeat([]byte{'r'}, 220), sum[:]...)
	return &floor{records: map[string][]byte{string(token[:ulid.EncodedSize]): rec}}
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
	var sum [sha256.Size]byte
	ok := hmac.Equal(h.Sum(sum[:0]), raw[j+1:])
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
	stored := f.records[string(token[:ulid.EncodedSize])]
	rec := append([]byte(nil), stored...)
	f.mu.RUnlock()
	return len(rec) > sha256.Size && subtle.ConstantTimeCompare(sum[:], rec[len(rec)-sha256.Size:]) == 1
}

// floorBuf is a new visitor's scratch space, reused between requests.
type floorBuf struct {
	payload, signed, line []byte
	sum                   [sha256.Size]byte
}

// floorNew is a new visitor's floor: a first-visit cookie as package
// anonymous writes it, with no store.
func floorNew(w http.ResponseWriter, buf *floorBuf) {
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
	hd := w.Header()
	hd["Set-Cookie"] = append(hd["Set-Cookie"], string(l))
}
