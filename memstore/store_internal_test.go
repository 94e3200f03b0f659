package memstore

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/storetest"
)

// TestConformanceCollisions runs the whole suite with ids' hashes cut to a
// bit or none: every id shares its tag with others, so that lookups must
// tell records apart by their ids, and probe past other ids' records.
func TestConformanceCollisions(t *testing.T) {
	for _, mask := range []uint64{0, 1 << 63, shardCount - 1} {
		t.Run(fmt.Sprintf("mask=%#x", mask), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) anonymous.Store {
				s := New()
				s.mask = mask
				t.Cleanup(func() { s.Close() })
				return s
			})
		})
	}
}

// TestCollisionsSwept checks that records of colliding ids expire, are
// swept, and free their ids.
func TestCollisionsSwept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := New()
		defer s.Close()
		s.mask = 0
		var ids []string
		for i := range 5 {
			rec := storetest.NewRecord("", time.Now().Add(time.Duration(i+1)*10*time.Second))
			if err := s.Create(ctx, rec); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, rec.User.ID)
		}
		time.Sleep(61 * time.Second)
		synctest.Wait()
		if n := s.Len(); n != 0 {
			t.Errorf("Len after every record expired and a sweep = %d, want 0", n)
		}
		sh := &s.shards[0]
		sh.mu.RLock()
		if sh.index.n != 0 || slices.ContainsFunc(sh.index.slots, func(s uint64) bool { return s != 0 }) {
			t.Errorf("after the sweep: index %d, %x; want it empty", sh.index.n, sh.index.slots)
		}
		sh.mu.RUnlock()
		for _, id := range ids {
			if err := s.Create(ctx, storetest.NewRecord(id, time.Now().Add(time.Hour))); err != nil {
				t.Errorf("Create of a swept id: %v", err)
			}
		}
		for _, id := range ids {
			if got, err := s.Get(ctx, id); err != nil || got.User.ID != id {
				t.Errorf("Get(%s) = %v, %v", id, got, err)
			}
		}
	})
}

// TestEncoding stores records of every shape, then updates each with data
// of every size: through every block class, and past them.
func TestEncoding(t *testing.T) {
	ctx := t.Context()
	s := New()
	defer s.Close()
	for name, change := range shapes() {
		t.Run(name, func(t *testing.T) {
			rec := storetest.NewRecord("", time.Now().Add(time.Hour))
			change(rec)
			want := *rec
			want.Version = 1
			if err := s.Create(ctx, rec); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx, rec.User.ID)
			if err != nil {
				t.Fatal(err)
			}
			if d := storetest.Diff(got, &want); len(d) > 0 {
				t.Errorf("Get after Create differs:\n\t%s", strings.Join(d, "\n\t"))
			}
			for _, n := range []int{0, 1, 15, 16, 17, 200, 1000, maxBlock - 100, maxBlock + 1, 3 * maxBlock, 7} {
				next := *got
				next.Data = bytes.Repeat([]byte{byte(n)}, n)
				if err := s.Update(ctx, &next); err != nil {
					t.Fatalf("Update with %d bytes of data: %v", n, err)
				}
				next.Version++
				if got, err = s.Get(ctx, rec.User.ID); err != nil {
					t.Fatal(err)
				}
				if d := storetest.Diff(got, &next); len(d) > 0 {
					t.Errorf("Get after an Update with %d bytes of data differs:\n\t%s", n, strings.Join(d, "\n\t"))
				}
			}
		})
	}
}

// TestOwnCopy checks that the store copies every byte it is given: the
// caller's strings may be views of a buffer it reuses.
func TestOwnCopy(t *testing.T) {
	ctx := t.Context()
	s := New()
	defer s.Close()
	rec := storetest.NewRecord("", time.Now().Add(time.Hour))
	rec.User.Name = "Guest"
	rec.Data = []byte("cart")
	want := *rec
	want.Version = 1
	want.Data = bytes.Clone(rec.Data)
	scratch := []byte(rec.Session.UserAgent + rec.User.Name + rec.Session.ID)
	view := func(from, to int) string { return unsafe.String(&scratch[from], to-from) }
	ua, name := len(rec.Session.UserAgent), len(rec.User.Name)
	rec.Session.UserAgent = view(0, ua)
	rec.User.Name = view(ua, ua+name)
	rec.Session.ID = view(ua+name, len(scratch)) // a ULID: stored in binary
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	for i := range scratch {
		scratch[i] = 'x'
	}
	rec.Data[0] = 'x'
	got, err := s.Get(ctx, rec.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := storetest.Diff(got, &want); len(d) > 0 {
		t.Errorf("after the caller reused its buffer:\n\t%s", strings.Join(d, "\n\t"))
	}
}

// TestDataAppend checks that appending to the data Get returned leaves the
// record's strings, which share its allocation, alone.
func TestDataAppend(t *testing.T) {
	ctx := t.Context()
	s := New()
	defer s.Close()
	rec := storetest.NewRecord("", time.Now().Add(time.Hour))
	rec.Data = []byte("cart")
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, rec.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *got
	got.Data = append(got.Data, strings.Repeat("x", 200)...)
	want.Data = got.Data
	if d := storetest.Diff(got, &want); len(d) > 0 {
		t.Errorf("after appending to Data:\n\t%s", strings.Join(d, "\n\t"))
	}
}

// TestGetAllocs: a Get allocates once, for the record and its text
// together, up to several KiB of data, and twice beyond; the record reads
// back whole at every size.
func TestGetAllocs(t *testing.T) {
	ctx := t.Context()
	s := New()
	defer s.Close()
	for _, size := range []int{0, 16, 300, 700, 1500, 3000, 4400, 5000, 60_000} {
		rec := storetest.NewRecord("", time.Now().Add(time.Hour))
		rec.Session.UserAgent = strings.Repeat("u", 115)
		rec.Data = bytes.Repeat([]byte{'d'}, size)
		if size == 0 {
			rec.Data = nil
		}
		if err := s.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		rec.Version = 1
		got, err := s.Get(ctx, rec.User.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d := storetest.Diff(got, rec); len(d) > 0 {
			t.Errorf("%d bytes of data:\n\t%s", size, strings.Join(d, "\n\t"))
		}
		want := 1.0
		if size > 4000 {
			want = 2
		}
		if n := testing.AllocsPerRun(100, func() { s.Get(ctx, rec.User.ID) }); n != want {
			t.Errorf("with %d bytes of data, Get allocates %v times, want %v", size, n, want)
		}
	}
}

// TestHeapPerGuest holds the memory a guest takes without data, with a
// browser's User-Agent, to what the package doc promises.
func TestHeapPerGuest(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 100,000 guests")
	}
	const guests = 100_000
	ctx := t.Context()
	recs := make([]*anonymous.Record, guests)
	for i := range recs {
		recs[i] = storetest.NewRecord("", time.Now().Add(time.Hour))
		recs[i].Session.UserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	}
	before := heap()
	s := New(Options{MaxGuests: -1})
	defer s.Close()
	for _, rec := range recs {
		if err := s.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	perGuest := (heap() - before) / guests
	runtime.KeepAlive(recs)
	t.Logf("%.0f heap bytes per guest", perGuest)
	if perGuest > 300 {
		t.Errorf("%.0f heap bytes per guest, want at most 300", perGuest)
	}
}

func heap() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc)
}

// TestStoreFullAfterExpiry: a full store takes a guest in place of an
// expired one it has not swept, since that costs no room.
func TestStoreFullAfterExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := New(Options{MaxGuests: 1, SweepInterval: time.Hour})
		defer s.Close()
		old := storetest.NewRecord("", time.Now().Add(time.Second))
		if err := s.Create(ctx, old); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if err := s.Create(ctx, storetest.NewRecord("", time.Now().Add(time.Hour))); !errors.Is(err, anonymous.ErrStoreFull) {
			t.Errorf("Create of another id in a full store = %v, want ErrStoreFull", err)
		}
		if err := s.Create(ctx, storetest.NewRecord(old.User.ID, time.Now().Add(time.Hour))); err != nil {
			t.Errorf("Create over an expired record in a full store = %v", err)
		}
	})
}

// TestCompaction checks that the sweeper gives the memory of expired
// guests back, and keeps every survivor, big records included.
func TestCompaction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := New(Options{MaxGuests: -1})
		defer s.Close()
		var kept []*anonymous.Record
		for i := range 20_000 {
			life := time.Second
			if i%50 == 0 {
				life = time.Hour
			}
			rec := storetest.NewRecord("", time.Now().Add(life))
			rec.Data = bytes.Repeat([]byte{byte(i)}, 1000)
			if i%1000 == 0 {
				rec.Data = bytes.Repeat([]byte{byte(i)}, 2*maxBlock)
			}
			if err := s.Create(ctx, rec); err != nil {
				t.Fatal(err)
			}
			if life == time.Hour {
				rec.Version = 1
				kept = append(kept, rec)
			}
		}
		size := func() (slabs, slots int) {
			for i := range s.shards {
				s.shards[i].mu.RLock()
				slabs += s.shards[i].arena.size
				slots += len(s.shards[i].index.slots)
				s.shards[i].mu.RUnlock()
			}
			return slabs, slots
		}
		slabs, slots := size()
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if got := s.Len(); got != len(kept) {
			t.Errorf("Len after the sweep = %d, want %d", got, len(kept))
		}
		if after, _ := size(); after > slabs/10 {
			t.Errorf("slabs hold %d bytes after 98%% of the guests were swept, %d before: not compacted", after, slabs)
		}
		if _, after := size(); after > slots/10 {
			t.Errorf("indexes have %d slots after 98%% of the guests were swept, %d before: not rebuilt", after, slots)
		}
		for _, want := range kept {
			got, err := s.Get(ctx, want.User.ID)
			if err != nil {
				t.Fatalf("Get of a guest that outlived the sweep: %v", err)
			}
			if d := storetest.Diff(got, want); len(d) > 0 {
				t.Fatalf("a guest that outlived the sweep differs:\n\t%s", strings.Join(d, "\n\t"))
			}
		}
		// The compacted shards take new guests and updates as before.
		for _, rec := range kept[:50] {
			rec.Data = []byte("after")
			if err := s.Update(ctx, rec); err != nil {
				t.Errorf("Update after compaction: %v", err)
			}
			if err := s.Create(ctx, storetest.NewRecord("", time.Now().Add(time.Hour))); err != nil {
				t.Errorf("Create after compaction: %v", err)
			}
		}
	})
}
