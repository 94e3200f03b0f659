package anonymous

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// A refused sibling waits for the attempts to store its guest that were
// under way when it began to wait, and for no later one: a stream of
// copies of one cookie, each overlapping the next, cannot hold it.
func TestStoringWaitsForEarlierAttemptsOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s storing
		a := s.enter("g")
		returned := make(chan time.Duration, 1)
		go func() {
			start := time.Now()
			s.wait(context.Background(), "g")
			returned <- time.Since(start)
		}()
		synctest.Wait()
		// Copies that keep arriving, each before the last one ends.
		prev := s.enter("g")
		time.Sleep(10 * time.Millisecond)
		s.leave("g", a)
		for range 200 {
			next := s.enter("g")
			time.Sleep(10 * time.Millisecond)
			s.leave("g", prev)
			prev = next
		}
		select {
		case d := <-returned:
			if d != 10*time.Millisecond {
				t.Fatalf("wait returned after %v, want 10ms: when the attempt under way ended", d)
			}
		default:
			t.Fatal("wait is still held by attempts that began after it")
		}
		s.leave("g", prev)
		if len(s.attempts) != 0 {
			t.Fatalf("%d ids left behind", len(s.attempts))
		}
	})
}

// A wait is bounded: an attempt that never ends holds it siblingWait.
func TestStoringWaitIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s storing
		a := s.enter("g")
		start := time.Now()
		s.wait(context.Background(), "g")
		if d := time.Since(start); d != siblingWait {
			t.Fatalf("wait on an attempt that never ends returned after %v, want %v", d, siblingWait)
		}
		s.leave("g", a)
	})
}

// An attempt that nobody waits for costs no allocation: first returns and
// updates of guests held in their cookies enter and leave one each.
func TestStoringAttemptAllocations(t *testing.T) {
	if RaceBuild {
		t.Skip("the race detector allocates; .ci/run runs this test without it")
	}
	var s storing
	s.leave("g", s.enter("g")) // the map and the pooled record
	if n := testing.AllocsPerRun(100, func() {
		a := s.enter("g")
		b := s.enter("g") // a sibling's, at the same time
		s.leave("g", a)
		s.leave("g", b)
	}); n != 0 {
		t.Errorf("an attempt allocates %v times, want 0", n)
	}
}
