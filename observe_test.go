package anonymous_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/guestpass/anonymous"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// counts sums each counter's data points, keyed "name" and
// "name{key=value}" for each attribute, and each histogram's count.
func counts(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			switch d := mt.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[mt.Name] += p.Value
					for _, kv := range p.Attributes.ToSlice() {
						out[mt.Name+"{"+string(kv.Key)+"="+kv.Value.AsString()+"}"] += p.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[mt.Name] += int64(p.Count)
				}
			}
		}
	}
	return out
}

// After a scripted run, the counters are exactly what happened.
func TestMetricsCountWhatHappened(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	spans := tracetest.NewSpanRecorder()
	fail := true
	f := newFixture(t, anonymous.Options{
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
		Identify:       identifyHeader,
		OnLinkAccount: func(context.Context, anonymous.LinkEvent) error {
			if fail {
				fail = false
				return errors.New("accounts down")
			}
			return nil
		},
	})
	const newVisitors, returns, links = 5, 7, 3
	var cookies []*http.Cookie
	for range newVisitors {
		w, _ := f.send(t, "GET", "/") // issued
		w, _ = f.send(t, "GET", "/", withCookie(guestCookie(t, w)))
		cookies = append(cookies, guestCookie(t, w)) // stored on its first return
	}
	for i := range returns {
		f.send(t, "GET", "/", withCookie(cookies[i%len(cookies)]))
	}
	// One link fails in its callback, and is retried on the next request.
	f.send(t, "GET", "/", withCookie(cookies[0]), withUser("alice"))
	for i := range links {
		f.send(t, "GET", "/", withCookie(cookies[i]), withUser("user-"+string(rune('a'+i))))
	}
	// A valid cookie of a guest the store lost (another store's guest).
	other := newFixture(t, anonymous.Options{PersistOnIssue: true})
	w, _ := other.send(t, "GET", "/")
	f.send(t, "GET", "/", withCookie(guestCookie(t, w))) // unknown, and a new guest issued
	// A visitor deletes itself.
	f.send(t, "POST", "/api/auth/delete-anonymous-user", withCookie(cookies[4]))

	got := counts(t, reader)
	want := map[string]int64{
		"anonymous.guest.issued":                                newVisitors + 1,
		"anonymous.guest.stored":                                newVisitors,
		"anonymous.guest.stored{anonymous.source=first_return}": newVisitors,
		"anonymous.guest.returning":                             returns + 1 + links + 1, // the returns, the failed link's and the links' lookups, the delete's
		"anonymous.guest.linked":                                links,
		"anonymous.link.failed":                                 1,
		"anonymous.link.failed{anonymous.reason=callback}":      1,
		"anonymous.guest.deleted":                               links + 1,
		"anonymous.guest.deleted{anonymous.reason=link}":        links,
		"anonymous.guest.deleted{anonymous.reason=visitor}":     1,
		"anonymous.guest.unknown":                               1,
		"anonymous.guest.not_stored":                            0,
		"anonymous.store.errors":                                0,
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s = %d, want %d", name, got[name], n)
		}
	}
	if got["anonymous.store.duration"] == 0 {
		t.Error("no store call was timed")
	}
	var linkSpans int
	for _, s := range spans.Ended() {
		if s.Name() == "anonymous.link" {
			linkSpans++
		}
	}
	if linkSpans != links+1 {
		t.Errorf("%d link spans, want %d", linkSpans, links+1)
	}
}

// Store failures are counted by operation.
func TestMetricsCountStoreErrors(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	f := newFixture(t, anonymous.Options{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), PersistOnIssue: true})
	w, _ := f.send(t, "GET", "/")
	f.store.fail.Store(true)
	f.send(t, "GET", "/", withCookie(guestCookie(t, w))) // a failed get
	f.send(t, "GET", "/")                                // a failed create, and the read that looks for it
	got := counts(t, reader)
	if got["anonymous.store.errors{anonymous.store.operation=get}"] != 2 || got["anonymous.store.errors{anonymous.store.operation=create}"] != 1 {
		t.Errorf("store errors: %v", got)
	}
}

// The middleware's allocations per request, with the default no-op
// providers and with an SDK recording every metric: a returning guest on
// memstore costs 3 (the request's state, which is its context and holds
// the request the handler gets and the guest's decoded record; memstore's
// copy of the stored value; the token, with the record's text), by cookie
// or bearer token, a new visitor 5 (the state, the record, its text, its
// token, the cookie line), and an SDK adds none.
func TestMiddlewareAllocations(t *testing.T) {
	if anonymous.RaceBuild {
		t.Skip("the race detector allocates; .ci/run runs this test without it")
	}
	for _, sdk := range []bool{false, true} {
		var opts anonymous.Options
		if sdk {
			opts.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			opts.TracerProvider = sdktrace.NewTracerProvider()
		}
		opts.Budget = anonymous.Budget{Off: true}
		f := newFixture(t, opts)
		var seen bool
		h := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen = anonymous.UserFrom(r.Context()) != nil
		}))
		w, _ := f.send(t, "GET", "/")
		w, _ = f.send(t, "GET", "/", withCookie(guestCookie(t, w))) // stored now, with a cookie of its own
		returning := httptest.NewRequest("GET", "https://shop.example/", nil)
		returning.AddCookie(guestCookie(t, w))
		_, s := f.send(t, "GET", "/", withCookie(guestCookie(t, w)))
		bearer := httptest.NewRequest("GET", "https://shop.example/", nil)
		bearer.Header.Set("Authorization", "Bearer "+s.Token)
		fresh := httptest.NewRequest("GET", "https://shop.example/", nil)
		for _, c := range []struct {
			name string
			r    *http.Request
			want float64
		}{{"returning", returning, 3}, {"bearer", bearer, 3}, {"new", fresh, 5}} {
			hw := &discard{h: http.Header{}}
			got := testing.AllocsPerRun(200, func() {
				clear(hw.h)
				seen = false
				h.ServeHTTP(hw, c.r)
			})
			if !seen || (c.name == "new") != (hw.h.Get("Set-Cookie") != "") {
				t.Fatalf("SDK %v, %s visitor: guest %v, Set-Cookie %q", sdk, c.name, seen, hw.h.Get("Set-Cookie"))
			}
			if got != c.want {
				t.Errorf("SDK %v, %s visitor: %v allocations a request, want %v", sdk, c.name, got, c.want)
			}
		}
	}
}
