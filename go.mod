module github.com/guestpass/anonymous

go 1.26

require (
	github.com/gorilla/securecookie v1.1.2
	github.com/oklog/ulid/v2 v2.1.2
)
