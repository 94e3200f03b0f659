package anonymous_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

// The whole flow: a guest fills a cart kept in its own data, logs in, and
// OnLinkAccount finds the cart in LinkEvent.Data and adds it to the
// account's. The login needs no call into this package: Identify names the
// account on the next request, and the middleware links the guest then.
func Example_cart() {
	type Cart map[string]int // the guest's data: SKU → quantity
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	accountCarts := map[string]Cart{"alice": {"mug": 1}} // the application's own
	guests, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: []byte("load-a-32-byte-key-from-secrets!")}},
		Identify: func(r *http.Request) (*anonymous.User, error) {
			c, err := r.Cookie("app_session") // the application's own login
			if err != nil {
				return nil, nil // nobody is logged in
			}
			return &anonymous.User{ID: c.Value}, nil // verify it in a real application
		},
		OnLinkAccount: func(ctx context.Context, ev anonymous.LinkEvent) error {
			var cart Cart
			if len(ev.Data) > 0 {
				if err := json.Unmarshal(ev.Data, &cart); err != nil {
					return err
				}
			}
			// A real application makes this safe to repeat: see
			// ExampleOptions_onLinkAccount.
			for sku, n := range cart {
				accountCarts[ev.NewUser.User.ID][sku] += n
			}
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
		_, err := anonymous.UpdateJSON(guests, w, r, func(c *Cart) error {
			if *c == nil {
				*c = Cart{}
			}
			(*c)[r.FormValue("sku")]++
			return nil
		})
		if err != nil {
			http.Error(w, "could not update the cart", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /cart", func(w http.ResponseWriter, r *http.Request) {
		switch u := anonymous.UserFrom(r.Context()); {
		case u == nil: // the store is down: no guest on this request
			http.Error(w, "try again later", http.StatusServiceUnavailable)
		case u.IsAnonymous:
			cart, _ := anonymous.JSONFrom[Cart](r.Context())
			fmt.Println("guest's cart:", cart)
		default:
			fmt.Println(u.ID+"'s cart:", accountCarts[u.ID])
		}
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		// ... check the password, then start the application's session:
		http.SetCookie(w, &http.Cookie{Name: "app_session", Value: "alice", Path: "/", Secure: true, HttpOnly: true})
	})
	handler := guests.Middleware(mux)

	// A browser: its cookie jar carries the guest cookie.
	jar, _ := cookiejar.New(nil)
	site, _ := url.Parse("https://shop.example/")
	visit := func(method, path string) {
		r := httptest.NewRequest(method, "https://shop.example"+path, nil)
		for _, c := range jar.Cookies(site) {
			r.AddCookie(c)
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		jar.SetCookies(site, w.Result().Cookies())
	}
	visit("GET", "/cart")
	visit("POST", "/cart?sku=tea")
	visit("POST", "/cart?sku=tea")
	visit("GET", "/cart")
	visit("POST", "/login")
	visit("GET", "/cart") // Identify names alice: the guest is linked first
	for _, c := range jar.Cookies(site) {
		fmt.Println("cookie:", c.Name)
	}
	// Output:
	// guest's cart: map[]
	// guest's cart: map[tea:2]
	// alice's cart: map[mug:1 tea:2]
	// cookie: app_session
}

// JSONFrom reads the guest's data as the middleware read it, with the guest
// and in the same store round trip: a guest with no data yet reads as the
// zero value.
func ExampleJSONFrom() {
	type Prefs struct {
		Theme string `json:"theme"`
	}
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	guests, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: []byte("load-a-32-byte-key-from-secrets!")}},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		p, err := anonymous.JSONFrom[Prefs](r.Context())
		if err != nil { // data that is not a Prefs
			http.Error(w, "bad preferences", http.StatusInternalServerError)
			return
		}
		fmt.Printf("theme: %q\n", p.Theme)
	})
	mux.HandleFunc("POST /theme", func(w http.ResponseWriter, r *http.Request) {
		p, err := anonymous.UpdateJSON(guests, w, r, func(p *Prefs) error {
			p.Theme = r.FormValue("theme")
			return nil
		})
		if err != nil {
			http.Error(w, "could not save", http.StatusServiceUnavailable)
			return
		}
		// JSONFrom still shows the data as it was read: use what UpdateJSON returns.
		old, _ := anonymous.JSONFrom[Prefs](r.Context())
		fmt.Printf("saved %q over %q\n", p.Theme, old.Theme)
	})
	handler := guests.Middleware(mux)

	var cookie *http.Cookie // the browser's guest cookie
	for _, target := range []string{"GET /", "POST /theme?theme=dark", "GET /"} {
		method, path, _ := strings.Cut(target, " ")
		r := httptest.NewRequest(method, "https://example.com"+path, nil)
		if cookie != nil {
			r.AddCookie(cookie)
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		if c := w.Result().Cookies(); len(c) > 0 {
			cookie = c[0]
		}
	}
	// Output:
	// theme: ""
	// saved "dark" over ""
	// theme: "dark"
}

// A client without cookies (a mobile app, a server) signs in anonymously
// and sends the token it gets as "Authorization: Bearer <token>": each of
// its requests is then that guest. Here the endpoints are mounted apart
// from the middleware, which guards the application's own routes.
func ExampleManager_Handler() {
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	guests, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: []byte("load-a-32-byte-key-from-secrets!")}},
	})
	if err != nil {
		log.Fatal(err)
	}
	api := http.NewServeMux()
	api.HandleFunc("GET /api/me", func(w http.ResponseWriter, r *http.Request) {
		if u := anonymous.UserFrom(r.Context()); u != nil {
			fmt.Fprint(w, u.ID)
		}
	})
	app := http.NewServeMux()
	app.Handle("/api/auth/", guests.Handler()) // the full path: no http.StripPrefix
	app.Handle("/", guests.Middleware(api))

	// POST /api/auth/sign-in/anonymous answers {"token", "user"}.
	w := httptest.NewRecorder()
	app.ServeHTTP(w, httptest.NewRequest("POST", "https://api.example/api/auth/sign-in/anonymous", strings.NewReader("{}")))
	var signIn struct {
		Token string `json:"token"`
		User  struct {
			ID          string `json:"id"`
			IsAnonymous bool   `json:"isAnonymous"`
		} `json:"user"`
	}
	if err := json.NewDecoder(w.Body).Decode(&signIn); err != nil {
		log.Fatal(err)
	}
	fmt.Println("sign-in:", w.Code, signIn.User.IsAnonymous)

	// No cookie, only the token: the same guest.
	r := httptest.NewRequest("GET", "https://api.example/api/me", nil)
	r.Header.Set("Authorization", "Bearer "+signIn.Token)
	w = httptest.NewRecorder()
	app.ServeHTTP(w, r)
	fmt.Println("same guest:", w.Body.String() == signIn.User.ID)

	// Without the token, a new guest.
	w = httptest.NewRecorder()
	app.ServeHTTP(w, httptest.NewRequest("GET", "https://api.example/api/me", nil))
	fmt.Println("same guest without the token:", w.Body.String() == signIn.User.ID)
	// Output:
	// sign-in: 200 true
	// same guest: true
	// same guest without the token: false
}

// A payment webhook or a queued job that carries a guest's id can arrive
// after the guest logged in: LinkedTo finds the account the guest became.
func ExampleManager_LinkedTo() {
	ctx := context.Background()
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	guests, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: []byte("load-a-32-byte-key-from-secrets!")}},
		// Store each guest on its first request (the default waits for the
		// cookie to come back).
		PersistOnIssue: true,
		Identify: func(r *http.Request) (*anonymous.User, error) {
			if c, err := r.Cookie("app_session"); err == nil {
				return &anonymous.User{ID: c.Value}, nil // verify it in a real application
			}
			return nil, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	var guestID string // as a checkout would hand it to a payment provider
	handler := guests.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u := anonymous.UserFrom(r.Context()); u != nil && u.IsAnonymous {
			guestID = u.ID
		}
	}))

	w := httptest.NewRecorder()
	handler.ServeHTTP(w, httptest.NewRequest("GET", "https://shop.example/checkout", nil))
	user, err := guests.LinkedTo(ctx, guestID)
	fmt.Printf("before the login: %q %v\n", user, err)

	r := httptest.NewRequest("GET", "https://shop.example/", nil)
	r.AddCookie(w.Result().Cookies()[0])
	r.AddCookie(&http.Cookie{Name: "app_session", Value: "alice"}) // logged in
	handler.ServeHTTP(httptest.NewRecorder(), r)
	user, err = guests.LinkedTo(ctx, guestID) // the webhook's handler
	fmt.Printf("after the login: %q %v\n", user, err)
	// Output:
	// before the login: "" <nil>
	// after the login: "alice" <nil>
}

// DeleteGuest is "forget me" from the application's side (an admin page, a
// privacy request): the guest, its session and its data are gone, its
// cookie opens nothing, and OnGuestDeleted hears of it.
func ExampleManager_DeleteGuest() {
	ctx := context.Background()
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	guests, err := anonymous.New(store, anonymous.Options{
		Keys:           []anonymous.Key{{Hash: []byte("load-a-32-byte-key-from-secrets!")}},
		PersistOnIssue: true, // store each guest on its first request
		OnGuestDeleted: func(ctx context.Context, u *anonymous.User, reason anonymous.DeleteReason) {
			fmt.Println("deleted by the", reason) // drop what the application keeps about u.ID
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	var seen string // the guest each request has
	handler := guests.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = anonymous.UserFrom(r.Context()).ID
	}))

	w := httptest.NewRecorder()
	handler.ServeHTTP(w, httptest.NewRequest("GET", "https://example.com/", nil))
	id, cookie := seen, w.Result().Cookies()[0]

	if err := guests.DeleteGuest(ctx, id); err != nil {
		log.Fatal(err)
	}
	_, err = guests.LinkedTo(ctx, id)
	fmt.Println("gone:", errors.Is(err, anonymous.ErrNotFound))

	r := httptest.NewRequest("GET", "https://example.com/", nil)
	r.AddCookie(cookie) // the deleted guest's cookie
	handler.ServeHTTP(httptest.NewRecorder(), r)
	fmt.Println("a new guest:", seen != id)
	// Output:
	// deleted by the application
	// gone: true
	// a new guest: true
}
