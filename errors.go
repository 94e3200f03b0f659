package anonymous

import "errors"

// The errors the Manager's methods and middleware return to the
// application, besides the Store's (ErrNotFound, ErrExists, ErrConflict,
// ErrStoreFull). They are usually wrapped: compare with errors.Is.
var (
	// ErrInvalidOptions is wrapped by every error New returns for bad
	// Options.
	ErrInvalidOptions = errors.New("anonymous: invalid options")
	// ErrInvalidUser is wrapped by Link's error, and by the middleware's
	// when Options.Identify names one, for a real user with an empty ID: a
	// guest is never linked to nobody.
	ErrInvalidUser = errors.New("anonymous: a real user must have an ID")
	// ErrInvalidEmail is returned when GenerateRandomEmail returns something
	// that is not a bare email address. No guest is created with it.
	ErrInvalidEmail = errors.New("anonymous: email was not generated in a valid format")
	// ErrNoGuest is returned by UpdateData for a request without a guest:
	// a real user's, or one for which UserFrom is nil (outside the
	// middleware, skipped, Identify failed, the store or GenerateRandomEmail
	// failed, or more than 16 guest cookies none of which was valid).
	ErrNoGuest = errors.New("anonymous: the request has no guest")
	// ErrDataTooLarge is returned by UpdateData when the new data is over
	// Options.MaxDataSize or, for a guest held in its first-visit cookie,
	// over 1 KiB. Nothing is written.
	ErrDataTooLarge = errors.New("anonymous: guest data is over Options.MaxDataSize")
	// ErrClaimed is returned while another request is linking the guest.
	ErrClaimed = errors.New("anonymous: guest is being linked")
	// ErrOverBudget is returned when a client has stored as many guests as
	// its Budget allows for now. Nothing was stored.
	ErrOverBudget = errors.New("anonymous: the client's guest budget is spent for now")
	// ErrUncertain is returned, wrapping the store's error, when a write
	// was sent but the store stopped answering before the package could
	// learn whether it was made: the change may or may not be there.
	// Reading the guest again later tells; a retry of the same change may
	// apply it twice.
	ErrUncertain = errors.New("anonymous: the store did not say whether the write was made")
)
