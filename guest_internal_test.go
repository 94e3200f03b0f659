package anonymous

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// A new guest's text shares one allocation, but its token is apart: an
// application that keeps a guest's id, or its email, must not keep the
// secret alive with it.
func TestNewGuestTokenIsApart(t *testing.T) {
	// newGuest stores nothing: a Store whose methods are never called.
	m, err := New(struct{ Store }{}, Options{Keys: []Key{{Hash: []byte("0123456789abcdef0123456789abcdef")}}})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
	rec, token, err := m.newGuest(r, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := uintptr(1<<63), uintptr(0)
	for _, s := range []string{rec.User.ID, rec.User.Email, rec.Session.ID, rec.Session.UserID, rec.Session.IPAddress, rec.Session.UserAgent} {
		if s == "" {
			continue
		}
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		lo, hi = min(lo, p), max(hi, p+uintptr(len(s)))
	}
	if p := uintptr(unsafe.Pointer(unsafe.StringData(token))); p+uintptr(len(token)) > lo && p < hi {
		t.Errorf("the token lies among the guest's other strings (%#x in [%#x, %#x))", p, lo, hi)
	}
	if tokenID(token) != rec.User.ID || rec.User.Email != "temp@"+strings.ToLower(rec.User.ID)+".com" || rec.Session.UserAgent != "Mozilla/5.0 (X11; Linux x86_64)" || rec.Session.IPAddress != "192.0.2.1" {
		t.Errorf("guest %+v, token %q", rec, token)
	}
}

// A returning guest's request allocates its state and the room its record
// is decoded into at once: that allocation, with the 8-byte header the
// allocator adds to an object of pointers over 512 bytes, stays within
// the 896-byte size class, so that a field added to Record, or to the
// state, shows here first.
func TestStateFits896Bytes(t *testing.T) {
	if n := unsafe.Sizeof(stateWithRecord{}) + 8; n > 896 {
		t.Errorf("a returning guest's state takes %d bytes with its header, over 896", n)
	}
}
