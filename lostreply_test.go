package anonymous_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

// A reply lost on the way back from the store, in the shapes a store client
// gives it: the write was applied, then
//   - lost: the call fails (a timeout);
//   - resent: the client sends it again and answers the second reply,
//     ErrConflict for an Update, ErrExists for a Create (go-redis does);
//   - interleaved: another request's write lands, then the resend.
const (
	lost        = "lost"
	resent      = "resent"
	interleaved = "interleaved"
)

var errTimeout = errors.New("i/o timeout")

// lossyStore is a memstore that loses the reply to the first write armed
// for, in its shape.
type lossyStore struct {
	*memstore.Store
	mu     sync.Mutex
	armed  string // "Create" or "Update", or "" once fired
	skip   int    // calls of armed to let through first
	shape  string
	fired  bool
	other  func() // the interleaved writer
	resent atomic.Int32
}

func (s *lossyStore) arm(method, shape string, other func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed, s.skip, s.shape, s.other = method, 0, shape, other
	s.fired = false
}

// check fails t unless the armed fault happened.
func (s *lossyStore) check(t *testing.T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.fired {
		t.Errorf("no %s reply was lost: the test proves nothing", s.armed)
	}
}

// armSecond arms for the second call of method.
func (s *lossyStore) armSecond(method, shape string) {
	s.arm(method, shape, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.skip = 1
}

// fire reports whether this call of method loses its reply, disarming.
func (s *lossyStore) fire(method string) (string, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.armed != method {
		return "", nil
	}
	if s.skip > 0 {
		s.skip--
		return "", nil
	}
	s.armed, s.fired = "", true
	return s.shape, s.other
}

func (s *lossyStore) Create(ctx context.Context, key string, e anonymous.Entry) error {
	shape, _ := s.fire("Create")
	err := s.Store.Create(ctx, key, e)
	if err != nil || shape == "" {
		return err
	}
	if shape == lost {
		return errTimeout
	}
	s.resent.Add(1)
	return s.Store.Create(ctx, key, e)
}

func (s *lossyStore) Update(ctx context.Context, key string, e anonymous.Entry) error {
	shape, other := s.fire("Update")
	err := s.Store.Update(ctx, key, e)
	if err != nil || shape == "" {
		return err
	}
	switch shape {
	case lost:
		return errTimeout
	case interleaved:
		other()
	}
	s.resent.Add(1)
	return s.Store.Update(ctx, key, e)
}

// lossyShop is a shop on a lossyStore: GET /add adds one item to the
// guest's cart (its data, a count) and answers the guest's id and count;
// GET / answers them; the endpoints are under /api/auth/.
type lossyShop struct {
	t       *testing.T
	m       *anonymous.Manager
	store   *lossyStore
	srv     *httptest.Server
	deleted atomic.Int32
	linked  atomic.Int32
}

func newLossyShop(t *testing.T, persist bool) *lossyShop {
	s := &lossyShop{t: t, store: &lossyStore{Store: newMemstore(t, memstore.Options{}), fired: true}}
	t.Cleanup(func() { s.store.check(t) })
	m, err := anonymous.New(s.store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: hashKey1}}, PersistOnIssue: persist, Budget: anonymous.Budget{Off: true},
		ErrorLog: quietLog(),
		OnGuestDeleted: func(context.Context, *anonymous.User, anonymous.DeleteReason) {
			s.deleted.Add(1)
		},
		OnLinkAccount: func(context.Context, anonymous.LinkEvent) error { s.linked.Add(1); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	s.m = m
	mux := http.NewServeMux()
	mux.Handle("/api/auth/", m.Handler())
	mux.HandleFunc("/add", func(w http.ResponseWriter, r *http.Request) {
		data, err := m.UpdateData(w, r, func(d []byte) ([]byte, error) {
			n, _ := strconv.Atoi(string(d))
			return strconv.AppendInt(nil, int64(n+1), 10), nil
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%s %s", anonymous.UserFrom(r.Context()).ID, data)
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Link(w, r, &anonymous.User{ID: "alice"}); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var id string
		if u := anonymous.UserFrom(r.Context()); u != nil {
			id = u.ID
		}
		fmt.Fprintf(w, "%s %s", id, anonymous.DataFrom(r.Context()))
	})
	s.srv = httptest.NewTLSServer(m.Middleware(mux))
	t.Cleanup(s.srv.Close)
	return s
}

// browser returns a client with a cookie jar of its own.
func (s *lossyShop) browser() *http.Client {
	c := s.srv.Client()
	c.Jar, _ = cookiejar.New(nil)
	return c
}

// get answers GET path's status and body.
func (s *lossyShop) get(c *http.Client, path string) (int, string) {
	return s.send(c, "GET", path)
}

func (s *lossyShop) send(c *http.Client, method, path string) (int, string) {
	s.t.Helper()
	r, _ := http.NewRequest(method, s.srv.URL+path, nil)
	r.Header.Set("Origin", s.srv.URL)
	resp, err := c.Do(r)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// page answers the guest's id and cart as a GET / sees them.
func (s *lossyShop) page(c *http.Client) (id, cart string) {
	_, body := s.get(c, "/")
	fmt.Sscan(body, &id, &cart)
	return id, cart
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Every path that writes a guest ends with its change applied once, the
// visitor holding the guest that was stored, and success, when the store
// applied the write and its reply was lost.
func TestLostReply(t *testing.T) {
	for _, shape := range []string{lost, resent, interleaved} {
		t.Run("UpdateData/"+shape, func(t *testing.T) {
			s := newLossyShop(t, onIssue)
			c, tab := s.browser(), s.browser()
			s.get(c, "/add") // stored, with one item
			tab.Jar = c.Jar  // a second tab of the same browser
			s.store.arm("Update", shape, func() {
				if code, body := s.get(tab, "/add"); code != http.StatusOK {
					t.Errorf("the other tab's add: %d %s", code, body)
				}
			})
			if code, body := s.get(c, "/add"); code != http.StatusOK {
				t.Fatalf("add with its reply lost: %d %s", code, body)
			}
			want := "2"
			if shape == interleaved {
				want = "3"
			}
			if _, cart := s.page(c); cart != want {
				t.Fatalf("cart %s after the add whose reply was lost, want %s", cart, want)
			}
		})
	}
	for _, shape := range []string{lost, resent} {
		t.Run("FirstAdd/"+shape, func(t *testing.T) {
			s := newLossyShop(t, onReturn)
			c := s.browser()
			s.store.arm("Create", shape, nil)
			code, body := s.get(c, "/add") // the first visit adds to its cart
			if code != http.StatusOK {
				t.Fatalf("first add with its reply lost: %d %s", code, body)
			}
			var first string
			fmt.Sscan(body, &first)
			if id, cart := s.page(c); id != first || cart != "1" {
				t.Fatalf("next page: guest %s with cart %q, want %s with 1", id, cart, first)
			}
		})
		t.Run("FirstReturn/"+shape, func(t *testing.T) {
			s := newLossyShop(t, onReturn)
			c := s.browser()
			first, _ := s.page(c)
			s.store.arm("Create", shape, nil)
			if id, _ := s.page(c); id != first { // stored on this return
				t.Fatalf("first return: guest %s, want %s", id, first)
			}
			if id, _ := s.page(c); id != first {
				t.Fatalf("after the first return: guest %s, want %s", id, first)
			}
			if n := s.store.Len(); n != 1 {
				t.Fatalf("%d guests stored, want 1", n)
			}
		})
		t.Run("SignIn/"+shape, func(t *testing.T) {
			s := newLossyShop(t, onReturn)
			c := s.browser()
			s.store.arm("Create", shape, nil)
			code, body := s.send(c, "POST", "/api/auth/sign-in/anonymous")
			var got struct{ User struct{ ID string } }
			if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil {
				t.Fatalf("sign-in with its reply lost: %d %s", code, body)
			}
			if id, _ := s.page(c); id != got.User.ID {
				t.Fatalf("after sign-in: guest %s, want %s", id, got.User.ID)
			}
			if n := s.store.Len(); n != 1 {
				t.Fatalf("%d guests stored, want 1", n)
			}
		})
	}
	for _, shape := range []string{lost, resent} {
		t.Run("Delete/"+shape, func(t *testing.T) {
			s := newLossyShop(t, onIssue)
			c := s.browser()
			id, _ := s.page(c)
			s.store.arm("Update", shape, nil)
			if code, body := s.send(c, "POST", "/api/auth/delete-anonymous-user"); code != http.StatusOK {
				t.Fatalf("delete with its reply lost: %d %s", code, body)
			}
			if n := s.deleted.Load(); n != 1 {
				t.Fatalf("OnGuestDeleted ran %d times, want 1", n)
			}
			if rec, err := s.m.Record(context.Background(), id); err != nil || !rec.Deleted {
				t.Fatalf("the guest's record after the delete: %+v, %v", rec, err)
			}
		})
		for _, write := range []string{"claim", "link"} {
			t.Run("Link/"+write+"/"+shape, func(t *testing.T) {
				s := newLossyShop(t, onIssue)
				c := s.browser()
				s.get(c, "/add")
				id, _ := s.page(c)
				if write == "claim" {
					s.store.arm("Update", shape, nil)
				} else {
					s.store.armSecond("Update", shape)
				}
				if code, body := s.get(c, "/login"); code != http.StatusOK {
					t.Fatalf("login with its reply lost: %d %s", code, body)
				}
				if n := s.linked.Load(); n != 1 {
					t.Fatalf("OnLinkAccount ran %d times, want 1", n)
				}
				if to, err := s.m.LinkedTo(context.Background(), id); to != "alice" || err != nil {
					t.Fatalf("LinkedTo = %q, %v; want alice", to, err)
				}
			})
		}
	}
}

// goneQuiet applies the next Update, then stops answering until back is
// called: the write's outcome cannot be learned.
type goneQuiet struct {
	anonymous.Store
	armed, quiet atomic.Bool
}

func (s *goneQuiet) Update(ctx context.Context, key string, e anonymous.Entry) error {
	if s.quiet.Load() {
		return errTimeout
	}
	err := s.Store.Update(ctx, key, e)
	if s.armed.CompareAndSwap(true, false) {
		s.quiet.Store(true)
		return errTimeout
	}
	return err
}

func (s *goneQuiet) Get(ctx context.Context, key string) (anonymous.Entry, error) {
	if s.quiet.Load() {
		return anonymous.Entry{}, errTimeout
	}
	return s.Store.Get(ctx, key)
}

// When the store stops answering after a write, UpdateData says it cannot
// tell (ErrUncertain, wrapping the store's error), and does not write
// again: once the store is back, the change is there once.
func TestUpdateUncertain(t *testing.T) {
	f := newFixture(t, anonymous.Options{PersistOnIssue: true, Budget: anonymous.Budget{Off: true}})
	w, g := f.send(t, "GET", "/")
	quiet := &goneQuiet{Store: f.store.Store}
	f.store.Store = quiet
	r := httptest.NewRequest("GET", "https://shop.example/", nil)
	r.AddCookie(guestCookie(t, w))
	var err error
	f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		quiet.armed.Store(true)
		_, err = f.m.UpdateData(w, r, func(d []byte) ([]byte, error) { return append(d, 'x'), nil })
	})).ServeHTTP(httptest.NewRecorder(), r)
	if !errors.Is(err, anonymous.ErrUncertain) || !errors.Is(err, errTimeout) {
		t.Fatalf("UpdateData: %v, want ErrUncertain wrapping the store's error", err)
	}
	quiet.quiet.Store(false)
	if rec, err := f.m.Record(context.Background(), g.ID); err != nil || string(rec.Data) != "x" {
		t.Fatalf("the guest once the store is back: %+v, %v; want data x", rec, err)
	}
}

// unreplicated applies every Durable write while down is set and answers
// it with an error, as redisstore does with WaitReplicas when the replicas
// lag past WaitTimeout.
type unreplicated struct {
	*memstore.Store
	down atomic.Bool
}

var errNotReplicated = errors.New("write not acknowledged by enough replicas")

func (s *unreplicated) Create(ctx context.Context, key string, e anonymous.Entry) error {
	err := s.Store.Create(ctx, key, e)
	if err == nil && e.Durable && s.down.Load() {
		return errNotReplicated
	}
	return err
}

func (s *unreplicated) Update(ctx context.Context, key string, e anonymous.Entry) error {
	err := s.Store.Update(ctx, key, e)
	if err == nil && e.Durable && s.down.Load() {
		return errNotReplicated
	}
	return err
}

// A guest held in its cookie (over budget) logs in while the replicas lag:
// the link's claimed Create is stored but not confirmed, so the link
// fails, and lets go of the stored guest, whose cookie the visitor now
// holds: its next login links it once, with its cart.
func TestUnconfirmedClaimOfHeldGuest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &unreplicated{Store: newMemstore(t, memstore.Options{})}
		lim := &clientOnlyLimiter{}
		lim.refuse.Store(true)
		var links []anonymous.LinkEvent
		f := newFixtureOn(t, st, anonymous.Options{Identify: identifyHeader,
			Budget:        anonymous.Budget{Limiter: lim},
			OnLinkAccount: func(_ context.Context, ev anonymous.LinkEvent) error { links = append(links, ev); return nil }})
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {})
		mux.HandleFunc("/add", func(w http.ResponseWriter, r *http.Request) {
			if _, err := f.m.UpdateData(w, r, func(d []byte) ([]byte, error) { return append(d, 'x'), nil }); err != nil {
				t.Error(err)
			}
		})
		f.h = f.m.Middleware(mux)
		b := &browserJar{}
		b.req(t, f, "GET", "/", withRemote(victimIP))
		b.req(t, f, "POST", "/add", withRemote(victimIP)) // held in its cookie, with its cart
		st.down.Store(true)
		b.req(t, f, "GET", "/", withRemote(victimIP), withUser("alice")) // the replicas lag: the link fails
		st.down.Store(false)
		if len(links) != 0 {
			t.Fatalf("linked while the claim was not confirmed: %d", len(links))
		}
		time.Sleep(30 * time.Second) // past the first-visit cookie's sibling grace
		b.req(t, f, "GET", "/", withRemote(victimIP), withUser("alice"))
		if len(links) != 1 || string(links[0].Data) != "x" {
			t.Fatalf("OnLinkAccount got %d links (%+v), want one with the cart", len(links), links)
		}
	})
}
