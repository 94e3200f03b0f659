package gorillaredis_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/guestpass/anonymous/bench/gorillaredis"
	"github.com/guestpass/anonymous/internal/redistest"
)

var hashKey = []byte("0123456789abcdef0123456789abcdef")

func newStore(t *testing.T) (*gorillaredis.Store, func() int64) {
	t.Helper()
	c := redistest.Client(t)
	p := redistest.Prefix(t, c)
	s, err := gorillaredis.New(c, p, hashKey)
	if err != nil {
		t.Fatal(err)
	}
	count := func() int64 { return int64(len(redistest.Keys(t, c, p))) }
	return s, count
}

// save stores values in a new session and returns its cookie.
func save(t *testing.T, s *gorillaredis.Store, vals map[any]any) *http.Cookie {
	t.Helper()
	r := httptest.NewRequest("GET", "/", nil)
	sess, err := s.New(r, "sid")
	if err != nil || !sess.IsNew {
		t.Fatalf("New without cookie: IsNew=%v err=%v", sess.IsNew, err)
	}
	for k, v := range vals {
		sess.Values[k] = v
	}
	w := httptest.NewRecorder()
	if err := s.Save(r, w, sess); err != nil {
		t.Fatal(err)
	}
	cs := w.Result().Cookies()
	if len(cs) != 1 || cs[0].Name != "sid" {
		t.Fatalf("cookies = %v, want one named sid", cs)
	}
	return cs[0]
}

func TestRoundTrip(t *testing.T) {
	s, count := newStore(t)
	ck := save(t, s, map[any]any{"id": "guest-1", "n": 7})
	if strings.Contains(ck.Value, "guest-1") {
		t.Errorf("cookie %q carries the value; want only the signed id", ck.Value)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d keys in Redis, want 1", n)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(ck)
	sess, err := s.Get(r, "sid")
	if err != nil {
		t.Fatal(err)
	}
	if sess.IsNew || sess.Values["id"] != "guest-1" || sess.Values["n"] != 7 {
		t.Fatalf("loaded IsNew=%v values=%v, want the saved ones", sess.IsNew, sess.Values)
	}
}

func TestBadCookieIsNewSession(t *testing.T) {
	s, _ := newStore(t)
	ck := save(t, s, map[any]any{"id": "x"})
	for name, v := range map[string]string{
		"tampered":  flip(ck.Value),
		"truncated": ck.Value[:10],
		"garbage":   "%%%",
		"oversized": strings.Repeat("a", 5000),
	} {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.AddCookie(&http.Cookie{Name: "sid", Value: v})
			sess, err := s.New(r, "sid")
			if err != nil || !sess.IsNew || len(sess.Values) != 0 {
				t.Fatalf("IsNew=%v values=%v err=%v, want a new empty session", sess.IsNew, sess.Values, err)
			}
		})
	}
}

func TestNegativeMaxAgeDeletes(t *testing.T) {
	s, count := newStore(t)
	ck := save(t, s, map[any]any{"id": "x"})
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(ck)
	sess, err := s.New(r, "sid")
	if err != nil || sess.IsNew {
		t.Fatalf("IsNew=%v err=%v", sess.IsNew, err)
	}
	sess.Options.MaxAge = -1
	w := httptest.NewRecorder()
	if err := s.Save(r, w, sess); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d keys left, want 0", n)
	}
	if cs := w.Result().Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Fatalf("cookies = %v, want one expired", cs)
	}
	again, err := s.New(r, "sid")
	if err != nil || !again.IsNew {
		t.Fatalf("after delete: IsNew=%v err=%v, want a new session", again.IsNew, err)
	}
}

func TestKeyHasTTL(t *testing.T) {
	c := redistest.Client(t)
	p := redistest.Prefix(t, c)
	s, err := gorillaredis.New(c, p, hashKey)
	if err != nil {
		t.Fatal(err)
	}
	save(t, s, map[any]any{"id": "x"})
	keys := redistest.Keys(t, c, p)
	if len(keys) != 1 {
		t.Fatalf("keys under %q = %v, want one", p, keys)
	}
	ttl, err := c.TTL(context.Background(), keys[0]).Result()
	if err != nil || ttl <= 0 {
		t.Fatalf("TTL = %v, %v; want a positive TTL", ttl, err)
	}
}

// flip changes one character in the middle of v.
func flip(v string) string {
	b := []byte(v)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
