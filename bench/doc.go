// Package bench compares package anonymous with other ways of giving a
// visitor an identity: a bare handler, a handler doing one raw Redis GET,
// alexedwards/scs and gorilla/sessions, each in memory and on Redis. The
// benchmarks and their tests are in this package's test files; run.sh runs
// them and prints a benchstat table and the ratios (cmd/ratios).
//
// It is a module of its own so that users of package anonymous never
// download the contenders.
package bench
