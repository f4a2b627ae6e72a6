package endorse

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/vmgate/vmgate/internal/atomicfile"
)

// Software inventory formats, as the list's vmgate:software:format and the history name them.
const (
	InventorySPDX      = "spdx-json"
	InventoryCycloneDX = "cyclonedx-json"
	InventoryRPM       = "rpm-qa"
	InventoryDpkg      = "dpkg-query"
)

// MaxInventorySize caps a software inventory: an SBOM of a large image is a few MiB.
const MaxInventorySize = 64 << 20

// Software is a software inventory as the history records it.
type Software struct {
	SHA512   string `json:"sha512"`
	Format   string `json:"format"`
	Packages int    `json:"packages"`
	Path     string `json:"path"` // where it is kept, relative to the list's directory
}

// ParseInventory recognises a software inventory and counts its packages. It accepts an SPDX
// or CycloneDX JSON document, the output of `rpm -qa` (one name-version-release[.arch] per
// line), of `dpkg-query -W` (name, then version, separated by a tab or spaces) and of
// `dpkg-query -l` (dpkg -l: the table with its header). What it keeps is the input itself,
// verbatim; the parsing only makes sure it is an inventory with a version for every
// package, as the policy asks for exact versions.
func ParseInventory(data []byte) (format string, packages int, err error) {
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))) // a UTF-8 BOM, as some tools write
	if len(trimmed) == 0 {
		return "", 0, refusef("software inventory is empty")
	}
	if trimmed[0] == '{' {
		return parseSBOM(trimmed)
	}
	if !utf8.Valid(data) {
		return "", 0, refusef("software inventory is neither JSON nor text")
	}
	lines := strings.Split(strings.ReplaceAll(string(trimmed), "\r\n", "\n"), "\n")
	if n, ok, err := parseDpkgList(lines); ok || err != nil {
		return InventoryDpkg, n, err
	}
	var rpm, dpkg int
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 1 && isNEVRA(line):
			rpm++
		case len(fields) >= 2 && strings.ContainsAny(fields[1], "0123456789"):
			dpkg++
		default:
			return "", 0, refusef("software inventory line %d (%q) is neither `rpm -qa` (name-version-release) nor `dpkg-query -W` (name and version)", i+1, short(line, 80))
		}
	}
	switch {
	case rpm > 0 && dpkg > 0:
		return "", 0, refusef("software inventory mixes `rpm -qa` and `dpkg-query -W` lines")
	case rpm > 0:
		return InventoryRPM, rpm, nil
	}
	return InventoryDpkg, dpkg, nil
}

// parseDpkgList reads the table `dpkg-query -l` prints: a header that ends with a rule
// ("+++-====…"), then one line per package, its status (two or three letters, "ii"), name,
// version, architecture and description. ok is false when the text is not such a table.
func parseDpkgList(lines []string) (packages int, ok bool, err error) {
	body := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "+++-") {
			body = i + 1
			break
		}
	}
	if body < 0 {
		return 0, false, nil
	}
	for i, l := range lines[body:] {
		if strings.TrimSpace(l) == "" {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 3 || len(f[0]) < 2 || len(f[0]) > 3 || !strings.ContainsAny(f[2], "0123456789") {
			return 0, true, refusef("software inventory line %d (%q) is not a `dpkg-query -l` package line (status, name, version, …)", body+i+1, short(l, 80))
		}
		packages++
	}
	if packages == 0 {
		return 0, true, refusef("software inventory is a `dpkg-query -l` table without packages")
	}
	return packages, true, nil
}

// short cuts s to at most n bytes (at a rune boundary) for a message.
func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// isNEVRA: name-version-release with an optional .arch, as rpm -qa prints packages; the
// version and release never contain a dash.
func isNEVRA(s string) bool {
	parts := strings.Split(s, "-")
	if len(parts) < 3 {
		return false
	}
	ver, rel := parts[len(parts)-2], parts[len(parts)-1]
	return strings.Join(parts[:len(parts)-2], "-") != "" && ver != "" && rel != "" &&
		strings.ContainsAny(ver, "0123456789")
}

func parseSBOM(data []byte) (string, int, error) {
	var doc struct {
		SPDXVersion string            `json:"spdxVersion"`
		Packages    []json.RawMessage `json:"packages"`
		BOMFormat   string            `json:"bomFormat"`
		Components  []json.RawMessage `json:"components"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return "", 0, refusef("software inventory is not valid JSON: %v", err)
	}
	switch {
	case strings.HasPrefix(doc.SPDXVersion, "SPDX-"):
		return InventorySPDX, len(doc.Packages), nil
	case doc.BOMFormat == "CycloneDX":
		return InventoryCycloneDX, len(doc.Components), nil
	}
	return "", 0, refusef("software inventory is JSON but neither SPDX (spdxVersion) nor CycloneDX (bomFormat)")
}

// storeInventory reads the inventory at path, checks it and keeps it verbatim under
// FILE.d/software, named by its sha512, which the image entry references.
func (w *Workspace) storeInventory(path string) (*Software, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("software inventory: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxInventorySize+1))
	if err != nil {
		return nil, fmt.Errorf("software inventory %s: %w", path, err)
	}
	if len(data) > MaxInventorySize {
		return nil, refusef("software inventory %s is larger than %d bytes", path, MaxInventorySize)
	}
	format, n, err := ParseInventory(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sum := sha512.Sum512(data)
	hexsum := hex.EncodeToString(sum[:])
	ext := ".txt"
	if format == InventorySPDX || format == InventoryCycloneDX {
		ext = ".json"
	}
	if err := os.MkdirAll(w.softwareDir(), 0o755); err != nil {
		return nil, fmt.Errorf("software inventory: %w", err)
	}
	dst := filepath.Join(w.softwareDir(), hexsum+ext)
	// Named by content: an existing file with the name holds the same bytes.
	if _, err := os.Stat(dst); errors.Is(err, fs.ErrNotExist) {
		if err := atomicfile.WriteFile(dst, data, 0o644); err != nil {
			return nil, fmt.Errorf("software inventory: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("software inventory: %w", err)
	}
	rel, err := filepath.Rel(filepath.Dir(w.List), dst)
	if err != nil {
		rel = dst
	}
	return &Software{SHA512: hexsum, Format: format, Packages: n, Path: rel}, nil
}
