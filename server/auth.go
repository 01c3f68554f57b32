package server

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"

	"golang.org/x/crypto/bcrypt"

	"github.com/ftpsd/ftpsd/config"
)

// errBadLogin is the one answer to every failed login, whatever the cause.
var errBadLogin = errors.New("invalid user name or password")

// account is a user ready for login checks.
type account struct {
	config.User
	hash []byte
}

// accounts is an immutable user table, swapped whole on SIGHUP.
type accounts struct {
	byName map[string]*account
	// dummy has the cost of the most expensive real hash, so that an unknown
	// user costs as much time as a wrong password.
	dummy []byte
}

// GeneratedPassword is a password the server made for a user configured without a hash (the embedded default).
type GeneratedPassword struct {
	User, Password string
}

func newAccounts(users []config.User) (*accounts, []GeneratedPassword, error) {
	a := &accounts{byName: make(map[string]*account, len(users))}
	var generated []GeneratedPassword
	maxCost := bcrypt.MinCost
	for _, u := range users {
		acc := &account{User: u, hash: []byte(u.PasswordHash)}
		if u.PasswordHash == "" {
			pw := rand.Text()
			h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
			if err != nil {
				return nil, nil, fmt.Errorf("hash generated password for %s: %w", u.Name, err)
			}
			acc.hash = h
			generated = append(generated, GeneratedPassword{User: u.Name, Password: pw})
		}
		cost, err := bcrypt.Cost(acc.hash)
		if err != nil {
			return nil, nil, fmt.Errorf("user %s: password_hash: %w", u.Name, err)
		}
		maxCost = max(maxCost, cost)
		if u.S3 != nil {
			// A bucket prefix needs no creating: directories are prefixes.
		} else if err := os.MkdirAll(u.Root, 0o755); err != nil {
			return nil, nil, fmt.Errorf("user %s: create root: %w", u.Name, err)
		}
		a.byName[u.Name] = acc
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), maxCost)
	if err != nil {
		return nil, nil, fmt.Errorf("make dummy hash: %w", err)
	}
	a.dummy = dummy
	return a, generated, nil
}

// check verifies a login in time that does not depend on whether the user exists.
func (a *accounts) check(name, password string) (*account, error) {
	acc, ok := a.byName[name]
	hash := a.dummy
	if ok {
		hash = acc.hash
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	if !ok || err != nil {
		return nil, errBadLogin
	}
	return acc, nil
}
