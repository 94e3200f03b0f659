package examplestore

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
)

// TestSweep: guests who never come back do not pile up. Each round 100 new
// guests arrive and the last round's expire unread; the map holds a small
// multiple of the live guests, not all that ever came. The bubble's fake
// clock makes the hours pass at once.
func TestSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New()
		const perRound, rounds = 100, 100
		for r := range rounds {
			for i := range perRound {
				key := fmt.Sprintf("guest-%d-%d", r, i)
				if err := s.Create(t.Context(), key, anonymous.Entry{Expires: time.Now().Add(time.Minute)}); err != nil {
					t.Fatalf("Create(%s) = %v", key, err)
				}
			}
			time.Sleep(2 * time.Minute)
		}
		if n := len(s.entries); n > 10*perRound {
			t.Errorf("after %d guests, %d of them live, the store holds %d entries, want at most %d", perRound*rounds, perRound, n, 10*perRound)
		}
	})
}
