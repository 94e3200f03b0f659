package sqltest

import (
	"context"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/sqlstore"
)

// TestTransactOnOneConnection: a Transact needs its transaction's
// connection and no other, even for its first statements, which the store
// has not prepared yet. A pool whose every connection is in a Transact
// (64 logins at once on a pool of 24) would otherwise wait for itself
// until the transactions' deadline.
func TestTransactOnOneConnection(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			db := open(t, d)
			s := newStore(t, db, d, sqlstore.Options{SweepInterval: -1})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Create(ctx, "guest", anonymous.Entry{Value: []byte("cart"), Expires: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			db.SetMaxOpenConns(1)
			err := s.Transact(ctx, "guest", func(ctx context.Context, cur anonymous.Entry) (anonymous.Entry, error) {
				if string(cur.Value) != "cart" {
					t.Errorf("Transact's entry %q, want %q", cur.Value, "cart")
				}
				return anonymous.Entry{Value: []byte("linked"), Expires: cur.Expires}, nil
			})
			if err != nil {
				t.Fatalf("Transact on a pool of one connection: %v", err)
			}
			e, err := s.Get(ctx, "guest")
			if err != nil || string(e.Value) != "linked" || e.Version != 2 {
				t.Fatalf("after Transact: %q version %d, %v; want %q version 2", e.Value, e.Version, err, "linked")
			}
		})
	}
}
