package anonymous_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

const (
	apiSignIn   = "/api/auth/sign-in/anonymous"
	apiDelete   = "/api/auth/delete-anonymous-user"
	apiSession  = "/api/auth/get-session"
	apiCookie   = defaultCookie
	apiHost     = "shop.example"
	apiRealUser = "X-Test-Real-User"
	apiIdentErr = "X-Test-Identify-Error"
)

// newAPIFixture is a fixture that serves the endpoints alone, as Handler
// does. Identify, unless opts sets it, names a real user from the
// apiRealUser header and fails when the apiIdentErr header is present.
func newAPIFixture(t *testing.T, opts anonymous.Options) *fixture {
	t.Helper()
	if opts.Identify == nil {
		opts.Identify = func(r *http.Request) (*anonymous.User, error) {
			if r.Header.Get(apiIdentErr) != "" {
				return nil, errors.New("auth backend down")
			}
			if id := r.Header.Get(apiRealUser); id != "" {
				return &anonymous.User{ID: id, Email: id + "@example.com"}, nil
			}
			return nil, nil
		}
	}
	f := newFixture(t, opts)
	f.h = f.m.Handler()
	return f
}

// signIn creates a guest, with a request of opts, and returns its cookie
// and token.
func (f *fixture) signIn(t *testing.T, opts ...reqOpt) (cookie *http.Cookie, token, id string) {
	t.Helper()
	res, _ := f.send(t, "POST", apiSignIn, opts...)
	if res.Code != http.StatusOK {
		t.Fatalf("sign-in: status %d, body %s", res.Code, res.Body)
	}
	var body struct {
		Token string `json:"token"`
		User  struct {
			ID string `json:"id"`
		} `json:"user"`
	}
	decodeInto(t, res, &body)
	return resCookie(t, res), body.Token, body.User.ID
}

func decodeInto(t *testing.T, res *httptest.ResponseRecorder, v any) {
	t.Helper()
	if err := json.Unmarshal(res.Body.Bytes(), v); err != nil {
		t.Fatalf("decoding body: %v", err)
	}
}

// resCookie returns the guest cookie the response sets, failing if none.
func resCookie(t *testing.T, res *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range res.Result().Cookies() {
		if c.Name == apiCookie {
			return c
		}
	}
	t.Fatalf("no %s cookie set; Set-Cookie: %q", apiCookie, res.Header().Values("Set-Cookie"))
	return nil
}

func setsCookie(res *httptest.ResponseRecorder) bool {
	return slices.ContainsFunc(res.Result().Cookies(), func(c *http.Cookie) bool { return c.Name == apiCookie })
}

// wantError checks a JSON error answer: status, code, message, headers.
func wantError(t *testing.T, res *httptest.ResponseRecorder, status int, code, message string) {
	t.Helper()
	body := res.Body.String()
	if res.Code != status {
		t.Errorf("status = %d, want %d (body %s)", res.Code, status, body)
	}
	if ct := res.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e map[string]string
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q is not a JSON object of strings: %v", body, err)
	}
	want := map[string]string{"code": code, "message": message}
	if !maps.Equal(e, want) {
		t.Errorf("error body = %v, want %v", e, want)
	}
}

func wireTimeOf(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e6)
}

var wireTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func keysOf(m map[string]json.RawMessage) []string { return slices.Sorted(maps.Keys(m)) }

func TestHandlerSignInAnonymous(t *testing.T) {
	synctest.Test(t, testHandlerSignInAnonymous)
}

// testHandlerSignInAnonymous runs in a bubble, whose clock stands still
// unless the test sleeps: the guest's times are the test's now.
func testHandlerSignInAnonymous(t *testing.T) {
	time.Sleep(123 * time.Millisecond) // a non-zero millisecond, so the format shows it
	now := time.Now()
	f := newAPIFixture(t, anonymous.Options{})
	res, _ := f.send(t, "POST", apiSignIn, withHeader("Content-Type", "application/json"))
	if res.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", res.Code)
	}
	if ct := res.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cc := res.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	c := resCookie(t, res)
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.MaxAge != 30*24*3600 {
		t.Errorf("cookie = %+v, want HttpOnly, Secure, SameSite=Lax, Path=/, Max-Age 30 days", c)
	}

	var top map[string]json.RawMessage
	decodeInto(t, res, &top)
	if got := keysOf(top); !slices.Equal(got, []string{"token", "user"}) {
		t.Fatalf("keys = %v, want [token user]", got)
	}
	var user map[string]json.RawMessage
	if err := json.Unmarshal(top["user"], &user); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"createdAt", "email", "emailVerified", "id", "isAnonymous", "name", "updatedAt"}
	if got := keysOf(user); !slices.Equal(got, wantKeys) {
		t.Fatalf("user keys = %v, want %v", got, wantKeys)
	}
	var u struct {
		ID            string `json:"id"`
		Email         string `json:"email"`
		EmailVerified bool   `json:"emailVerified"`
		Name          string `json:"name"`
		CreatedAt     string `json:"createdAt"`
		UpdatedAt     string `json:"updatedAt"`
		IsAnonymous   bool   `json:"isAnonymous"`
	}
	if err := json.Unmarshal(top["user"], &u); err != nil {
		t.Fatal(err)
	}
	var token string
	if err := json.Unmarshal(top["token"], &token); err != nil || token == "" {
		t.Fatalf("token = %s, want a non-empty string", top["token"])
	}
	if !u.IsAnonymous || u.EmailVerified || u.Name != "Anonymous" || u.Email != "temp@"+strings.ToLower(u.ID)+".com" {
		t.Errorf("user = %+v, want an anonymous, unverified Anonymous with temp@{id}.com", u)
	}
	want := wireTimeOf(now)
	if u.CreatedAt != want || u.UpdatedAt != want || !wireTimeRE.MatchString(u.CreatedAt) {
		t.Errorf("createdAt, updatedAt = %q, %q, want %q", u.CreatedAt, u.UpdatedAt, want)
	}

	// Stored at once, whatever Options.PersistOnIssue says.
	rec, err := storedRecord(f.store.Store, u.ID)
	if err != nil {
		t.Fatalf("guest not stored: %v", err)
	}
	if rec.User.Email != u.Email || !rec.User.IsAnonymous {
		t.Errorf("stored user = %+v", rec.User)
	}
}

func TestHandlerSignInAgainIsRefused(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	c, tok, _ := f.signIn(t)
	for name, opt := range map[string]reqOpt{"cookie": withCookie(c), "bearer": withBearer(tok)} {
		t.Run(name, func(t *testing.T) {
			res, _ := f.send(t, "POST", apiSignIn, opt)
			wantError(t, res, 400, "ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY", "Anonymous users cannot sign in again anonymously")
		})
	}
}

func TestHandlerSignInWithBadCredentialGetsNewGuest(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	_, tok, id := f.signIn(t)
	for name, opt := range map[string]reqOpt{
		"forged cookie": withCookie(&http.Cookie{Name: apiCookie, Value: "forged"}),
		"empty cookie":  withCookie(&http.Cookie{Name: apiCookie, Value: ""}),
		"huge cookie":   withCookie(&http.Cookie{Name: apiCookie, Value: strings.Repeat("A", 5000)}),
		"wrong bearer":  withBearer(id + "." + strings.Repeat("A", 43)),
		"junk bearer":   withBearer("junk"),
		"other header":  withHeader("Authorization", "Basic "+tok),
	} {
		t.Run(name, func(t *testing.T) {
			res, _ := f.send(t, "POST", apiSignIn, opt)
			if res.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200; body %s", res.Code, res.Body.String())
			}
			resCookie(t, res)
		})
	}
}

func TestHandlerSignInRealUserIsRefused(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	res, _ := f.send(t, "POST", apiSignIn, withHeader(apiRealUser, "u1"))
	if setsCookie(res) || f.stored() != 0 {
		t.Errorf("a signed-in user got a guest: Set-Cookie %q, %d stored", res.Header().Values("Set-Cookie"), f.stored())
	}
	wantError(t, res, 400, "SIGNED_IN_USERS_CANNOT_SIGN_IN_ANONYMOUSLY", "Signed-in users cannot sign in anonymously")
}

func TestHandlerIdentifyAnonymousUserIsNotReal(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{Identify: func(*http.Request) (*anonymous.User, error) {
		return &anonymous.User{ID: "x", IsAnonymous: true}, nil
	}})
	if res, _ := f.send(t, "POST", apiSignIn); res.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", res.Code)
	}
}

func TestHandlerGeneratedEmailErrors(t *testing.T) {
	for _, tc := range []struct {
		name          string
		gen           func(context.Context) (string, error)
		status        int
		code, message string
	}{
		{"invalid", func(context.Context) (string, error) { return "Guest <g@example.com>", nil }, 400, "INVALID_EMAIL_FORMAT", "Email was not generated in a valid format"},
		{"failing", func(context.Context) (string, error) { return "", errors.New("no more emails") }, 500, "FAILED_TO_CREATE_USER", "Failed to create user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newAPIFixture(t, anonymous.Options{GenerateRandomEmail: tc.gen})
			res, _ := f.send(t, "POST", apiSignIn)
			if setsCookie(res) {
				t.Error("cookie set without a guest")
			}
			wantError(t, res, tc.status, tc.code, tc.message)
			if f.logs.String() == "" {
				t.Error("nothing logged")
			}
		})
	}
}

func TestHandlerStoreFailures(t *testing.T) {
	for _, tc := range []struct {
		name, method, path string
		fail               []string
		withGuest          bool
		// identifyErr makes Identify fail instead of the store.
		identifyErr   bool
		status        int
		code, message string
	}{
		{"sign-in create", "POST", apiSignIn, []string{"Create"}, false, false, 500, "FAILED_TO_CREATE_USER", "Failed to create user"},
		{"sign-in get", "POST", apiSignIn, []string{"Get"}, true, false, 500, "FAILED_TO_CREATE_USER", "Failed to create user"},
		{"sign-in identify", "POST", apiSignIn, nil, false, true, 500, "FAILED_TO_CREATE_USER", "Failed to create user"},
		{"delete update", "POST", apiDelete, []string{"Update"}, true, false, 500, "FAILED_TO_DELETE_ANONYMOUS_USER", "Failed to delete anonymous user"},
		{"delete get", "POST", apiDelete, []string{"Get"}, true, false, 500, "FAILED_TO_DELETE_ANONYMOUS_USER", "Failed to delete anonymous user"},
		{"delete identify", "POST", apiDelete, nil, true, true, 500, "FAILED_TO_DELETE_ANONYMOUS_USER", "Failed to delete anonymous user"},
		{"get-session get", "GET", apiSession, []string{"Get"}, true, false, 500, "FAILED_TO_GET_SESSION", "Failed to get session"},
		{"get-session identify", "GET", apiSession, nil, true, true, 500, "FAILED_TO_GET_SESSION", "Failed to get session"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newAPIFixture(t, anonymous.Options{})
			var reqOpts []reqOpt
			if tc.identifyErr {
				reqOpts = append(reqOpts, withHeader(apiIdentErr, "1"))
			}
			var id string
			if tc.withGuest {
				var c *http.Cookie
				c, _, id = f.signIn(t)
				reqOpts = append(reqOpts, withCookie(c))
			}
			f.store.setFail(tc.fail...)
			res, _ := f.send(t, tc.method, tc.path, reqOpts...)
			// The visitor keeps its cookie: no new guest, no expiry.
			if setsCookie(res) {
				t.Errorf("Set-Cookie %q on a failure", res.Header().Values("Set-Cookie"))
			}
			wantError(t, res, tc.status, tc.code, tc.message)
			if !strings.Contains(f.logs.String(), "level=ERROR") {
				t.Errorf("failure not logged; log: %q", f.logs.String())
			}
			f.store.setFail()
			if id != "" {
				if _, err := storedRecord(f.store, id); err != nil {
					t.Errorf("guest lost after the failure: %v", err)
				}
			}
		})
	}
}

func TestHandlerDeleteAnonymousUser(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	for _, via := range []string{"cookie", "bearer"} {
		t.Run(via, func(t *testing.T) {
			c, tok, id := f.signIn(t)
			opt := withCookie(c)
			if via == "bearer" {
				opt = withBearer(tok)
			}
			res, _ := f.send(t, "POST", apiDelete, opt)
			if res.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200; body %s", res.Code, res.Body.String())
			}
			if ct := res.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if got := res.Body.String(); got != `{"success":true}` {
				t.Errorf("body = %s, want {\"success\":true}", got)
			}
			if exp := resCookie(t, res); exp.MaxAge >= 0 || exp.Value != "" {
				t.Errorf("cookie not expired: %+v", exp)
			}
			if !buried(f.store.Store, id) {
				t.Errorf("the store still holds the guest after delete")
			}
			// The old credential names nobody any more.
			w, _ := f.send(t, "GET", apiSession, opt)
			if got := w.Body.String(); got != "null" {
				t.Errorf("get-session after delete = %s, want null", got)
			}
			w, _ = f.send(t, "POST", apiDelete, opt)
			wantError(t, w, 401, "UNAUTHORIZED", "Unauthorized")
		})
	}
}

func TestHandlerDeleteErrors(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	c, _, id := f.signIn(t)
	t.Run("no guest", func(t *testing.T) {
		w, _ := f.send(t, "POST", apiDelete)
		wantError(t, w, 401, "UNAUTHORIZED", "Unauthorized")
	})
	t.Run("forged cookie", func(t *testing.T) {
		res, _ := f.send(t, "POST", apiDelete, withCookie(&http.Cookie{Name: apiCookie, Value: "forged"}))
		wantError(t, res, 401, "UNAUTHORIZED", "Unauthorized")
	})
	t.Run("real user", func(t *testing.T) {
		w, _ := f.send(t, "POST", apiDelete, withHeader(apiRealUser, "u1"))
		wantError(t, w, 403, "USER_IS_NOT_ANONYMOUS", "User is not anonymous")
	})
	t.Run("real user with guest cookie", func(t *testing.T) {
		res, _ := f.send(t, "POST", apiDelete, withCookie(c), withHeader(apiRealUser, "u1"))
		wantError(t, res, 403, "USER_IS_NOT_ANONYMOUS", "User is not anonymous")
		if _, err := storedRecord(f.store, id); err != nil {
			t.Errorf("guest deleted for a real user: %v", err)
		}
	})
}

// delete-anonymous-user checks in Better Auth's order: a session first
// (401), then the disable flag (400), then anonymity (403).
func TestHandlerDeleteChecksInBetterAuthOrder(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{DisableDeleteAnonymousUser: true})
	c, _, id := f.signIn(t)
	for name, tc := range map[string]struct {
		opts          []reqOpt
		status        int
		code, message string
	}{
		"no session": {nil, 401, "UNAUTHORIZED", "Unauthorized"},
		"guest":      {[]reqOpt{withCookie(c)}, 400, "DELETE_ANONYMOUS_USER_DISABLED", "Deleting anonymous users is disabled"},
		"real user":  {[]reqOpt{withHeader(apiRealUser, "u1")}, 400, "DELETE_ANONYMOUS_USER_DISABLED", "Deleting anonymous users is disabled"},
	} {
		t.Run(name, func(t *testing.T) {
			w, _ := f.send(t, "POST", apiDelete, tc.opts...)
			wantError(t, w, tc.status, tc.code, tc.message)
		})
	}
	if _, err := storedRecord(f.store, id); err != nil {
		t.Errorf("guest gone: %v", err)
	}
}

// A guest that lives only in its cookie is deleted for good: replaying the
// cookie does not bring it back.
func TestHandlerDeletePendingGuest(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	var page http.Handler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	w := httptest.NewRecorder()
	f.m.Middleware(page).ServeHTTP(w, httptest.NewRequest("GET", "https://"+apiHost+"/", nil))
	pending := resCookie(t, w)

	res, _ := f.send(t, "POST", apiDelete, withCookie(pending))
	if res.Code != http.StatusOK {
		t.Fatalf("delete: status %d, body %s", res.Code, res.Body.String())
	}
	w, _ = f.send(t, "GET", apiSession, withCookie(pending))
	if got := w.Body.String(); got != "null" {
		t.Errorf("replayed cookie after delete: get-session = %s, want null", got)
	}
}

func TestHandlerGetSession(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	t.Run("nobody", func(t *testing.T) {
		res, _ := f.send(t, "GET", apiSession)
		if res.Code != http.StatusOK || res.Header().Get("Content-Type") != "application/json" {
			t.Errorf("status %d, Content-Type %q", res.Code, res.Header().Get("Content-Type"))
		}
		if got := res.Body.String(); got != "null" {
			t.Errorf("body = %q, want null", got)
		}
		if setsCookie(res) {
			t.Error("get-session issued a guest")
		}
	})

	start := time.Now()
	c, tok, id := f.signIn(t, withRemote("192.0.2.7:41234"), withHeader("User-Agent", "handler-test"))
	for name, opt := range map[string]reqOpt{"cookie": withCookie(c), "bearer": withBearer(tok)} {
		t.Run(name, func(t *testing.T) {
			res, _ := f.send(t, "GET", apiSession, opt)
			if res.Code != http.StatusOK {
				t.Fatalf("status = %d", res.Code)
			}
			if cc := res.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			var top map[string]json.RawMessage
			decodeInto(t, res, &top)
			if got := keysOf(top); !slices.Equal(got, []string{"session", "user"}) {
				t.Fatalf("keys = %v", got)
			}
			var sess map[string]json.RawMessage
			if err := json.Unmarshal(top["session"], &sess); err != nil {
				t.Fatal(err)
			}
			wantKeys := []string{"createdAt", "expiresAt", "id", "ipAddress", "token", "updatedAt", "userAgent", "userId"}
			if got := keysOf(sess); !slices.Equal(got, wantKeys) {
				t.Fatalf("session keys = %v, want %v", got, wantKeys)
			}
			var s struct {
				ID, Token, UserID, ExpiresAt, CreatedAt, UpdatedAt, IPAddress, UserAgent string
			}
			var u struct {
				ID          string
				IsAnonymous bool
			}
			if err := json.Unmarshal(top["session"], &s); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(top["user"], &u); err != nil {
				t.Fatal(err)
			}
			if s.Token != tok || s.UserID != id || u.ID != id || !u.IsAnonymous || s.ID == "" || s.ID == id {
				t.Errorf("session %+v, user %+v; want token %q, user %q", s, u, tok, id)
			}
			created, err1 := time.Parse(time.RFC3339, s.CreatedAt)
			expires, err2 := time.Parse(time.RFC3339, s.ExpiresAt)
			if err1 != nil || err2 != nil || s.UpdatedAt != s.CreatedAt || created.Before(start.Truncate(time.Millisecond)) || created.After(time.Now()) ||
				expires.Sub(created) != 30*24*time.Hour || !wireTimeRE.MatchString(s.CreatedAt) || !wireTimeRE.MatchString(s.ExpiresAt) {
				t.Errorf("times = %s, %s, %s; want created during the test, expiring 30 days later", s.ExpiresAt, s.CreatedAt, s.UpdatedAt)
			}
			if s.IPAddress != "192.0.2.7" || s.UserAgent != "handler-test" {
				t.Errorf("ipAddress, userAgent = %q, %q", s.IPAddress, s.UserAgent)
			}
		})
	}
	t.Run("HEAD", func(t *testing.T) {
		if res, _ := f.send(t, "HEAD", apiSession, withCookie(c)); res.Code != http.StatusOK {
			t.Errorf("HEAD status = %d", res.Code)
		}
	})
}

func TestHandlerGetSessionExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newAPIFixture(t, anonymous.Options{})
		_, tok, _ := f.signIn(t)
		time.Sleep(31 * 24 * time.Hour)
		w, _ := f.send(t, "GET", apiSession, withBearer(tok))
		if got := w.Body.String(); got != "null" {
			t.Errorf("expired guest: body = %s, want null", got)
		}
	})
}

func TestHandlerRouting(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	for _, p := range []string{"/api/auth", "/api/auth/", "/api/auth/sign-in", "/api/auth/sign-in/anonymous/", "/api/auth/sign-in/email", "/sign-in/anonymous", "/", "/api/authx/get-session"} {
		t.Run(p, func(t *testing.T) {
			w, _ := f.send(t, "POST", p)
			wantError(t, w, 404, "NOT_FOUND", "Not found")
		})
	}

	t.Run("custom BasePath", func(t *testing.T) {
		f := newAPIFixture(t, anonymous.Options{BasePath: "/auth/"})
		if res, _ := f.send(t, "POST", "/auth/sign-in/anonymous"); res.Code != http.StatusOK {
			t.Errorf("status = %d, want 200", res.Code)
		}
		w, _ := f.send(t, "POST", apiSignIn)
		wantError(t, w, 404, "NOT_FOUND", "Not found")
	})
}

// The middleware serves the endpoints under a BasePath written with
// escapes, as a request spells it.
func TestMiddlewareServesEscapedBasePath(t *testing.T) {
	for _, base := range []string{"/my%20auth", "/%C3%A4uth", "/a%2Fb"} {
		t.Run(base, func(t *testing.T) {
			f := newFixture(t, anonymous.Options{BasePath: base})
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, httptest.NewRequest("GET", base+"/get-session", nil))
			if w.Code != http.StatusOK || w.Body.String() != "null" {
				t.Errorf("GET %s/get-session through the middleware: %d %q, want 200 null", base, w.Code, w.Body)
			}
		})
	}
}

func TestHandlerWrongMethod(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", apiSignIn, "POST"},
		{"PUT", apiSignIn, "POST"},
		{"OPTIONS", apiSignIn, "POST"},
		{"GET", apiDelete, "POST"},
		{"DELETE", apiDelete, "POST"},
		{"POST", apiSession, "GET, HEAD"},
		{"PATCH", apiSession, "GET, HEAD"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			res, _ := f.send(t, tc.method, tc.path)
			if got := res.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			if setsCookie(res) || f.stored() != 0 {
				t.Error("guest issued on a wrong method")
			}
			wantError(t, res, 405, "METHOD_NOT_ALLOWED", "Method not allowed")
		})
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestHandlerBodies(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	asJSON := withHeader("Content-Type", "application/json")
	for name, opts := range map[string][]reqOpt{
		"none":                {},
		"empty JSON":          {asJSON, withBody(strings.NewReader(""))},
		"empty object":        {asJSON, withBody(strings.NewReader("{}"))},
		"not JSON":            {asJSON, withBody(strings.NewReader("{nope"))},
		"form":                {withHeader("Content-Type", "application/x-www-form-urlencoded"), withBody(strings.NewReader("a=b"))},
		"just under the size": {asJSON, withBody(strings.NewReader(strings.Repeat(" ", 8<<10)))},
	} {
		t.Run(name, func(t *testing.T) {
			if res, _ := f.send(t, "POST", apiSignIn, opts...); res.Code != http.StatusOK {
				t.Errorf("status = %d, want 200; body %s", res.Code, res.Body.String())
			}
		})
	}
	t.Run("oversized", func(t *testing.T) {
		before := f.stored()
		res, _ := f.send(t, "POST", apiSignIn, asJSON, withBody(strings.NewReader(strings.Repeat(" ", 8<<10+1))))
		if setsCookie(res) || f.stored() != before {
			t.Error("guest issued despite the oversized body")
		}
		wantError(t, res, 413, "REQUEST_BODY_TOO_LARGE", "Request body is too large")
	})
	t.Run("oversized on get-session", func(t *testing.T) {
		res, _ := f.send(t, "GET", apiSession, withBody(strings.NewReader(strings.Repeat("x", 1<<20))))
		wantError(t, res, 413, "REQUEST_BODY_TOO_LARGE", "Request body is too large")
	})
	t.Run("unreadable", func(t *testing.T) {
		res, _ := f.send(t, "POST", apiSignIn, asJSON, withBody(errReader{}))
		if setsCookie(res) {
			t.Error("guest issued despite the unreadable body")
		}
		wantError(t, res, 400, "INVALID_REQUEST_BODY", "Request body could not be read")
	})
}

func TestHandlerCrossOrigin(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{TrustedOrigins: []string{"https://app.example"}})
	c, tok, id := f.signIn(t)
	denied := []struct {
		name string
		opts []reqOpt
	}{
		{"cross-site", []reqOpt{withHeader("Sec-Fetch-Site", "cross-site"), withHeader("Origin", "https://evil.example")}},
		{"same-site", []reqOpt{withHeader("Sec-Fetch-Site", "same-site"), withHeader("Origin", "https://sub."+apiHost)}},
		{"origin mismatch", []reqOpt{withHeader("Origin", "https://evil.example")}},
		{"untrusted origin, http", []reqOpt{withHeader("Origin", "http://app.example"), withHeader("Sec-Fetch-Site", "cross-site")}},
	}
	for _, tc := range denied {
		t.Run("sign-in "+tc.name, func(t *testing.T) {
			before := f.stored()
			res, _ := f.send(t, "POST", apiSignIn, tc.opts...)
			if setsCookie(res) || f.stored() != before {
				t.Error("guest issued to a cross-site request")
			}
			wantError(t, res, 403, "INVALID_ORIGIN", "Invalid origin")
		})
		t.Run("delete "+tc.name, func(t *testing.T) {
			res, _ := f.send(t, "POST", apiDelete, append(tc.opts, withCookie(c))...)
			wantError(t, res, 403, "INVALID_ORIGIN", "Invalid origin")
			if _, err := storedRecord(f.store, id); err != nil {
				t.Errorf("cross-site delete removed the guest: %v", err)
			}
		})
	}

	allowed := []struct {
		name string
		opts []reqOpt
	}{
		{"same-origin", []reqOpt{withHeader("Sec-Fetch-Site", "same-origin"), withHeader("Origin", "https://"+apiHost)}},
		{"origin matches host", []reqOpt{withHeader("Origin", "https://"+apiHost)}},
		{"user-initiated", []reqOpt{withHeader("Sec-Fetch-Site", "none")}},
		{"trusted origin", []reqOpt{withHeader("Sec-Fetch-Site", "cross-site"), withHeader("Origin", "https://app.example")}},
		{"no browser headers", nil},
	}
	for _, tc := range allowed {
		t.Run("sign-in "+tc.name, func(t *testing.T) {
			if res, _ := f.send(t, "POST", apiSignIn, tc.opts...); res.Code != http.StatusOK {
				t.Errorf("status = %d, want 200; body %s", res.Code, res.Body.String())
			}
		})
	}
	t.Run("get-session cross-site", func(t *testing.T) {
		res, _ := f.send(t, "GET", apiSession, withBearer(tok), withHeader("Sec-Fetch-Site", "cross-site"), withHeader("Origin", "https://evil.example"))
		if res.Code != http.StatusOK {
			t.Errorf("status = %d, want 200 (a safe method)", res.Code)
		}
	})
	t.Run("delete trusted origin", func(t *testing.T) {
		res, _ := f.send(t, "POST", apiDelete, withCookie(c), withHeader("Sec-Fetch-Site", "cross-site"), withHeader("Origin", "https://app.example"))
		if res.Code != http.StatusOK {
			t.Errorf("status = %d, want 200; body %s", res.Code, res.Body.String())
		}
	})
}

func TestHandlerBadTrustedOrigin(t *testing.T) {
	ms := newMemstore(t, memstore.Options{})
	for _, o := range []string{"app.example", "https://app.example/path", "https://app.example?q=1", "://"} {
		_, err := anonymous.New(ms, anonymous.Options{
			Keys:           []anonymous.Key{{Hash: []byte("0123456789abcdef0123456789abcdef")}},
			TrustedOrigins: []string{"https://ok.example", o},
		})
		if !errors.Is(err, anonymous.ErrInvalidOptions) {
			t.Errorf("TrustedOrigins %q: New error = %v, want ErrInvalidOptions", o, err)
		}
	}
}

// Behind the middleware, as a browser sees it: the middleware issues no
// guest under BasePath, so the client's first get-session is null and its
// sign-in succeeds, as with Better Auth; the page then sees that guest.
// The middleware serves the endpoints itself: mounting Handler, at the right
// path or a wrong one, or not at all, changes nothing.
func TestHandlerBehindMiddleware(t *testing.T) {
	for _, mount := range []string{"", "/api/auth/", "/auth/"} {
		t.Run("mounted at "+cmp.Or(mount, "nothing"), func(t *testing.T) { testBehindMiddleware(t, mount) })
	}
}

func testBehindMiddleware(t *testing.T, mount string) {
	f := newAPIFixture(t, anonymous.Options{})
	mux := http.NewServeMux()
	if mount != "" {
		mux.Handle(mount, f.m.Handler())
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if u := anonymous.UserFrom(r.Context()); u != nil {
			io.WriteString(w, u.ID)
		}
	})
	srv := httptest.NewTLSServer(f.m.Middleware(mux))
	defer srv.Close()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := srv.Client()
	client.Jar = jar
	get := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, string(b)
	}
	u, _ := url.Parse(srv.URL)

	if code, body := get("GET", apiSession); code != 200 || body != "null" {
		t.Fatalf("first get-session = %d %s, want 200 null", code, body)
	}
	if n := len(jar.Cookies(u)); n != 0 {
		t.Fatalf("the middleware issued %d cookies under BasePath", n)
	}
	code, body := get("POST", apiSignIn)
	if code != 200 {
		t.Fatalf("sign-in = %d %s, want 200", code, body)
	}
	var in struct{ User struct{ ID string } }
	if err := json.Unmarshal([]byte(body), &in); err != nil {
		t.Fatal(err)
	}
	if _, page := get("GET", "/"); page != in.User.ID {
		t.Errorf("page sees guest %q, want the signed-in %q", page, in.User.ID)
	}
	_, body = get("GET", apiSession)
	var s struct{ User struct{ ID string } }
	if err := json.Unmarshal([]byte(body), &s); err != nil || s.User.ID != in.User.ID {
		t.Errorf("get-session = %s, want guest %s", body, in.User.ID)
	}
	if code, _ := get("POST", apiDelete); code != 200 {
		t.Errorf("delete = %d", code)
	}
	if n := len(jar.Cookies(u)); n != 0 {
		t.Errorf("cookie kept after delete")
	}
	if code, body := get("GET", apiSession); code != 200 || body != "null" {
		t.Errorf("get-session after delete = %d %s, want 200 null", code, body)
	}
}

// A path that only decodes to an endpoint's is the application's: the
// middleware gives it a guest like any other request, with Vary: Cookie.
func TestEncodedEndpointPathIsAnOrdinaryRequest(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	var seen *anonymous.User
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = anonymous.UserFrom(r.Context()) })
	r := httptest.NewRequest("GET", "https://"+apiHost+"/api/auth%2Fget-session", nil)
	w := httptest.NewRecorder()
	f.m.Middleware(app).ServeHTTP(w, r)
	if seen == nil || !seen.IsAnonymous {
		t.Fatalf("the application saw user %v, want a guest", seen)
	}
	if w.Header().Get("Content-Type") == "application/json" || !slices.Contains(w.Header().Values("Vary"), "Cookie") {
		t.Errorf("answered by the endpoints, or without Vary: Cookie: %v", w.Header())
	}
}

func TestHandlerConcurrentSignIns(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	srv := httptest.NewServer(f.m.Handler())
	defer srv.Close()
	const n = 16
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := srv.Client().Post(srv.URL+apiSignIn, "application/json", strings.NewReader("{}"))
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			var b struct{ User struct{ ID string } }
			if err := json.NewDecoder(res.Body).Decode(&b); err != nil || res.StatusCode != 200 {
				t.Errorf("status %d, err %v", res.StatusCode, err)
			}
			ids[i] = b.User.ID
		})
	}
	wg.Wait()
	slices.Sort(ids)
	if len(slices.Compact(ids)) != n || ids[0] == "" {
		t.Errorf("ids not distinct: %v", ids)
	}
}

// get-session stores a guest that so far lived only in its cookie and
// re-sets the cookie in its stored form.
func TestHandlerGetSessionStoresPendingGuest(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	w := httptest.NewRecorder()
	f.m.Middleware(http.NotFoundHandler()).ServeHTTP(w, httptest.NewRequest("GET", "https://"+apiHost+"/", nil))
	pending := resCookie(t, w)
	if f.stored() != 0 {
		t.Fatalf("the first visit stored %d guests", f.stored())
	}
	res, _ := f.send(t, "GET", apiSession, withCookie(pending))
	var body struct{ User struct{ ID string } }
	decodeInto(t, res, &body)
	if body.User.ID == "" || f.stored() != 1 {
		t.Fatalf("get-session user %q, %d stored; want the pending guest, stored", body.User.ID, f.stored())
	}
	if short := resCookie(t, res); short.Value == pending.Value {
		t.Error("cookie not re-set to its stored form")
	}
}

// Every endpoint answer varies on the credentials it reads.
func TestHandlerVary(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	_, tok, _ := f.signIn(t)
	for _, req := range []struct {
		method, path string
		opts         []reqOpt
	}{{"GET", apiSession, []reqOpt{withBearer(tok)}}, {"POST", apiSignIn, nil}, {"GET", "/api/auth/nope", nil}} {
		res, _ := f.send(t, req.method, req.path, req.opts...)
		if got := res.Header().Values("Vary"); !slices.Contains(got, "Cookie") || !slices.Contains(got, "Authorization") {
			t.Errorf("%s: Vary %q, want Cookie and Authorization", req.path, got)
		}
	}
}

// get-session and delete-anonymous-user expire the cookie of a guest that
// no longer exists, as Better Auth does.
func TestHandlerExpiresDeadCookie(t *testing.T) {
	f := newAPIFixture(t, anonymous.Options{})
	for _, tc := range []struct {
		method, path string
		status       int
	}{{"GET", apiSession, 200}, {"POST", apiDelete, 401}} {
		c, _, id := f.signIn(t)
		if err := f.m.DeleteGuest(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		res, _ := f.send(t, tc.method, tc.path, withCookie(c))
		if res.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.path, res.Code, tc.status)
		}
		if got := resCookie(t, res); got.MaxAge >= 0 {
			t.Errorf("%s: cookie %+v, want it expired", tc.path, got)
		}
		// A request without a cookie gets no Set-Cookie.
		if res, _ := f.send(t, tc.method, tc.path); setsCookie(res) {
			t.Errorf("%s without a cookie set one", tc.path)
		}
	}
}

// The endpoints see the real user Identify names, as every other request
// does: a request that carries a guest cookie and a signed-in real user
// links the guest, once, and answers for the real user.
func TestHandlerEndpointsLinkForARealUser(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", apiSession, 200, "null"},
		{"POST", apiDelete, 403, "USER_IS_NOT_ANONYMOUS"},
		{"POST", apiSignIn, 400, "SIGNED_IN_USERS_CANNOT_SIGN_IN_ANONYMOUSLY"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			var links []anonymous.LinkEvent
			var deleted []anonymous.DeleteReason
			f := newAPIFixture(t, anonymous.Options{
				OnLinkAccount:  func(_ context.Context, ev anonymous.LinkEvent) error { links = append(links, ev); return nil },
				OnGuestDeleted: func(_ context.Context, _ *anonymous.User, why anonymous.DeleteReason) { deleted = append(deleted, why) },
			})
			c, _, id := f.signIn(t)
			for i := range 2 { // the second request replays the old cookie
				res, _ := f.send(t, tc.method, tc.path, withCookie(c), withHeader(apiRealUser, "u1"))
				if body := res.Body.String(); res.Code != tc.status || !strings.Contains(body, tc.body) {
					t.Fatalf("request %d: %d %s, want %d %s", i, res.Code, body, tc.status, tc.body)
				}
				if expired := slices.ContainsFunc(res.Result().Cookies(), func(k *http.Cookie) bool { return k.Name == apiCookie && k.MaxAge < 0 }); expired != (i == 0) {
					t.Errorf("request %d: guest cookie expired %v, want %v", i, expired, i == 0)
				}
			}
			if len(links) != 1 || links[0].AnonymousUser.User.ID != id || links[0].NewUser.User.ID != "u1" {
				t.Fatalf("OnLinkAccount ran for %+v, want once for %s to u1", links, id)
			}
			if !slices.Equal(deleted, []anonymous.DeleteReason{anonymous.DeletedByLink}) {
				t.Errorf("OnGuestDeleted heard %v, want the link only", deleted)
			}
			if linked, err := f.m.LinkedTo(context.Background(), id); err != nil || linked != "u1" {
				t.Errorf("LinkedTo = %q, %v; want u1", linked, err)
			}
		})
	}
}

// delete-anonymous-user while a login in another tab links the guest
// answers 409 GUEST_IS_BEING_LINKED, not a 500, and deletes nothing.
func TestHandlerDeleteDuringALink(t *testing.T) {
	var f *fixture
	var del *httptest.ResponseRecorder
	var cookie *http.Cookie
	f = newAPIFixture(t, anonymous.Options{OnLinkAccount: func(context.Context, anonymous.LinkEvent) error {
		del, _ = f.send(t, "POST", apiDelete, withCookie(cookie)) // the other tab, while the claim holds
		return nil
	}})
	cookie, _, id := f.signIn(t)
	res, _ := f.send(t, "GET", apiSession, withCookie(cookie), withHeader(apiRealUser, "u1"))
	if res.Code != http.StatusOK {
		t.Fatalf("the login's get-session: %d", res.Code)
	}
	wantError(t, del, http.StatusConflict, "GUEST_IS_BEING_LINKED", "The guest is being linked to an account.")
	if linked, err := f.m.LinkedTo(context.Background(), id); err != nil || linked != "u1" {
		t.Errorf("LinkedTo = %q, %v; want the link to u1 done", linked, err)
	}
}
