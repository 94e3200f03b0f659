package anonymous_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

// txStore is a TxStore on a memstore for the root package's tests: one
// lock for all keys, TryLock for NOWAIT; fn's writes are not undone (the
// real transactions are sqlstore's, tested in sqlstore/sqltest).
type txStore struct {
	*memstore.Store
	mu sync.Mutex
}

type inTx struct{}

func (s *txStore) Transact(ctx context.Context, key string, fn func(context.Context, anonymous.Entry) (anonymous.Entry, error)) error {
	if !s.mu.TryLock() {
		return anonymous.ErrClaimed
	}
	defer s.mu.Unlock()
	cur, err := s.Get(ctx, key)
	if err != nil {
		return err
	}
	next, err := fn(context.WithValue(ctx, inTx{}, true), cur)
	if err != nil {
		return err
	}
	next.Version = cur.Version
	return s.Update(ctx, key, next)
}

// TestTxStoreLink: with a TxStore the Manager links through Transact: the
// callback runs inside it, its error keeps the guest, a held lock is
// ErrClaimed, and a success ends the guest, runs OnGuestDeleted and
// expires the cookie.
func TestTxStoreLink(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "delete", true: "keep"}[keep], func(t *testing.T) {
			ms := newMemstore(t, memstore.Options{})
			st := &txStore{Store: ms}
			var fail error
			var calls, deleted int
			m, err := anonymous.New(st, anonymous.Options{
				Keys:                       []anonymous.Key{{Hash: hashKey1}},
				PersistOnIssue:             true,
				DisableDeleteAnonymousUser: keep,
				OnLinkAccount: func(ctx context.Context, l anonymous.LinkEvent) error {
					calls++
					if ctx.Value(inTx{}) == nil {
						t.Error("OnLinkAccount ran outside the transaction")
					}
					if l.AnonymousUser.Session.Token == "" || l.AnonymousUser.User.ID == "" {
						t.Errorf("OnLinkAccount's guest: %+v", l.AnonymousUser)
					}
					return fail
				},
				OnGuestDeleted: func(ctx context.Context, u *anonymous.User, r anonymous.DeleteReason) {
					if r == anonymous.DeletedByLink {
						deleted++
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			var linkErr error
			h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/login" {
					linkErr = m.Link(w, r, &anonymous.User{ID: "alice"})
				}
			}))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
			cookie := w.Result().Cookies()[0]
			login := func() *http.Response {
				r := httptest.NewRequest("POST", "/login", nil)
				r.AddCookie(cookie)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w.Result()
			}
			id := guestID(t, m, cookie)

			fail = errors.New("cart service down")
			if login(); !errors.Is(linkErr, fail) {
				t.Fatalf("Link with a failing callback: %v", linkErr)
			}
			if rec, err := m.Record(context.Background(), id); err != nil || rec.LinkedTo != "" {
				t.Fatalf("after a failed link: %+v, %v", rec, err)
			}
			st.mu.Lock()
			fail = nil
			if login(); !errors.Is(linkErr, anonymous.ErrClaimed) {
				t.Fatalf("Link while the row is locked: %v", linkErr)
			}
			st.mu.Unlock()
			res := login()
			if linkErr != nil {
				t.Fatal(linkErr)
			}
			if c := res.Cookies(); len(c) != 1 || c[0].MaxAge >= 0 {
				t.Fatalf("the cookie was not expired: %v", c)
			}
			if to, err := m.LinkedTo(context.Background(), id); to != "alice" || err != nil {
				t.Fatalf("LinkedTo = %q, %v", to, err)
			}
			rec, _ := m.Record(context.Background(), id)
			if rec.Deleted == keep || calls != 2 || deleted != map[bool]int{false: 1, true: 0}[keep] {
				t.Fatalf("Deleted %v, %d callbacks, %d OnGuestDeleted", rec.Deleted, calls, deleted)
			}
			if login(); linkErr != nil || calls != 2 {
				t.Fatalf("a replayed login: %v, %d callbacks", linkErr, calls)
			}
		})
	}
}

// guestID returns the id of the stored guest cookie names.
func guestID(t *testing.T, m *anonymous.Manager, cookie *http.Cookie) string {
	t.Helper()
	var id string
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u := anonymous.UserFrom(r.Context()); u != nil {
			id = u.ID
		}
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(cookie)
	h.ServeHTTP(httptest.NewRecorder(), r)
	if id == "" {
		t.Fatal("no guest")
	}
	return id
}
