package redisstore

// Exported for the tests of package redisstore_test.
var (
	ErrMalformed = errMalformed
	ParseFrame   = parseFrame
	NewFrame     = newFrame
)
