package sqltest

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/sqlstore"
)

// txKeys are the Manager's keys in the link tests, the crash test's child's
// too.
var txKeys = []anonymous.Key{{Hash: []byte("a-32-byte-key-for-the-link-tests")}}

// shop is an application whose carts are rows of its own table in the
// guests' database: POST /cart?item=x adds a row (and the item to the
// guest's data), POST /login?user=u links the guest, whose OnLinkAccount
// moves the rows through sqlstore.TxFrom's transaction.
type shop struct {
	d         sqlstore.Dialect
	db        *sql.DB
	store     anonymous.Store
	guests    *anonymous.Manager
	cart      string // the application's table
	handler   http.Handler
	callbacks atomic.Int64
	data      atomic.Pointer[[]byte] // the last callback's LinkEvent.Data
	// during runs in OnLinkAccount once the rows moved; its error fails
	// the link.
	during func(ctx context.Context) error
}

// newShop returns a shop whose carts are in db, d's, and whose guests are
// in store; opts gets the shop's keys and OnLinkAccount, which moves the
// rows through sqlstore.TxFrom's transaction when store is a sqlstore, and
// straight on db otherwise (guests in Redis, carts in SQL).
func newShop(t testing.TB, d sqlstore.Dialect, db *sql.DB, store anonymous.Store, cart string, opts anonymous.Options) *shop {
	t.Helper()
	s := &shop{d: d, db: db, store: store, cart: cart}
	opts.Keys = txKeys
	opts.CookieName, opts.CookieInsecure = "guest", true // httptest's requests are plain HTTP
	opts.OnLinkAccount = s.move
	var err error
	if s.guests, err = anonymous.New(store, opts); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cart", s.add)
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		err := s.guests.Link(w, r, &anonymous.User{ID: r.FormValue("user")})
		switch {
		case errors.Is(err, anonymous.ErrClaimed):
			http.Error(w, err.Error(), http.StatusConflict)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	s.handler = s.guests.Middleware(mux)
	return s
}

// createCart creates the application's table.
func createCart(t testing.TB, db *sql.DB, d sqlstore.Dialect) string {
	t.Helper()
	name := "anon_cart_" + table()[len("anon_test_"):]
	if _, err := db.Exec("CREATE TABLE " + name + " (owner VARCHAR(64) NOT NULL, item VARCHAR(64) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drop(t, db, d, name) })
	return name
}

func (s *shop) add(w http.ResponseWriter, r *http.Request) {
	item := r.FormValue("item")
	if _, err := s.guests.UpdateData(w, r, func(b []byte) ([]byte, error) { return append(b, item+","...), nil }); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	p := placeholders(s.d, 2)
	if _, err := s.db.ExecContext(r.Context(), "INSERT INTO "+s.cart+" (owner, item) VALUES ("+p[0]+", "+p[1]+")",
		anonymous.UserFrom(r.Context()).ID, item); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// move is OnLinkAccount: the guest's rows become the user's, in the link's
// transaction.
func (s *shop) move(ctx context.Context, l anonymous.LinkEvent) error {
	s.callbacks.Add(1)
	s.data.Store(&l.Data)
	var exec interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
	} = s.db
	if _, ok := s.store.(*sqlstore.Store); ok {
		tx := sqlstore.TxFrom(ctx)
		if tx == nil {
			return errors.New("no transaction in OnLinkAccount's context")
		}
		exec = tx
	}
	p := placeholders(s.d, 2)
	if _, err := exec.ExecContext(ctx, "UPDATE "+s.cart+" SET owner = "+p[0]+" WHERE owner = "+p[1],
		l.NewUser.User.ID, l.AnonymousUser.User.ID); err != nil {
		return err
	}
	if s.during != nil {
		return s.during(ctx)
	}
	return nil
}

// do sends a POST to path with cookie (nil for none) and returns the
// response's status and cookie (the one sent when it set none).
func (s *shop) do(t testing.TB, path string, cookie *http.Cookie) (int, *http.Cookie) {
	t.Helper()
	r := httptest.NewRequest("POST", path, nil)
	if cookie != nil {
		r.AddCookie(cookie)
	}
	w := httptest.NewRecorder()
	s.handler.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		if c.Name == s.guests.CookieName() {
			return w.Code, c
		}
	}
	return w.Code, cookie
}

// owned returns how many cart rows owner has.
func (s *shop) owned(t testing.TB, owner string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow("SELECT COUNT(*) FROM "+s.cart+" WHERE owner = "+placeholders(s.d, 1)[0], owner).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// guestWithCart returns a stored guest's id and cookie, with items in its
// cart (rows and data).
func (s *shop) guestWithCart(t testing.TB, items ...string) (string, *http.Cookie) {
	t.Helper()
	var c *http.Cookie
	var id string
	for _, it := range items {
		code, next := s.do(t, "/cart?item="+it, c)
		if code != http.StatusOK {
			t.Fatalf("adding %s: %d", it, code)
		}
		c = next
	}
	if err := s.db.QueryRow("SELECT owner FROM " + s.cart + " LIMIT 1").Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id, c
}

// intact fails t unless guest id is live with data and owns n rows.
func (s *shop) intact(t testing.TB, id, data string, n int) {
	t.Helper()
	rec, err := s.guests.Record(context.Background(), id)
	switch {
	case err != nil:
		t.Fatalf("guest %s: %v", id, err)
	case rec.Deleted || rec.LinkedTo != "" || string(rec.Data) != data:
		t.Fatalf("guest %s: deleted %v, linked to %q, data %q; want a live guest with %q", id, rec.Deleted, rec.LinkedTo, rec.Data, data)
	}
	if got := s.owned(t, id); got != n {
		t.Fatalf("guest %s owns %d rows, want %d", id, got, n)
	}
}

// linkedOnce fails t unless guest id is linked to user, who owns n rows.
func (s *shop) linkedOnce(t testing.TB, id, user string, n int) {
	t.Helper()
	if to, err := s.guests.LinkedTo(context.Background(), id); err != nil || to != user {
		t.Fatalf("LinkedTo(%s) = %q, %v; want %q", id, to, err, user)
	}
	if got, left := s.owned(t, user), s.owned(t, id); got != n || left != 0 {
		t.Fatalf("user owns %d rows and guest %d; want %d and 0", got, left, n)
	}
}

func newShopOn(t *testing.T, d sqlstore.Dialect, opts anonymous.Options) *shop {
	db := open(t, d)
	st := newStore(t, db, d, sqlstore.Options{SweepInterval: -1})
	return newShop(t, d, db, st, createCart(t, db, d), opts)
}

// TestTxLinkCommitsTogether: the rows move and the guest ends in one
// commit; a failing callback rolls both back, and the next login links
// once.
func TestTxLinkCommitsTogether(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			s := newShopOn(t, d, anonymous.Options{PersistOnIssue: true})
			id, c := s.guestWithCart(t, "book", "pen")

			s.during = func(context.Context) error { return errors.New("payment service down") }
			if code, _ := s.do(t, "/login?user=alice", c); code != http.StatusInternalServerError {
				t.Fatalf("login with a failing callback: %d, want 500", code)
			}
			s.intact(t, id, "book,pen,", 2)
			if n := s.owned(t, "alice"); n != 0 {
				t.Fatalf("a rolled-back link moved %d rows", n)
			}

			s.during = nil
			code, after := s.do(t, "/login?user=alice", c)
			if code != http.StatusOK || after.MaxAge >= 0 {
				t.Fatalf("login: %d, cookie Max-Age %d; want 200 and an expired cookie", code, after.MaxAge)
			}
			s.linkedOnce(t, id, "alice", 2)
			if code, _ := s.do(t, "/login?user=alice", c); code != http.StatusOK {
				t.Fatalf("a replayed login: %d", code)
			}
			if n := s.callbacks.Load(); n != 2 {
				t.Fatalf("%d callbacks, want 2 (one rolled back, one committed)", n)
			}
			s.linkedOnce(t, id, "alice", 2)
		})
	}
}

// TestTxLinkConcurrent: 64 logins of one guest at once run one callback
// and move the rows once; the others get ErrClaimed (409) or nothing.
func TestTxLinkConcurrent(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			s := newShopOn(t, d, anonymous.Options{PersistOnIssue: true})
			id, c := s.guestWithCart(t, "book", "pen", "ink")
			// A callback that takes a while, so that the logins meet.
			s.during = func(context.Context) error { time.Sleep(50 * time.Millisecond); return nil }
			var wg sync.WaitGroup
			var ok, claimed, other atomic.Int64
			for range 64 {
				wg.Go(func() {
					switch code, _ := s.do(t, "/login?user=bob", c); code {
					case http.StatusOK:
						ok.Add(1)
					case http.StatusConflict:
						claimed.Add(1)
					default:
						other.Add(1)
					}
				})
			}
			wg.Wait()
			if n := s.callbacks.Load(); n != 1 || other.Load() != 0 {
				t.Fatalf("%d callbacks and %d failed logins; want 1 and 0", n, other.Load())
			}
			s.linkedOnce(t, id, "bob", 3)
			if d != sqlstore.SQLite && claimed.Load() == 0 {
				t.Errorf("no login met the link's lock: the test did not race")
			}
			t.Logf("%v: %d logins answered 200, %d ErrClaimed", d, ok.Load(), claimed.Load())
		})
	}
}

// TestTxLinkNeverStored: a guest the budget kept in its cookie is stored
// by its login and linked once, its data with it.
func TestTxLinkNeverStored(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			s := newShopOn(t, d, anonymous.Options{
				Budget: anonymous.Budget{Levels: []anonymous.Level{{By: "site", Burst: 1, Rate: 1, Period: time.Hour}}},
			})
			// Another visitor's return spends the site's budget.
			_, other := s.do(t, "/cart?item=x", nil)
			s.do(t, "/cart?item=y", other)
			_, c := s.do(t, "/cart?item=book", nil) // held in its cookie
			code, c := s.do(t, "/cart?item=pen", c)
			if code != http.StatusOK {
				t.Fatalf("cart: %d", code)
			}
			var id string
			q := "SELECT owner FROM " + s.cart + " WHERE item = " + placeholders(d, 1)[0]
			if err := s.db.QueryRow(q, "book").Scan(&id); err != nil {
				t.Fatal(err)
			}
			if _, err := s.guests.Record(context.Background(), id); !errors.Is(err, anonymous.ErrNotFound) {
				t.Fatalf("the guest is stored before its login (%v): the test needs one that is not", err)
			}
			if code, _ := s.do(t, "/login?user=carol", c); code != http.StatusOK {
				t.Fatalf("login: %d", code)
			}
			if code, _ := s.do(t, "/login?user=carol", c); code != http.StatusOK {
				t.Fatalf("a replayed login: %d", code)
			}
			if n, data := s.callbacks.Load(), s.data.Load(); n != 1 || data == nil || string(*data) != "book,pen," {
				t.Fatalf("%d callbacks with data %v; want 1 with %q", n, data, "book,pen,")
			}
			s.linkedOnce(t, id, "carol", 2)
		})
	}
}

// The crash test's child reads its orders from these variables.
const (
	crashEnv     = "ANON_TX_CRASH" // "1" in the child
	crashReady   = "anon-tx-ready" // the line the child prints from inside the callback
	crashDialect = "ANON_TX_DIALECT"
	crashDriver  = "ANON_TX_DRIVER"
	crashDSN     = "ANON_TX_DSN"
	crashGuests  = "ANON_TX_GUESTS"
	crashCart    = "ANON_TX_CART"
	crashCookie  = "ANON_TX_COOKIE"
)

// TestTxLinkCrash: a process SIGKILLed while its OnLinkAccount is inside
// the link's transaction moves nothing and ends nothing; the database
// releases the row's lock when the connection dies, and the next login
// links at once, exactly once, with no lease to wait for.
func TestTxLinkCrash(t *testing.T) {
	if os.Getenv(crashEnv) == "1" {
		crashChild(t)
		return
	}
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			driver, dsn := crashDB(t, d)
			db, err := sql.Open(driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if err := db.Ping(); err != nil {
				unavailable(t, d.String(), err)
			}
			st := newStore(t, db, d, sqlstore.Options{SweepInterval: -1})
			s := newShop(t, d, db, st, createCart(t, db, d), anonymous.Options{PersistOnIssue: true})
			id, c := s.guestWithCart(t, "book", "pen")

			cmd := exec.Command(os.Args[0], "-test.run=^TestTxLinkCrash$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnv+"=1", fmt.Sprintf("%s=%d", crashDialect, int(d)),
				crashDriver+"="+driver, crashDSN+"="+dsn, crashGuests+"="+tableOf(t, st), crashCart+"="+s.cart, crashCookie+"="+c.Value)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ready := make(chan bool, 1)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					if sc.Text() == crashReady {
						ready <- true
						return
					}
				}
				ready <- false
			}()
			select {
			case ok := <-ready:
				if !ok {
					cmd.Wait()
					t.Fatalf("the child ended without reaching the callback: %s", stderr.String())
				}
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the child did not reach the callback in a minute: %s", stderr.String())
			}
			if d != sqlstore.SQLite { // SQLite's login would wait for the lock
				if code, _ := s.do(t, "/login?user=dave", c); code != http.StatusConflict {
					t.Fatalf("a login while the child holds the lock: %d, want 409", code)
				}
			}
			if err := cmd.Process.Kill(); err != nil { // SIGKILL, inside the transaction
				t.Fatal(err)
			}
			cmd.Wait()

			s.intact(t, id, "book,pen,", 2)
			start := time.Now()
			for {
				code, _ := s.do(t, "/login?user=dave", c)
				if code == http.StatusOK {
					break
				}
				if code != http.StatusConflict || time.Since(start) > 5*time.Second {
					t.Fatalf("login after the crash: %d after %v", code, time.Since(start))
				}
				time.Sleep(10 * time.Millisecond) // the server has yet to see the connection die
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("the login after the crash took %v", took)
			} else {
				t.Logf("%v: the login after the crash linked in %v", d, took)
			}
			if n := s.callbacks.Load(); n != 1 {
				t.Fatalf("%d callbacks after the crash, want 1", n)
			}
			s.linkedOnce(t, id, "dave", 2)
		})
	}
}

// crashDB returns the driver and DSN of d's test database; SQLite's is a
// file the child can open too.
func crashDB(t *testing.T, d sqlstore.Dialect) (string, string) {
	switch d {
	case sqlstore.Postgres:
		return "pgx", env("ANON_POSTGRES_URL", defaultPostgresURL)
	case sqlstore.MySQL:
		return "mysql", env("ANON_MYSQL_DSN", defaultMySQLDSN)
	}
	return "sqlite", "file:" + filepath.Join(t.TempDir(), "guests.db") + sqliteDSN
}

// crashChild is the crash test's child: it logs the parent's guest in,
// and blocks in OnLinkAccount, inside the transaction, once it moved the
// rows, until the parent kills it.
func crashChild(t *testing.T) {
	var d sqlstore.Dialect
	fmt.Sscan(os.Getenv(crashDialect), &d)
	db, err := sql.Open(os.Getenv(crashDriver), os.Getenv(crashDSN))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlstore.New(db, sqlstore.Options{Dialect: d, Table: os.Getenv(crashGuests), SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	s := newShop(t, d, db, st, os.Getenv(crashCart), anonymous.Options{PersistOnIssue: true})
	s.during = func(context.Context) error {
		fmt.Println(crashReady)
		time.Sleep(10 * time.Minute) // killed long before
		return nil
	}
	code, _ := s.do(t, "/login?user=dave", &http.Cookie{Name: s.guests.CookieName(), Value: os.Getenv(crashCookie)})
	t.Fatalf("the child's login returned (%d) instead of blocking", code)
}
