package redisstore_test

// The lost-reply tests hold back one reply of a healthy Redis past the
// client's read timeout: Redis has applied the write, go-redis times out
// and sends the command again, and the resend finds the write done (the
// update script answers "conflict", SET NX answers nil). Each user-visible
// path that writes a guest must still end with its change applied once,
// the visitor holding the guest that was stored, and success. They run
// only with ANON_LOSTREPLY=1 (go test -run LostReply -v ./redisstore/) and
// log their figures on lines starting "lost reply figures:".

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
)

var lostReplyRows = []struct {
	name string
	run  func(t *testing.T, s *lostReplyShop)
}{
	{"UpdateData", lostUpdate},
	{"FirstAdd", lostFirstAdd},
	{"FirstReturn", lostFirstReturn},
	{"SignIn", lostSignIn},
	{"Delete", lostDelete},
	{"Link/claim", func(t *testing.T, s *lostReplyShop) { lostLink(t, s, 0) }},
	{"Link/finish", func(t *testing.T, s *lostReplyShop) { lostLink(t, s, 1) }},
}

// TestLostReply runs every row under go-redis's default settings and under
// docs/redis.md's fast fail-open ones.
func TestLostReply(t *testing.T) {
	requireLostReply(t)
	for _, cs := range clientSettings {
		for _, row := range lostReplyRows {
			t.Run(cs.name+"/"+row.name, func(t *testing.T) {
				s := newLostReplyShop(t, cs)
				row.run(t, s)
				t.Logf("lost reply figures: client=%s ReadTimeout=%v MaxRetries=%d row=%s wall=%v %s errors_logged=%d",
					cs.name, s.timeout, s.retries, row.name, time.Since(s.started).Round(time.Millisecond),
					s.figures, strings.Count(s.log.String(), "level=ERROR"))
			})
		}
	}
}

// lostUpdate: a cart add on a stored guest, whose update's reply is lost.
func lostUpdate(t *testing.T, s *lostReplyShop) {
	c := s.browser(t)
	id, _ := s.get(t, c, "/") // a first visit: nothing stored
	if again, items := s.get(t, c, "/add"); again != id || items != 1 {
		t.Fatalf("first add: guest %s with %d items, want %s with 1", again, items, id)
	}
	s.armUpdate(id, 0)
	var got string
	var items int
	slow := timed(func() { got, items = s.get(t, c, "/add") })
	if got != id || items != 2 {
		t.Fatalf("add with its reply lost: guest %s with %d items, want %s with 2", got, items, id)
	}
	s.lost(t, ":0", slow)
	if again, items := s.get(t, c, "/"); again != id || items != 2 {
		t.Fatalf("next page: guest %s with %d items, want %s with 2", again, items, id)
	}
	if rec := s.record(t, id); string(rec.Data) != `{"items":2}` {
		t.Fatalf("stored data %s, want one increment: {\"items\":2}", rec.Data)
	}
	s.onlyKey(t, id)
}

// lostFirstAdd: the first add to a first visit's cart stores the guest
// (SET NX), whose reply is lost.
func lostFirstAdd(t *testing.T, s *lostReplyShop) {
	c := s.browser(t)
	s.armCreate()
	var id string
	var items int
	slow := timed(func() { id, items = s.get(t, c, "/add") })
	if items != 1 {
		t.Fatalf("first add with its reply lost: guest %s with %d items, want 1", id, items)
	}
	s.lost(t, "+OK", slow)
	if again, items := s.get(t, c, "/"); again != id || items != 1 {
		t.Fatalf("next page: guest %s with %d items, want %s with 1", again, items, id)
	}
	if rec := s.record(t, id); string(rec.Data) != `{"items":1}` {
		t.Fatalf("stored data %s, want {\"items\":1}", rec.Data)
	}
	s.onlyKey(t, id)
}

// lostFirstReturn: a visitor comes back with its first-visit cookie, and
// the reply to the SET NX that stores its guest is lost.
func lostFirstReturn(t *testing.T, s *lostReplyShop) {
	c := s.browser(t)
	id, _ := s.get(t, c, "/")
	if keys := s.keys(t); len(keys) != 0 {
		t.Fatalf("a first visit stored %q", keys)
	}
	s.armCreate()
	var again string
	slow := timed(func() { again, _ = s.get(t, c, "/") })
	if again != id {
		t.Fatalf("first return with its reply lost: guest %s, want %s", again, id)
	}
	s.lost(t, "+OK", slow)
	if again, _ := s.get(t, c, "/"); again != id {
		t.Fatalf("the request after the first return: guest %s, want %s", again, id)
	}
	if rec := s.record(t, id); rec.Deleted || rec.LinkedTo != "" {
		t.Fatalf("stored record of guest %s: %+v", id, rec)
	}
	s.onlyKey(t, id)
}

// signIn is sign-in/anonymous's answer.
type signIn struct {
	Token string
	User  struct{ ID string }
}

// lostSignIn: POST sign-in/anonymous, whose SET NX's reply is lost.
func lostSignIn(t *testing.T, s *lostReplyShop) {
	c := s.browser(t)
	s.armCreate()
	var code int
	var body string
	slow := timed(func() { code, body = s.send(t, c, http.MethodPost, "/api/auth/sign-in/anonymous", "") })
	var got signIn
	if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || got.User.ID == "" || got.Token == "" {
		t.Fatalf("sign-in with its reply lost: %d %s", code, body)
	}
	s.lost(t, "+OK", slow)
	s.onlyKey(t, got.User.ID) // no orphan
	if id, _ := s.get(t, c, "/"); id != got.User.ID {
		t.Fatalf("with the cookie sign-in set: guest %s, want %s", id, got.User.ID)
	}
	// The token it answered opens the guest without a cookie.
	code, body = s.send(t, s.browser(t), http.MethodGet, "/api/auth/get-session", got.Token)
	var session signIn
	if code != http.StatusOK || json.Unmarshal([]byte(body), &session) != nil || session.User.ID != got.User.ID {
		t.Fatalf("get-session with the token sign-in answered: %d %s; want guest %s", code, body, got.User.ID)
	}
}

// lostDelete: POST delete-anonymous-user of a stored guest, whose update's
// reply is lost.
func lostDelete(t *testing.T, s *lostReplyShop) {
	c := s.browser(t)
	id, _ := s.get(t, c, "/")
	if again, _ := s.get(t, c, "/"); again != id { // stored on its return
		t.Fatalf("first return: guest %s, want %s", again, id)
	}
	s.armUpdate(id, 0)
	var code int
	var body string
	slow := timed(func() { code, body = s.send(t, c, http.MethodPost, "/api/auth/delete-anonymous-user", "") })
	if code != http.StatusOK || body != `{"success":true}` {
		t.Fatalf("delete with its reply lost: %d %s", code, body)
	}
	s.lost(t, ":0", slow)
	if n, all := s.deleted[anonymous.DeletedByVisitor].Load(), s.deletions(); n != 1 || all != 1 {
		t.Fatalf("OnGuestDeleted ran %d times, %d of them DeletedByVisitor; want once", all, n)
	}
	rec, err := s.m.Record(context.Background(), id)
	if !errors.Is(err, anonymous.ErrNotFound) && (err != nil || !rec.Deleted) {
		t.Fatalf("guest %s after its delete: %+v, %v; want deleted", id, rec, err)
	}
	if again, _ := s.get(t, c, "/"); again == id {
		t.Fatalf("the deleted guest %s still opens", id)
	}
}

// lostLink: GET /login links a stored guest with one item in its cart;
// the reply lost is the claim's (skip 0) or the final write's (skip 1).
func lostLink(t *testing.T, s *lostReplyShop, skip int) {
	c := s.browser(t)
	id, items := s.get(t, c, "/add") // stored with its first item
	if again, _ := s.get(t, c, "/"); again != id || items != 1 {
		t.Fatalf("guest %s with %d items, then %s; want one guest with 1", id, items, again)
	}
	s.armUpdate(id, skip)
	var code int
	var body string
	slow := timed(func() { code, body = s.send(t, c, http.MethodGet, "/login", "") })
	if code != http.StatusOK || body != "linked" {
		t.Fatalf("login with its reply lost: %d %s", code, body)
	}
	s.lost(t, ":0", slow)
	if n := s.linked.Load(); n != 1 {
		t.Fatalf("OnLinkAccount ran %d times, want once", n)
	}
	if data, _ := s.linkedData.Load().([]byte); string(data) != `{"items":1}` {
		t.Fatalf("OnLinkAccount was handed the cart %s, want {\"items\":1}", data)
	}
	to, err := s.m.LinkedTo(context.Background(), id)
	if to != "alice" || err != nil {
		t.Fatalf("LinkedTo(%s) = %q, %v; want alice", id, to, err)
	}
	t.Logf("OnGuestDeleted(DeletedByLink) ran %d times", s.deleted[anonymous.DeletedByLink].Load())
}
