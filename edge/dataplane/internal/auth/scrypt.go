package auth

// Protected-socket passwords are stored by the Python side as
// scrypt$N$r$p$<salt b64>$<hash b64>; this reads one and checks a password
// against it. A check costs about 128*N*r bytes (scrypt's V array: 16 MiB
// for the Python side's N=2^14, r=8), which is what the Checker budgets.

import (
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"

	"golang.org/x/crypto/scrypt"
)

type scryptHash struct {
	n, r, p    int
	salt, want []byte
}

// parseScrypt reads a stored hash; false when it is malformed or its cost absurd.
func parseScrypt(stored string) (scryptHash, bool) {
	parts := strings.Split(stored, "$")
	if len(parts) != 6 || parts[0] != "scrypt" {
		return scryptHash{}, false
	}
	n, err1 := strconv.Atoi(parts[1])
	r, err2 := strconv.Atoi(parts[2])
	p, err3 := strconv.Atoi(parts[3])
	salt, err4 := base64.StdEncoding.DecodeString(parts[4])
	want, err5 := base64.StdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil || len(want) == 0 ||
		n <= 1 || n > 1<<24 || r <= 0 || r > 1<<10 || p <= 0 || p > 1<<10 {
		return scryptHash{}, false
	}
	return scryptHash{n, r, p, salt, want}, true
}

// memory is what one check of this hash allocates, about.
func (h scryptHash) memory() int64 { return 128 * int64(h.n) * int64(h.r) }

func (h scryptHash) verify(password string) bool {
	got, err := scrypt.Key([]byte(password), h.salt, h.n, h.r, h.p, len(h.want))
	return err == nil && subtle.ConstantTimeCompare(got, h.want) == 1
}

func verifyScrypt(password, stored string) bool {
	h, ok := parseScrypt(stored)
	return ok && h.verify(password)
}
