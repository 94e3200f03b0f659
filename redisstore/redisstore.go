package redisstore

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/redis/go-redis/v9"
)

// defaultPrefix is the key prefix when Options.Prefix is empty.
const defaultPrefix = "anon:"

// Options configures a Store. The zero value is a working configuration.
type Options struct {
	// Prefix starts every key the store writes, so several applications
	// (or tests) can share a database. It must not contain '{' or '}',
	// which would change the keys' hash tag. Default: "anon:".
	Prefix string
	// WaitReplicas, when above 0, makes the writes the Manager marks
	// Durable (anonymous.Entry.Durable: a link's claim, and the record a
	// link or a delete leaves, which guard exactly-once linking and
	// deletion) wait until that many replicas have them (WAIT on the
	// write's own connection, in the same round trip), so that a failover
	// cannot lose them. A Create or Update that fewer replicas acknowledge
	// within WaitTimeout is reported as failed (ErrNotReplicated), although
	// the master has it: the Manager then retries or gives the link up, as
	// for any store failure, and a retry recognises the write that did
	// happen. Writes not marked Durable (a new guest, its data, its expiry)
	// do not wait. Default: 0, no waiting.
	WaitReplicas int
	// WaitTimeout bounds WaitReplicas' wait. Default: 100 ms.
	WaitTimeout time.Duration
}

// ErrNotReplicated is returned for a write that fewer than
// Options.WaitReplicas replicas acknowledged within Options.WaitTimeout.
var ErrNotReplicated = errors.New("redisstore: write not acknowledged by enough replicas")

// Store is an anonymous.Store on Redis. Create it with New. It is safe for
// concurrent use. It does not own the client: the caller closes it.
type Store struct {
	client  redis.UniversalClient
	prefix  string
	wait    int   // Options.WaitReplicas
	waitFor int64 // Options.WaitTimeout, in ms
}

var (
	_ anonymous.Store   = (*Store)(nil)
	_ anonymous.Limiter = (*Store)(nil)
)

// New returns a Store on client, which may be a *redis.Client (a single
// node), a Sentinel failover client or a *redis.ClusterClient. The zero
// Options is the default configuration. It returns an error for a nil
// client, a bad Options.Prefix or a negative WaitReplicas or WaitTimeout.
// The caller keeps owning client and closes it after the last use of the
// Store.
func New(client redis.UniversalClient, o Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	p := o.Prefix
	if p == "" {
		p = defaultPrefix
	}
	if strings.ContainsAny(p, "{}") {
		return nil, fmt.Errorf("redisstore: Prefix %q contains a brace, which would break the keys' hash tag", p)
	}
	if o.WaitReplicas < 0 || o.WaitTimeout < 0 {
		return nil, errors.New("redisstore: negative WaitReplicas or WaitTimeout")
	}
	return &Store{
		client: client, prefix: p,
		wait: o.WaitReplicas, waitFor: max(cmp.Or(o.WaitTimeout, 100*time.Millisecond).Milliseconds(), 1),
	}, nil
}

// key is the entry's Redis key. Its hash tag {key} keeps a guest on one
// Cluster slot whatever else is ever stored beside it.
func (s *Store) key(key string) string { return s.prefix + "{" + key + "}" }

// validKey rejects keys that would not give one shared hash tag: empty ones
// and ones with braces. No guest can have such an id, so reads answer
// ErrNotFound.
func validKey(key string) bool {
	return key != "" && !strings.ContainsAny(key, "{}")
}

// pxat is an absolute expiry in Unix milliseconds for PXAT. It is never
// below 1 (Redis rejects 0): an expiry in the past makes Redis drop the key
// at once, so no key ever lives without an expiry.
func pxat(t time.Time) int64 {
	return max(t.UnixMilli(), 1)
}

var errInvalidKey = errors.New("redisstore: invalid key")

// Create stores e with SET NX PXAT: the frame and its absolute expiry in
// one atomic command.
func (s *Store) Create(ctx context.Context, key string, e anonymous.Entry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: create: %w", err)
	}
	if !validKey(key) {
		return fmt.Errorf("%w %q", errInvalidKey, key)
	}
	exp := pxat(e.Expires)
	k, v := s.key(key), newFrame(1, exp, e.Value)
	if s.wait > 0 && e.Durable {
		return s.waited(ctx, "create", key, k, func(p redis.Pipeliner) redis.Cmder {
			return p.SetArgs(ctx, k, v, redis.SetArgs{Mode: "NX", ExpireAt: time.UnixMilli(exp)})
		}, created)
	}
	return created(ctx, key, s.client.SetArgs(ctx, k, v, redis.SetArgs{Mode: "NX", ExpireAt: time.UnixMilli(exp)}))
}

// created maps SET NX's answer to Create's.
func created(ctx context.Context, key string, cmd redis.Cmder) error {
	switch err := cmd.Err(); {
	case errors.Is(err, redis.Nil):
		return anonymous.ErrExists
	case err != nil:
		return failed(ctx, "create", key, err)
	}
	return nil
}

// Get loads the entry with one GET. Its Value is part of the buffer
// go-redis read the reply into: go-redis allocates one for each reply,
// never reuses it, and Bytes hands it over without the copy that
// converting Result's string would make (TestGetOwnsValue holds go-redis
// to that). So the caller owns the value, and the store's only allocation
// is the key.
func (s *Store) Get(ctx context.Context, key string) (anonymous.Entry, error) {
	if err := ctx.Err(); err != nil {
		return anonymous.Entry{}, fmt.Errorf("redisstore: get: %w", err)
	}
	if !validKey(key) {
		return anonymous.Entry{}, anonymous.ErrNotFound
	}
	b, err := s.client.Get(ctx, s.key(key)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return anonymous.Entry{}, anonymous.ErrNotFound
	case err != nil:
		return anonymous.Entry{}, failed(ctx, "get", key, err)
	}
	e, err := parseFrame(b)
	if err != nil {
		return anonymous.Entry{}, fmt.Errorf("redisstore: get %s: %w", key, err)
	}
	// Redis keeps a key through the millisecond of its expiry.
	if !time.Now().Before(e.Expires) {
		return anonymous.Entry{}, anonymous.ErrNotFound
	}
	return e, nil
}

// Results of the update script.
const (
	resOK       = 0
	resNotFound = 1
	resConflict = 2
)

// updateScript replaces the value if its version is still ARGV[1], the
// eight bytes at offset offVersion of a frame and of a format 2 record
// alike. A key in the millisecond of its expiry, which Redis still keeps
// but Get no longer returns, is not found (PTTL 0). KEYS: the entry. ARGV:
// the version read, the new frame, its expiry in Unix ms.
var (
	updateScriptSource = fmt.Sprintf(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 or ttl == 0 then return %d end
if redis.call('GETRANGE', KEYS[1], %d, %d) ~= ARGV[1] then return %d end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return %d`, resNotFound, offVersion, offVersion+7, resConflict, resOK)
	updateScript = redis.NewScript(updateScriptSource)
)

// Update replaces the entry in one script call (EVALSHA, falling back to
// EVAL once per server), if its version is e.Version.
func (s *Store) Update(ctx context.Context, key string, e anonymous.Entry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: update: %w", err)
	}
	if !validKey(key) {
		return fmt.Errorf("%w %q", errInvalidKey, key)
	}
	exp := pxat(e.Expires)
	read := binary.BigEndian.AppendUint64(nil, e.Version)
	keys, args := []string{s.key(key)}, []any{read, newFrame(e.Version+1, exp, e.Value), exp}
	if s.wait > 0 && e.Durable {
		return s.waited(ctx, "update", key, keys[0], func(p redis.Pipeliner) redis.Cmder {
			return p.Eval(ctx, updateScriptSource, keys, args...)
		}, updated)
	}
	return updated(ctx, key, updateScript.Run(ctx, s.client, keys, args...))
}

// updated maps the update script's answer to Update's.
func updated(ctx context.Context, key string, cmd redis.Cmder) error {
	n, err := cmd.(*redis.Cmd).Int()
	switch {
	case err != nil:
		return failed(ctx, "update", key, err)
	case n == resNotFound:
		return anonymous.ErrNotFound
	case n == resConflict:
		return anonymous.ErrConflict
	}
	return nil
}

// waited sends write and WAIT on one connection of the master of Redis key
// k, pipelined: one round trip, plus the replicas' time. answer maps the
// write's reply; a write that changed nothing (ErrExists, ErrConflict,
// ErrNotFound) is answered as such, whatever the replicas acknowledged.
func (s *Store) waited(ctx context.Context, op, key, k string, write func(redis.Pipeliner) redis.Cmder, answer func(context.Context, string, redis.Cmder) error) error {
	node := redis.UniversalClient(s.client)
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, k)
		if err != nil {
			return failed(ctx, op, key, err)
		}
		node = m
	}
	var w redis.Cmder
	var acked *redis.Cmd
	// Pipelined's error is the first command's: answer and acked tell them
	// apart.
	_, _ = node.Pipelined(ctx, func(p redis.Pipeliner) error {
		w = write(p)
		acked = p.Do(ctx, "WAIT", s.wait, s.waitFor)
		return nil
	})
	if err := answer(ctx, key, w); err != nil {
		return err
	}
	if got, err := acked.Int(); err != nil || got < s.wait {
		return failed(ctx, op, key, fmt.Errorf("%w: %d of %d replicas (%v)", ErrNotReplicated, got, s.wait, err))
	}
	return nil
}

// failed wraps a failed call's error, and the context's too when it is done
// (go-redis reports a deadline as a network timeout), so that
// errors.Is(err, context.DeadlineExceeded) holds for a call the caller's
// deadline cut short.
func failed(ctx context.Context, op, id string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("redisstore: %s %s: %w: %w", op, id, cerr, err)
	}
	return fmt.Errorf("redisstore: %s %s: %w", op, id, err)
}
