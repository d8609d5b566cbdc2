// Package wgkey generates and parses WireGuard keys (Curve25519, base64).
package wgkey

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"golang.org/x/crypto/curve25519"
)

// Key is a 32-byte WireGuard key.
type Key [32]byte

// Generate returns a new clamped private key.
func Generate() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("reading random bytes: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// Parse decodes a base64 key.
func Parse(s string) (Key, error) {
	var k Key
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return k, fmt.Errorf("not a WireGuard key: want base64 of 32 bytes")
	}
	copy(k[:], b)
	return k, nil
}

// Public derives the public key of a private key.
func (k Key) Public() Key {
	var p Key
	out, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		// Only a low-order point gives an error; a clamped private key never does.
		return p
	}
	copy(p[:], out)
	return p
}

// String is the base64 form used in KubeLink objects and secrets.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Hex is the form of the WireGuard configuration protocol (UAPI).
func (k Key) Hex() string { return hex.EncodeToString(k[:]) }

// IsZero reports whether the key is unset.
func (k Key) IsZero() bool { return k == Key{} }
