package app

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// The shop reads the package's metrics twice: the OpenTelemetry Prometheus
// exporter serves them at GET /metrics, in Prometheus' text format, and a
// manual reader feeds the small panel at GET /stats.

// meters holds the shop's readers and what the panel counts by day.
type meters struct {
	reader   *sdkmetric.ManualReader
	provider *sdkmetric.MeterProvider
	scrape   http.Handler // GET /metrics

	mu          sync.Mutex
	day         string // UTC date of linkedToday
	linkedToday int
}

func newMeters() (*meters, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("shop: metrics: %w", err)
	}
	r := sdkmetric.NewManualReader()
	return &meters{
		reader:   r,
		provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(r), sdkmetric.WithReader(exp)),
		scrape:   promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}, nil
}

// guestDeleted counts links by day, for the panel.
func (m *meters) guestDeleted(_ context.Context, _ *anonymous.User, why anonymous.DeleteReason) {
	if why != anonymous.DeletedByLink {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if today := time.Now().UTC().Format(time.DateOnly); m.day != today {
		m.day, m.linkedToday = today, 0
	}
	m.linkedToday++
}

func (m *meters) collect(ctx context.Context) (metricdata.ResourceMetrics, error) {
	var rm metricdata.ResourceMetrics
	err := m.reader.Collect(ctx, &rm)
	return rm, err
}

// serveMetrics serves every metric for a Prometheus scraper.
func (s *Shop) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	s.meters.scrape.ServeHTTP(w, r)
}

// stats is the panel's figures.
type stats struct {
	Live        string // guests in the store, or "" when the store cannot tell
	Stored      int64  // guests stored since the shop started
	Linked      int64  // guests that became accounts since the shop started
	LinkedToday int
	Conversion  string // Linked / Stored, as a percentage
}

// counter sums a counter's points.
func counter(rm metricdata.ResourceMetrics, name string) int64 {
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if d, ok := mt.Data.(metricdata.Sum[int64]); ok && mt.Name == name {
				for _, p := range d.DataPoints {
					n += p.Value
				}
			}
		}
	}
	return n
}

// statsPage shows the panel.
func (s *Shop) statsPage(w http.ResponseWriter, r *http.Request) {
	rm, err := s.meters.collect(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st := &stats{Stored: counter(rm, "anonymous.guest.stored"), Linked: counter(rm, "anonymous.guest.linked"), Conversion: "–"}
	if l, ok := s.store.(interface{ Len() int }); ok {
		st.Live = strconv.Itoa(l.Len())
	}
	if st.Stored > 0 {
		st.Conversion = strconv.FormatFloat(math.Round(1000*float64(st.Linked)/float64(st.Stored))/10, 'f', -1, 64) + " %"
	}
	s.meters.mu.Lock()
	if s.meters.day == time.Now().UTC().Format(time.DateOnly) {
		st.LinkedToday = s.meters.linkedToday
	}
	s.meters.mu.Unlock()
	s.render(w, r, http.StatusOK, "stats", &pageData{Stats: st})
}
