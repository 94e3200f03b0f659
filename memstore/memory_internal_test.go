package memstore

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
)

// browserUA is a common browser's User-Agent, which every guest's record
// keeps.
const browserUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"

// guestSize is the most bytes the record of a new guest without data
// takes, as package anonymous encodes it; TestGuestSize checks it, and
// TestHeapPerGuest counts on it.
const guestSize = 200

// TestGuestSize creates a guest through a Manager, as a browser's visit
// would, and holds its entry to guestSize.
func TestGuestSize(t *testing.T) {
	s := newStore(t, Options{})
	m, err := anonymous.New(s, anonymous.Options{Keys: []anonymous.Key{{Hash: []byte("0123456789abcdef0123456789abcdef")}}})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "https://example.com/api/auth/sign-in/anonymous", nil)
	r.Header.Set("User-Agent", browserUA)
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusOK || s.Len() != 1 {
		t.Fatalf("sign-in/anonymous: %d, %d entries stored; want 200, 1", w.Code, s.Len())
	}
	for i := range s.shards {
		sh := &s.shards[i]
		for j, slot := range sh.index.slots {
			if slot == 0 {
				continue
			}
			e := sh.arena.get(sh.index.ref(j))
			id := string(e[offKey : offKey+int(e[offKeyLen])])
			if rec, err := m.Record(t.Context(), id); err != nil || rec.User.ID != id || rec.Session.UserAgent != browserUA {
				t.Errorf("Manager.Record(%s) = %+v, %v; want the guest stored under that key", id, rec, err)
			}
			t.Logf("a new guest's entry: a key of %d bytes, a value of %d", len(id), len(value(e)))
			if n := len(value(e)); n > guestSize {
				t.Errorf("a new guest's record takes %d bytes, want at most %d: update guestSize and the package doc", n, guestSize)
			}
		}
	}
}

// TestHeapPerGuest holds the memory a guest takes without data, a record
// of guestSize bytes under a guest id, to the package doc's 300 bytes: its
// block, its index slot, and their share of free room.
func TestHeapPerGuest(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 100,000 guests")
	}
	const guests = 100_000
	ctx := t.Context()
	keys := make([]string, guests)
	for i := range keys {
		keys[i] = key(i)
	}
	value := bytes.Repeat([]byte{'g'}, guestSize)
	exp := time.Now().Add(time.Hour)
	before := heap()
	s := newStore(t, Options{MaxBytes: -1})
	for _, k := range keys {
		if err := s.Create(ctx, k, anonymous.Entry{Value: value, Expires: exp}); err != nil {
			t.Fatal(err)
		}
	}
	perGuest := (heap() - before) / guests
	runtime.KeepAlive(keys)
	t.Logf("%.0f heap bytes per guest", perGuest)
	if perGuest > 320 {
		t.Errorf("%.0f heap bytes per guest, want about 300", perGuest)
	}
}

func heap() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc)
}

// TestMaxBytesCountsWhatItsDocSays: an entry takes its key, its value and
// 51 bytes, as Options.MaxBytes's documentation says.
func TestMaxBytesCountsWhatItsDocSays(t *testing.T) {
	k, v := key(1), []byte("a cart")
	for _, spare := range []int64{0, -1} {
		s := newStore(t, Options{MaxBytes: int64(len(k)+len(v)+51) + spare})
		err := s.Create(t.Context(), k, anonymous.Entry{Value: v, Expires: time.Now().Add(time.Hour)})
		if want := spare < 0; errors.Is(err, anonymous.ErrStoreFull) != want || (!want && err != nil) {
			t.Errorf("Create into MaxBytes of key+value+51%+d bytes = %v, want full: %v", spare, err, want)
		}
	}
}

// TestStoreFullAfterExpiry: a full store takes an entry in place of an
// expired one it has not swept, since that costs no room.
func TestStoreFullAfterExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, Options{MaxBytes: int64(entrySize(key(1), []byte("old")) + entryOverhead), SweepInterval: time.Hour})
		if err := s.Create(ctx, key(1), anonymous.Entry{Value: []byte("old"), Expires: time.Now().Add(time.Second)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if err := s.Create(ctx, key(2), anonymous.Entry{Expires: time.Now().Add(time.Hour)}); !errors.Is(err, anonymous.ErrStoreFull) {
			t.Errorf("Create of another key in a full store = %v, want ErrStoreFull", err)
		}
		if err := s.Create(ctx, key(1), anonymous.Entry{Value: []byte("new"), Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Errorf("Create over an expired entry in a full store = %v", err)
		}
		if e, err := s.Get(ctx, key(1)); err != nil || string(e.Value) != "new" || e.Version != 1 {
			t.Errorf("Get = %q version %d, %v; want new version 1", e.Value, e.Version, err)
		}
	})
}

// TestCompaction checks that the sweeper gives the memory of expired
// entries back, and keeps every survivor, big ones included.
func TestCompaction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, Options{MaxBytes: -1})
		kept := map[string][]byte{}
		for i := range 20_000 {
			life := time.Second
			if i%50 == 0 {
				life = time.Hour
			}
			v := bytes.Repeat([]byte{byte(i)}, 1000)
			if i%1000 == 0 {
				v = bytes.Repeat([]byte{byte(i)}, 2*maxBlock)
			}
			if err := s.Create(ctx, key(i), anonymous.Entry{Value: v, Expires: time.Now().Add(life)}); err != nil {
				t.Fatal(err)
			}
			if life == time.Hour {
				kept[key(i)] = v
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
			t.Errorf("slabs hold %d bytes after 98%% of the entries were swept, %d before: not compacted", after, slabs)
		}
		if _, after := size(); after > slots/10 {
			t.Errorf("indexes have %d slots after 98%% of the entries were swept, %d before: not rebuilt", after, slots)
		}
		for k, want := range kept {
			e, err := s.Get(ctx, k)
			if err != nil || !bytes.Equal(e.Value, want) || e.Version != 1 {
				t.Fatalf("Get of an entry that outlived the sweep: %d bytes at version %d, %v; want %d bytes at version 1", len(e.Value), e.Version, err, len(want))
			}
		}
		// The compacted shards take new entries and updates as before.
		i := 0
		for k := range kept {
			if err := s.Update(ctx, k, anonymous.Entry{Value: []byte("after"), Version: 1, Expires: time.Now().Add(time.Hour)}); err != nil {
				t.Errorf("Update after compaction: %v", err)
			}
			if e, err := s.Get(ctx, k); err != nil || string(e.Value) != "after" || e.Version != 2 {
				t.Errorf("Get after an Update after compaction = %q version %d, %v", e.Value, e.Version, err)
			}
			if err := s.Create(ctx, key(100_000+i), anonymous.Entry{Value: []byte("new"), Expires: time.Now().Add(time.Hour)}); err != nil {
				t.Errorf("Create after compaction: %v", err)
			}
			i++
		}
	})
}
