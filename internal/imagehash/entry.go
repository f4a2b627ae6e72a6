package imagehash

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// An entry file is five lines:
//
//	vmgate-imagehash 1
//	key <dev> <ino> <size> <mtime ns> <ctime ns>
//	sha512 <128 lowercase hex digits>
//	path "<the path it was hashed through, quoted>"
//	check <first 16 bytes of the sha512 of the lines above, hex>
//
// An entry is accepted only if it re-encodes to exactly the bytes read, so a truncated,
// padded or bit-flipped entry is a miss. The key is repeated inside so that an entry renamed
// to another key's name is a miss too. The path is a hint for Prune and for people: several
// paths may reach one file.
const entryHeader = "vmgate-imagehash 1"

// maxEntrySize bounds what a lookup reads: a path is at most 4096 bytes, 4 after quoting.
const maxEntrySize = 32 << 10

var errCorrupt = errors.New("corrupt hash cache entry")

type entry struct {
	key  identity
	sum  string
	path string
}

func (e entry) marshal() []byte {
	b := make([]byte, 0, 320+len(e.path))
	b = append(b, entryHeader+"\n"...)
	b = fmt.Appendf(b, "key %d %d %d %d %d\n", e.key.dev, e.key.ino, e.key.size, e.key.mtime, e.key.ctime)
	b = append(b, "sha512 "...)
	b = append(b, e.sum...)
	b = append(b, "\npath "...)
	b = strconv.AppendQuote(b, e.path)
	b = append(b, '\n')
	check := sha512.Sum512(b)
	b = append(b, "check "...)
	b = hex.AppendEncode(b, check[:16])
	return append(b, '\n')
}

func parseEntry(data []byte) (entry, error) {
	lines := strings.Split(string(data), "\n")
	if len(lines) != 6 || lines[0] != entryHeader || lines[5] != "" {
		return entry{}, errCorrupt
	}
	var e entry
	keyText, ok1 := strings.CutPrefix(lines[1], "key ")
	sum, ok2 := strings.CutPrefix(lines[2], "sha512 ")
	quoted, ok3 := strings.CutPrefix(lines[3], "path ")
	if !ok1 || !ok2 || !ok3 || !isSHA512Hex(sum) {
		return entry{}, errCorrupt
	}
	fields := strings.Split(keyText, " ")
	if len(fields) != 5 {
		return entry{}, errCorrupt
	}
	var errs [5]error
	e.key.dev, errs[0] = strconv.ParseUint(fields[0], 10, 64)
	e.key.ino, errs[1] = strconv.ParseUint(fields[1], 10, 64)
	e.key.size, errs[2] = strconv.ParseInt(fields[2], 10, 64)
	e.key.mtime, errs[3] = strconv.ParseInt(fields[3], 10, 64)
	e.key.ctime, errs[4] = strconv.ParseInt(fields[4], 10, 64)
	if errors.Join(errs[:]...) != nil {
		return entry{}, errCorrupt
	}
	path, err := strconv.Unquote(quoted)
	if err != nil {
		return entry{}, errCorrupt
	}
	e.sum, e.path = sum, path
	if !bytes.Equal(e.marshal(), data) {
		return entry{}, errCorrupt // checksum, or a non-canonical spelling of a field
	}
	return e, nil
}

func isSHA512Hex(s string) bool {
	if len(s) != 2*sha512.Size {
		return false
	}
	for i := range len(s) {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// readEntry reads and checks the entry at path. It never follows a symbolic link, never waits
// on a FIFO, and refuses entries someone other than root or us could have written.
func readEntry(path string) (entry, error) {
	fd, st, err := openRegular(path, syscall.O_NOFOLLOW)
	if err != nil {
		return entry{}, err
	}
	defer syscall.Close(fd)
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		return entry{}, fmt.Errorf("%s: untrusted hash cache entry (owner %d, mode %#o)", path, st.Uid, st.Mode&0o7777)
	}
	if st.Size > maxEntrySize {
		return entry{}, errCorrupt
	}
	// Entries are replaced, never rewritten in place, so the size fstat gave is the size.
	data := make([]byte, st.Size)
	if err := readFull(fd, data); err != nil {
		return entry{}, &os.PathError{Op: "read", Path: path, Err: err}
	}
	return parseEntry(data)
}
