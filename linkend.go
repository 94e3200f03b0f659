package anonymous

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// linkWait is how long a login request waits for the link's last write
// when the store fails; the write is retried in the background after that,
// until the lease ends.
const linkWait = 2 * time.Second

// finish ends the link of guest claimed to newUser once OnLinkAccount has
// succeeded: one write both ends the guest and records the link. It holds
// only while the lease is owner's, so a callback that outlasted the lease
// leaves the guest to the request that took it over.
//
// The store may fail here (a failover, say). The request waits for at most
// linkWait; then the write goes on in the background until the lease ends
// (Manager.Close waits for it), and the request is answered as linked: the
// callback ran, and its cookie is expired, so this browser cannot link the
// guest again. If the write never lands, the guest is back once the lease
// ends, and a replayed copy of its cookie could run OnLinkAccount again:
// that is why OnLinkAccount must be safe to repeat.
func (m *Manager) finish(w http.ResponseWriter, ctx context.Context, claimed *Record, owner string, newUser *User, leaseEnd time.Time) error {
	wait := time.Now().Add(linkWait)
	if leaseEnd.Before(wait) {
		wait = leaseEnd
	}
	err := m.recordLink(ctx, claimed, owner, newUser, wait, false)
	if storeFailure(err) && time.Now().Before(leaseEnd) {
		m.log.WarnContext(ctx, "anonymous: OnLinkAccount succeeded but recording the link failed; retrying in the background until the lease ends", "guest", claimed.User.ID, "err", err)
		m.background.Add(1)
		go func() {
			defer m.background.Done()
			m.linked(ctx, claimed, m.recordLink(ctx, claimed, owner, newUser, leaseEnd, true))
		}()
		m.expireCookie(w)
		return nil
	}
	if err = m.linked(ctx, claimed, err); err == nil {
		m.expireCookie(w)
	}
	return err
}

// storeFailure reports whether recordLink's error is the store's.
func storeFailure(err error) bool {
	return err != nil && !errors.Is(err, errStop) && !errors.Is(err, errGone) && !errors.Is(err, ErrClaimed)
}

// recordLink writes the link's last write, retried until deadline. failed
// says an earlier attempt failed, which may have been written all the
// same: a record linked to newUser is then written again, unchanged, so
// that the store confirms it (with redisstore's WaitReplicas, that
// replicas have it).
func (m *Manager) recordLink(ctx context.Context, claimed *Record, owner string, newUser *User, deadline time.Time, failed bool) error {
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		_, err := m.modify(ctx, claimed, func(rec *Record) error {
			switch {
			case rec.LinkedTo == newUser.ID && !failed:
				return errStop // linked already, by another request of this user
			case rec.LinkedTo == newUser.ID:
				return nil // our lost attempt: write it again, unchanged
			case !rec.live():
				return errGone
			case rec.ClaimOwner != owner, !bytes.Equal(rec.Data, claimed.Data):
				// Our lease ran out: another request took the guest over, or
				// data was added that the callback never saw.
				return ErrClaimed
			}
			bury(rec, newUser.ID, m.opts.DisableDeleteAnonymousUser)
			return nil
		})
		if !storeFailure(err) || !time.Now().Before(deadline) {
			return err
		}
		failed = true
		time.Sleep(min(wait, time.Until(deadline)))
	}
}

// linked reports the outcome of a link whose callback succeeded: err is
// recordLink's.
func (m *Manager) linked(ctx context.Context, claimed *Record, err error) error {
	id := claimed.User.ID
	switch {
	case errors.Is(err, ErrClaimed):
		m.log.ErrorContext(ctx, "anonymous: OnLinkAccount outlasted LinkLease and another request took the guest over; it may run again", "guest", id)
		m.metrics.linkFailed.Add(ctx, 1, m.metrics.linkFailure[failOutlasted]...)
		return fmt.Errorf("anonymous: linking guest %s: %w", id, err)
	case storeFailure(err):
		m.log.ErrorContext(ctx, "anonymous: OnLinkAccount succeeded but recording the link failed until the lease ended; it may run again", "guest", id, "err", err)
		m.metrics.linkFailed.Add(ctx, 1, m.metrics.linkFailure[failStore]...)
		return fmt.Errorf("anonymous: OnLinkAccount succeeded but removing guest %s failed: %w", id, err)
	case errors.Is(err, errGone):
		return nil // another request linked it
	}
	m.linkDone(ctx, &claimed.User)
	return nil
}

// linkDone counts a link that ended guest u, and tells OnGuestDeleted when
// the guest was deleted rather than kept (DisableDeleteAnonymousUser).
func (m *Manager) linkDone(ctx context.Context, u *User) {
	m.metrics.linked.Add(ctx, 1)
	if !m.opts.DisableDeleteAnonymousUser {
		m.deleted(ctx, u, DeletedByLink)
	}
}

// Close waits for the links whose last write is being retried in the
// background (a login during a store outage), until they end or ctx is
// done, whose error it then returns. Call it on shutdown, after the server
// stopped taking requests (http.Server.Shutdown). The Manager keeps
// working after Close.
func (m *Manager) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		m.background.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
