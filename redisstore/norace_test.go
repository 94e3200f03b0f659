//go:build !race

package redisstore_test

const raceBuild = false
