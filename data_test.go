package anonymous_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/guestpass/anonymous"
)

// A guest's data is stored with it, read with it in one round trip, and a
// first visit's update stores the guest at once, with a short cookie.
func TestGuestData(t *testing.T) {
	f := newFixture(t, anonymous.Options{})
	w, _ := f.send(t, "POST", "/cart?item=tea") // a first visit
	c := guestCookie(t, w)
	if w.Code != http.StatusOK || c == nil || len(w.Header()["Set-Cookie"]) != 1 || f.store.creates.Load() != 1 {
		t.Fatalf("first visit: %d, Set-Cookie %q, %d creates", w.Code, w.Header()["Set-Cookie"], f.store.creates.Load())
	}
	if c.MaxAge != 30*24*3600 {
		t.Errorf("the stored guest's cookie lives %ds, want the guest's lifetime", c.MaxAge)
	}
	f.send(t, "POST", "/cart?item=tea", withCookie(c))
	f.send(t, "POST", "/cart?item=mug", withCookie(c))
	gets := f.store.gets.Load()
	w, _ = f.send(t, "GET", "/cart", withCookie(c))
	if got := strings.Join(w.Header().Values("X-Item"), ","); got != "mug=1,tea=2" && got != "tea=2,mug=1" {
		t.Errorf("cart %q, want tea=2 and mug=1", got)
	}
	if n := f.store.gets.Load() - gets; n != 1 {
		t.Errorf("a returning guest with data cost %d store reads, want 1", n)
	}
}

// Updates of one guest from 64 requests at once all count.
func TestConcurrentDataUpdates(t *testing.T) {
	f := newFixture(t, anonymous.Options{PersistOnIssue: true})
	ConcurrentCartAdds(t, f)
}

// ConcurrentCartAdds adds one item to a guest's cart from 64 requests at
// once, and checks that the cart then holds 64.
func ConcurrentCartAdds(t *testing.T, f *fixture) {
	w, _ := f.send(t, "GET", "/cart")
	c := guestCookie(t, w)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if w, _ := f.send(t, "POST", "/cart?item=tea", withCookie(c)); w.Code != http.StatusOK {
				t.Errorf("add: %d %s", w.Code, w.Body)
			}
		})
	}
	wg.Wait()
	w, _ = f.send(t, "GET", "/cart", withCookie(c))
	if got := w.Header().Get("X-Item"); got != "tea=64" {
		t.Errorf("cart after 64 concurrent adds: %q, want tea=64", got)
	}
}

// Data over MaxDataSize is refused with ErrDataTooLarge and nothing is
// written.
func TestDataSizeLimit(t *testing.T) {
	f := newFixture(t, anonymous.Options{PersistOnIssue: true, MaxDataSize: 100})
	var err error
	f.h = f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err = f.m.UpdateData(w, r, func([]byte) ([]byte, error) {
			return []byte(r.URL.Query().Get("d")), nil
		})
	}))
	w, _ := f.send(t, "GET", "/?d="+strings.Repeat("a", 100))
	c := guestCookie(t, w)
	if err != nil {
		t.Fatalf("100 bytes under a 100-byte limit: %v", err)
	}
	updates := f.store.updates.Load()
	f.send(t, "GET", "/?d="+strings.Repeat("b", 101), withCookie(c))
	if !errors.Is(err, anonymous.ErrDataTooLarge) || f.store.updates.Load() != updates {
		t.Errorf("101 bytes: %v with %d writes, want ErrDataTooLarge and none", err, f.store.updates.Load()-updates)
	}
	if _, err := anonymous.New(f.store, anonymous.Options{MaxDataSize: -1}); !errors.Is(err, anonymous.ErrInvalidOptions) {
		t.Errorf("negative MaxDataSize: %v", err)
	}
}

// UpdateData refuses requests without a guest.
func TestUpdateDataWithoutGuest(t *testing.T) {
	f := newFixture(t, anonymous.Options{Identify: identifyHeader})
	r := httptest.NewRequest("POST", "/", nil)
	if _, err := f.m.UpdateData(httptest.NewRecorder(), r, nil); !errors.Is(err, anonymous.ErrNoGuest) {
		t.Errorf("outside the middleware: %v, want ErrNoGuest", err)
	}
	var err error
	f.h = f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err = f.m.UpdateData(w, r, func(d []byte) ([]byte, error) { return d, nil })
	}))
	f.send(t, "POST", "/", withUser("alice"))
	if !errors.Is(err, anonymous.ErrNoGuest) {
		t.Errorf("for a real user: %v, want ErrNoGuest", err)
	}
}

// Linking hands the data to OnLinkAccount; a failing callback leaves it
// as it was, a successful one takes it away with the guest.
func TestLinkHandsDataOver(t *testing.T) {
	var got []string
	fail := true
	f := newFixture(t, anonymous.Options{Identify: identifyHeader,
		OnLinkAccount: func(_ context.Context, ev anonymous.LinkEvent) error {
			got = append(got, string(ev.Data))
			if fail {
				return errors.New("accounts down")
			}
			return nil
		}})
	w, _ := f.send(t, "POST", "/cart?item=tea")
	c := guestCookie(t, w)
	id := mustGuestID(t, f, c)
	login := func() { f.send(t, "GET", "/", withCookie(c), withUser("alice")) }
	login()
	if w, _ := f.send(t, "GET", "/cart", withCookie(c)); w.Header().Get("X-Item") != "tea=1" {
		t.Fatalf("after a failed link the cart is %q, want tea=1", w.Header().Get("X-Item"))
	}
	fail = false
	login()
	if len(got) != 2 || got[0] != `{"tea":1}` || got[1] != `{"tea":1}` {
		t.Errorf("OnLinkAccount saw data %q, want the cart twice", got)
	}
	if !buried(f.store.Store, id) {
		t.Error("the guest and its data outlived the link")
	}
}

// mustGuestID returns the id of the guest cookie c names.
func mustGuestID(t *testing.T, f *fixture, c *http.Cookie) string {
	t.Helper()
	_, s := f.send(t, "GET", "/", withCookie(c))
	if s.ID == "" {
		t.Fatal("the cookie names no guest")
	}
	return s.ID
}

// OnGuestDeleted hears of every deletion: by the visitor, by a link, by the
// application.
func TestOnGuestDeleted(t *testing.T) {
	var heard []anonymous.DeleteReason
	var ids []string
	f := newFixture(t, anonymous.Options{PersistOnIssue: true, Identify: identifyHeader,
		OnGuestDeleted: func(_ context.Context, u *anonymous.User, why anonymous.DeleteReason) {
			heard, ids = append(heard, why), append(ids, u.ID)
		}})
	newGuest := func() (*http.Cookie, string) {
		w, s := f.send(t, "GET", "/")
		return guestCookie(t, w), s.ID
	}
	c, byVisitor := newGuest()
	w, _ := f.send(t, "POST", "/api/auth/delete-anonymous-user", withCookie(c))
	if w.Code != http.StatusOK {
		t.Fatalf("delete-anonymous-user: %d %s", w.Code, w.Body)
	}
	c, byLink := newGuest()
	f.send(t, "GET", "/", withCookie(c), withUser("alice"))
	_, byApp := newGuest()
	if err := f.m.DeleteGuest(context.Background(), byApp); err != nil {
		t.Fatalf("DeleteGuest: %v", err)
	}
	if err := f.m.DeleteGuest(context.Background(), byApp); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("DeleteGuest twice: %v, want ErrNotFound", err)
	}
	want := []anonymous.DeleteReason{anonymous.DeletedByVisitor, anonymous.DeletedByLink, anonymous.DeletedByApplication}
	if len(heard) != 3 || heard[0] != want[0] || heard[1] != want[1] || heard[2] != want[2] ||
		ids[0] != byVisitor || ids[1] != byLink || ids[2] != byApp {
		t.Errorf("heard %v for %v, want %v for %v", heard, ids, want, []string{byVisitor, byLink, byApp})
	}
}

// Until its expiry, a linked guest's id resolves to the user it became.
func TestLinkedTo(t *testing.T) {
	for _, keep := range []bool{false, true} {
		f := newFixture(t, anonymous.Options{PersistOnIssue: true, Identify: identifyHeader, DisableDeleteAnonymousUser: keep})
		ctx := context.Background()
		w, g := f.send(t, "GET", "/")
		if u, err := f.m.LinkedTo(ctx, g.ID); u != "" || err != nil {
			t.Errorf("a guest: LinkedTo = %q, %v; want \"\", nil", u, err)
		}
		f.send(t, "GET", "/", withCookie(guestCookie(t, w)), withUser("alice"))
		if u, err := f.m.LinkedTo(ctx, g.ID); u != "alice" || err != nil {
			t.Errorf("keep %v: LinkedTo = %q, %v; want alice", keep, u, err)
		}
		if u, err := f.m.LinkedTo(ctx, "01J00000000000000000000000"); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("unknown id: LinkedTo = %q, %v; want ErrNotFound", u, err)
		}
	}
}
