package anonymous_test

import (
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
)

// A handler may keep the strings of the request's guest past the request,
// as Go code keeps strings: that must not keep the request alive (its
// body, its headers, its connection's buffers), here seen through a body
// that must be collected once the request is done. So for a new visitor,
// on the return that stores its guest, once it is stored, and for its
// bearer token.
func TestKeptGuestStringsKeepNoRequest(t *testing.T) {
	f := newFixture(t, anonymous.Options{})
	var kept [][]string
	f.mux.HandleFunc("/keep", func(w http.ResponseWriter, r *http.Request) {
		u, s := anonymous.UserFrom(r.Context()), anonymous.SessionFrom(r.Context())
		if u == nil || s == nil {
			t.Error("no guest")
			return
		}
		kept = append(kept, []string{u.ID, u.Email, u.Name, s.ID, s.Token, s.UserID, s.IPAddress, s.UserAgent})
	})
	var cookie *http.Cookie
	for _, step := range []string{"new visitor", "first return", "stored guest", "bearer token"} {
		collected := make(chan struct{})
		func() {
			body := &trackedBody{Reader: strings.NewReader("x")}
			runtime.AddCleanup(body, func(ch chan struct{}) { close(ch) }, collected)
			opts := []reqOpt{withCookie(cookie), withBody(body), withHeader("User-Agent", "kept/1.0")}
			if step == "bearer token" {
				opts = []reqOpt{withBearer(kept[2][4]), withBody(body)}
			}
			w, _ := f.send(t, "POST", "/keep", opts...)
			if c := guestCookie(t, w); c != nil {
				cookie = c
			}
		}()
		if len(kept) == 0 || kept[len(kept)-1][1] == "" {
			t.Fatalf("%s: the handler kept nothing", step)
		}
		if !collectedSoon(collected) {
			t.Errorf("%s: the request is still alive while the handler keeps its guest's strings %q", step, kept[len(kept)-1])
		}
	}
	if len(kept) != 4 || kept[0][0] != kept[3][0] {
		t.Errorf("the requests kept %q, want one guest's", kept)
	}
	runtime.KeepAlive(kept)
}

// collectedSoon runs the collector until done is closed, for at most half
// a second.
func collectedSoon(done chan struct{}) bool {
	for range 50 {
		runtime.GC()
		select {
		case <-done:
			return true
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false
}

// trackedBody is a request body whose collection a test watches.
type trackedBody struct {
	*strings.Reader
	_ [64]byte // an allocation of its own, not a tiny one merged with others
}
