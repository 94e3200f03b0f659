package app

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/guestpass/anonymous"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// The shop reads the package's metrics with the OpenTelemetry SDK's manual
// reader: GET /metrics writes them in Prometheus' text format, and GET
// /stats shows a small panel of them. A real application would rather use
// the OpenTelemetry Prometheus exporter or OTLP; the shop writes the text
// itself to keep their dependencies out of this module.

// meters holds the shop's reader and what the panel counts by day.
type meters struct {
	reader   *sdkmetric.ManualReader
	provider *sdkmetric.MeterProvider

	mu          sync.Mutex
	day         string // UTC date of linkedToday
	linkedToday int
}

func newMeters() *meters {
	r := sdkmetric.NewManualReader()
	return &meters{reader: r, provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))}
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

// serveMetrics writes every metric in Prometheus' text exposition format.
func (s *Shop) serveMetrics(w http.ResponseWriter, r *http.Request) {
	rm, err := s.meters.collect(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			writeMetric(w, mt)
		}
	}
}

// promName is a metric's Prometheus name: dots become underscores, the
// unit a suffix (seconds for "s"; annotations such as "{guest}" none).
func promName(mt metricdata.Metrics) string {
	n := strings.NewReplacer(".", "_", "-", "_").Replace(mt.Name)
	if mt.Unit == "s" {
		n += "_seconds"
	}
	return n
}

// promLabels renders attributes (and a histogram bucket's le) as
// Prometheus labels.
func promLabels(kvs []attribute.KeyValue, le string) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, strings.ReplaceAll(string(kv.Key), ".", "_")+"="+strconv.Quote(kv.Value.AsString()))
	}
	if le != "" {
		parts = append(parts, `le="`+le+`"`)
	}
	if len(parts) == 0 {
		return ""
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func writeMetric(w io.Writer, mt metricdata.Metrics) {
	name := promName(mt)
	switch d := mt.Data.(type) {
	case metricdata.Sum[int64]:
		fmt.Fprintf(w, "# HELP %s_total %s\n# TYPE %s_total counter\n", name, mt.Description, name)
		for _, p := range d.DataPoints {
			fmt.Fprintf(w, "%s_total%s %d\n", name, promLabels(p.Attributes.ToSlice(), ""), p.Value)
		}
	case metricdata.Histogram[float64]:
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, mt.Description, name)
		for _, p := range d.DataPoints {
			kvs := p.Attributes.ToSlice()
			var cum uint64
			for i, bound := range p.Bounds {
				cum += p.BucketCounts[i]
				fmt.Fprintf(w, "%s_bucket%s %d\n", name, promLabels(kvs, strconv.FormatFloat(bound, 'g', -1, 64)), cum)
			}
			fmt.Fprintf(w, "%s_bucket%s %d\n", name, promLabels(kvs, "+Inf"), p.Count)
			fmt.Fprintf(w, "%s_sum%s %s\n", name, promLabels(kvs, ""), strconv.FormatFloat(p.Sum, 'g', -1, 64))
			fmt.Fprintf(w, "%s_count%s %d\n", name, promLabels(kvs, ""), p.Count)
		}
	}
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
