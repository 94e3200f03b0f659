package anonymous_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
)

// buryOutage fails the write that ends a linked guest while down is set,
// as a store that goes down between a link's claim and its end.
type buryOutage struct {
	anonymous.Store
	down  atomic.Bool
	tries atomic.Int32
}

func (s *buryOutage) Update(ctx context.Context, key string, e anonymous.Entry) error {
	if rec, err := anonymous.DecodeRecord(key, e); err == nil && rec.LinkedTo != "" && s.down.Load() {
		s.tries.Add(1)
		return errDown
	}
	return s.Store.Update(ctx, key, e)
}

// A login while the store cannot end the guest answers within about two
// seconds, with the guest's cookie expired; the write goes on in the
// background and lands once the store is back, within the lease, and
// Close waits for it.
func TestLoginDuringOutageDoesNotWaitForTheLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c := linkFixture(t, anonymous.Options{LinkLease: time.Minute})
		cookie, g := storedGuest(t, f)
		c.put(g.ID, 3)
		outage := &buryOutage{Store: f.store.Store}
		f.store.Store = outage
		outage.down.Store(true)

		start := time.Now()
		w, _ := f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
		if took := time.Since(start); took > 2500*time.Millisecond {
			t.Fatalf("the login waited %v for the store, want at most about 2s", took)
		}
		if !cookieExpired(t, w) {
			t.Fatal("the login left the guest's cookie in place")
		}
		if n := c.calls.Load(); n != 1 || c.get("alice") != 3 {
			t.Fatalf("OnLinkAccount ran %d times, alice has %d", n, c.get("alice"))
		}
		if outage.tries.Load() < 2 {
			t.Fatalf("%d tries of the last write during the request", outage.tries.Load())
		}
		time.Sleep(10 * time.Second)
		if id, _ := f.m.LinkedTo(context.Background(), g.ID); id != "" {
			t.Fatalf("linked to %q while the store was down", id)
		}
		outage.down.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := f.m.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if id, err := f.m.LinkedTo(context.Background(), g.ID); id != "alice" || err != nil {
			t.Fatalf("after the outage: LinkedTo = %q, %v; want alice", id, err)
		}
		if n := c.calls.Load(); n != 1 {
			t.Fatalf("OnLinkAccount ran %d times, want 1", n)
		}
	})
}

// When the store stays down for the whole lease, the background write
// gives up when the lease ends, logs it, and the guest is left as it was:
// Close returns once it has given up.
func TestLoginOutageOutlastingTheLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c := linkFixture(t, anonymous.Options{LinkLease: 20 * time.Second})
		cookie, g := storedGuest(t, f)
		outage := &buryOutage{Store: f.store.Store}
		f.store.Store = outage
		outage.down.Store(true)
		start := time.Now()
		f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
		if err := f.m.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if took := time.Since(start); took < 20*time.Second || took > 22*time.Second {
			t.Fatalf("the background write ended after %v, want when the 20s lease ends", took)
		}
		if rec, err := f.m.Record(context.Background(), g.ID); err != nil || rec.LinkedTo != "" || rec.Deleted {
			t.Fatalf("the guest after the outage: %+v, %v; want it kept", rec, err)
		}
		if !strings.Contains(f.logs.String(), "recording the link failed until the lease ended") {
			t.Fatalf("nothing logged: %s", f.logs.String())
		}
		if n := c.calls.Load(); n != 1 {
			t.Fatalf("OnLinkAccount ran %d times, want 1", n)
		}
	})
}

// Close returns ctx's error when the background write outlasts it.
func TestCloseHonoursItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _ := linkFixture(t, anonymous.Options{LinkLease: time.Minute})
		cookie, _ := storedGuest(t, f)
		outage := &buryOutage{Store: f.store.Store}
		f.store.Store = outage
		outage.down.Store(true)
		f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.m.Close(ctx); err != context.DeadlineExceeded {
			t.Fatalf("Close: %v, want context.DeadlineExceeded", err)
		}
		outage.down.Store(false)
		if err := f.m.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
}
