package access

import (
	"bufio"
	"bytes"
	"fmt"
	"sort"
	"strings"
	"unicode"
)

// MinSecretLen is the shortest API key secret ParseKeys accepts (HS256
// wants a key at least as long as its 32-byte output).
const MinSecretLen = 32

// maxKeyIDLen bounds a key id.
const maxKeyIDLen = 64

// KeySet maps key ids to secrets. The zero value holds no keys.
type KeySet struct {
	keys map[string][]byte
}

// ParseKeys parses an API keys file: one "KEY_ID SECRET" pair per line
// (separated by spaces or tabs); empty lines and lines starting with "#"
// are ignored. Key ids are 1-64 printable characters without spaces;
// secrets have at least MinSecretLen bytes; a key id appears once. Errors
// name the line, never the secret.
func ParseKeys(data []byte) (KeySet, error) {
	ks := KeySet{keys: map[string][]byte{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.FieldsFunc(line, unicode.IsSpace)
		if len(fields) != 2 {
			return KeySet{}, fmt.Errorf("%w: line %d: want \"KEY_ID SECRET\"", ErrBadKeys, n)
		}
		id, secret := fields[0], fields[1]
		if len(id) > maxKeyIDLen {
			return KeySet{}, fmt.Errorf("%w: line %d: key id longer than %d bytes", ErrBadKeys, n, maxKeyIDLen)
		}
		if len(secret) < MinSecretLen {
			return KeySet{}, fmt.Errorf("%w: line %d: secret of key %q is shorter than %d bytes", ErrBadKeys, n, id, MinSecretLen)
		}
		if _, dup := ks.keys[id]; dup {
			return KeySet{}, fmt.Errorf("%w: line %d: key id %q appears twice", ErrBadKeys, n, id)
		}
		ks.keys[id] = []byte(secret)
	}
	if err := sc.Err(); err != nil {
		return KeySet{}, fmt.Errorf("%w: %v", ErrBadKeys, err)
	}
	if len(ks.keys) == 0 {
		return KeySet{}, fmt.Errorf("%w: no keys", ErrBadKeys)
	}
	return ks, nil
}

// Len returns the number of keys.
func (ks KeySet) Len() int { return len(ks.keys) }

// IDs returns the key ids, sorted.
func (ks KeySet) IDs() []string {
	ids := make([]string, 0, len(ks.keys))
	for id := range ks.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// secret returns the secret of key id.
func (ks KeySet) secret(id string) ([]byte, bool) {
	s, ok := ks.keys[id]
	return s, ok
}
