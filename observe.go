package anonymous

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation is the package's name to OpenTelemetry.
const instrumentation = "github.com/guestpass/anonymous"

// metrics are the Manager's instruments. Their options are built once, so
// that counting costs no allocation, and nothing at all with the default
// no-op providers.
type metrics struct {
	issued, stored, returning, linked, linkFailed, deleted, unknown, refused, storeErrors metric.Int64Counter
	storeDuration                                                                         metric.Float64Histogram
	tracer                                                                                trace.Tracer

	storedBy    map[string][]metric.AddOption // by anonymous.source
	linkFailure map[string][]metric.AddOption // by anonymous.reason
	deletedBy   map[DeleteReason][]metric.AddOption
	refusedBy   map[string][]metric.AddOption // by anonymous.reason
}

func newMetrics(mp metric.MeterProvider, tp trace.TracerProvider) (*metrics, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	m := &metrics{tracer: tp.Tracer(instrumentation)}
	meter := mp.Meter(instrumentation)
	var err error
	counter := func(dst *metric.Int64Counter, name, unit, desc string) {
		if err == nil {
			*dst, err = meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		}
	}
	counter(&m.issued, "anonymous.guest.issued", "{guest}", "New guests issued to visitors, stored or not.")
	counter(&m.stored, "anonymous.guest.stored", "{guest}", "Guests written to the store for the first time, by what stored them.")
	counter(&m.returning, "anonymous.guest.returning", "{request}", "Requests of guests found in the store.")
	counter(&m.linked, "anonymous.guest.linked", "{guest}", "Guests that became real users (OnLinkAccount succeeded and the link was recorded).")
	counter(&m.linkFailed, "anonymous.link.failed", "{link}", "Links that did not complete, by reason; the guest is kept and the link retried.")
	counter(&m.deleted, "anonymous.guest.deleted", "{guest}", "Guests deleted, by reason.")
	counter(&m.unknown, "anonymous.guest.unknown", "{request}", "Valid guest cookies naming a guest the store does not have: the visitor gets a new guest.")
	counter(&m.refused, "anonymous.guest.not_stored", "{guest}", "Guests not stored because of the abuse budget or a full store; they live in their cookies.")
	counter(&m.storeErrors, "anonymous.store.errors", "{error}", "Failed store calls, by operation.")
	if err == nil {
		m.storeDuration, err = meter.Float64Histogram("anonymous.store.duration", metric.WithUnit("s"),
			metric.WithDescription("Duration of store calls, by operation."),
			metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
	}
	if err != nil {
		return nil, err
	}
	addBy := func(key string, values ...string) map[string][]metric.AddOption {
		out := make(map[string][]metric.AddOption, len(values))
		for _, v := range values {
			out[v] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String(key, v)))}
		}
		return out
	}
	m.storedBy = addBy("anonymous.source", sourceFirstReturn, sourceIssue, sourceSignIn, sourceData, sourceLink)
	m.linkFailure = addBy("anonymous.reason", failCallback, failStore, failOutlasted)
	m.refusedBy = addBy("anonymous.reason", "budget", "store_full")
	m.deletedBy = make(map[DeleteReason][]metric.AddOption, 3)
	for _, r := range []DeleteReason{DeletedByVisitor, DeletedByLink, DeletedByApplication} {
		m.deletedBy[r] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("anonymous.reason", r.String())))}
	}
	return m, nil
}

// Values of the anonymous.source and anonymous.reason attributes.
const (
	sourceFirstReturn = "first_return" // a first-visit cookie came back
	sourceIssue       = "issue"        // Options.PersistOnIssue
	sourceSignIn      = "sign_in"      // sign-in/anonymous
	sourceData        = "data"         // UpdateData of a guest not stored yet
	sourceLink        = "link"         // a first-visit guest linked before it was stored
	failCallback      = "callback"
	failStore         = "store"
	failOutlasted     = "outlasted"
)

// storeOp is one Store method's attributes, built once.
type storeOp struct {
	span   string
	add    []metric.AddOption
	record []metric.RecordOption
}

// observedStore times and counts a Store's calls, and traces them under a
// request's recording span.
type observedStore struct {
	Store
	tx                            TxStore // the application's store, if it is one
	m                             *metrics
	create, get, update, transact *storeOp
}

func newObservedStore(s Store, m *metrics) observedStore {
	op := func(name string) *storeOp {
		set := metric.WithAttributeSet(attribute.NewSet(attribute.String("anonymous.store.operation", name)))
		return &storeOp{span: "anonymous.store." + name, add: []metric.AddOption{set}, record: []metric.RecordOption{set}}
	}
	tx, _ := s.(TxStore)
	return observedStore{Store: s, tx: tx, m: m, create: op("create"), get: op("get"), update: op("update"), transact: op("transact")}
}

// txStore returns the Manager's store as a TxStore, observed, or nil when
// the application's store is not one.
func (m *Manager) txStore() TxStore {
	if s, ok := m.store.(observedStore); ok && s.tx != nil {
		return s
	}
	return nil
}

// Transact observes a TxStore's Transact; the duration includes the
// callback's. Only txStore's answer, whose tx is set, is called.
func (s observedStore) Transact(ctx context.Context, key string, fn func(context.Context, Entry) (Entry, error)) error {
	ctx, span, begin := s.begin(ctx, s.transact)
	err := s.tx.Transact(ctx, key, fn)
	var cbErr *callbackError
	s.end(ctx, span, s.transact, begin, err, errors.Is(err, ErrNotFound) || errors.Is(err, ErrClaimed) ||
		errors.Is(err, errGone) || errors.As(err, &cbErr))
	return err
}

func (s observedStore) Create(ctx context.Context, key string, e Entry) error {
	ctx, span, begin := s.begin(ctx, s.create)
	err := s.Store.Create(ctx, key, e)
	s.end(ctx, span, s.create, begin, err, errors.Is(err, ErrExists) || errors.Is(err, ErrStoreFull))
	return err
}

func (s observedStore) Get(ctx context.Context, key string) (Entry, error) {
	ctx, span, begin := s.begin(ctx, s.get)
	e, err := s.Store.Get(ctx, key)
	s.end(ctx, span, s.get, begin, err, errors.Is(err, ErrNotFound))
	return e, err
}

func (s observedStore) Update(ctx context.Context, key string, e Entry) error {
	ctx, span, begin := s.begin(ctx, s.update)
	err := s.Store.Update(ctx, key, e)
	s.end(ctx, span, s.update, begin, err, errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound))
	return err
}

// begin starts a store call, with a span when the request is traced (a span
// per call otherwise would cost allocations even with no tracer). It reads
// the clock only when the duration is recorded: a read can cost more than
// a memstore lookup.
func (s observedStore) begin(ctx context.Context, op *storeOp) (context.Context, trace.Span, time.Time) {
	var span trace.Span
	if trace.SpanFromContext(ctx).IsRecording() {
		ctx, span = s.m.tracer.Start(ctx, op.span, trace.WithSpanKind(trace.SpanKindClient))
	}
	var begin time.Time
	if s.m.storeDuration.Enabled(ctx) {
		begin = time.Now()
	}
	return ctx, span, begin
}

// end records a store call; answer says its error is one of the contract's
// answers (ErrNotFound, ErrConflict, ...), not a failure.
func (s observedStore) end(ctx context.Context, span trace.Span, op *storeOp, begin time.Time, err error, answer bool) {
	if !begin.IsZero() {
		s.m.storeDuration.Record(ctx, time.Since(begin).Seconds(), op.record...)
	}
	failed := err != nil && !answer
	if failed {
		s.m.storeErrors.Add(ctx, 1, op.add...)
	}
	if span != nil {
		if failed {
			span.RecordError(err)
			span.SetStatus(codes.Error, "store call failed")
		}
		span.End()
	}
}
