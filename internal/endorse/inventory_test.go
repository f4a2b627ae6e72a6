package endorse

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	spdxDoc = `{
  "spdxVersion": "SPDX-2.3",
  "dataLicense": "CC0-1.0",
  "SPDXID": "SPDXRef-DOCUMENT",
  "name": "worker-el9",
  "packages": [
    {"SPDXID": "SPDXRef-bash", "name": "bash", "versionInfo": "5.1.8-9.el9"},
    {"SPDXID": "SPDXRef-openssh", "name": "openssh", "versionInfo": "8.7p1-38.el9"}
  ]
}
`
	cycloneDXDoc = `{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[
{"type":"library","name":"bash","version":"5.2.15-2+b7","purl":"pkg:deb/debian/bash@5.2.15-2+b7"},
{"type":"library","name":"openssl","version":"3.0.15-1~deb12u1"},
{"type":"library","name":"libc6","version":"2.36-9+deb12u9"}]}`
	rpmQA = `bash-5.1.8-9.el9.x86_64
openssh-server-8.7p1-38.el9.x86_64
gpg-pubkey-fd431d51-4ae0493b
python3-libs-3.9.18-3.el9.x86_64
`
	dpkgW = "adduser\t3.134\nbash\t5.2.15-2+b7\nlibc6:amd64\t2.36-9+deb12u9\n"
	dpkgL = `Desired=Unknown/Install/Remove/Purge/Hold
| Status=Not/Inst/Conf-files/Unpacked/halF-conf/Half-inst/trig-aWait/Trig-pend
|/ Err?=(none)/Reinst-required (Status,Err: uppercase=bad)
||/ Name           Version        Architecture Description
+++-==============-==============-============-=================================
ii  adduser        3.134          all          add and remove users and groups
ii  bash           5.2.15-2+b7    amd64        GNU Bourne Again SHell
rc  oldpkg         1.0-1          amd64        removed, configuration kept
`
)

func TestParseInventory(t *testing.T) {
	tests := []struct {
		name     string
		data     string
		format   string
		packages int
		refuse   string
	}{
		{"spdx json", spdxDoc, InventorySPDX, 2, ""},
		{"cyclonedx json", cycloneDXDoc, InventoryCycloneDX, 3, ""},
		{"rpm -qa", rpmQA, InventoryRPM, 4, ""},
		{"rpm -qa, CRLF", strings.ReplaceAll(rpmQA, "\n", "\r\n"), InventoryRPM, 4, ""},
		{"dpkg-query -W", dpkgW, InventoryDpkg, 3, ""},
		{"dpkg-query -W, spaces", "bash 5.2.15-2+b7\ncoreutils   9.1-1\n", InventoryDpkg, 2, ""},
		{"dpkg-query -l", dpkgL, InventoryDpkg, 3, ""},
		{"with a UTF-8 BOM", "\xef\xbb\xbf" + dpkgW, InventoryDpkg, 3, ""},
		{"blank lines", "\n\nbash-5.1.8-9.el9.x86_64\n\n\n", InventoryRPM, 1, ""},

		{"empty", "", "", 0, "empty"},
		{"only spaces", " \n\t\n", "", 0, "empty"},
		{"json, neither sbom", `{"name":"x"}`, "", 0, "neither SPDX"},
		{"json, broken", `{"spdxVersion":`, "", 0, "not valid JSON"},
		{"json array", `[{"name":"bash"}]`, "", 0, "neither `rpm -qa`"},
		{"binary", "\x00\x01\xff\xfe", "", 0, "neither JSON nor text"},
		{"names without versions", "bash\ncoreutils\n", "", 0, "line 1"},
		{"dpkg without a version", "bash\tnone\n", "", 0, "line 1"},
		{"mixed", "bash-5.1.8-9.el9.x86_64\ncoreutils 9.1-1\n", "", 0, "mixes"},
		{"dpkg -l header only", strings.Join(strings.Split(dpkgL, "\n")[:5], "\n"), "", 0, "without packages"},
		{"dpkg -l, bad line", dpkgL + "garbage\n", "", 0, "line 9"},
		{"long bad line is cut", strings.Repeat("x", 500), "", 0, "…"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			format, n, err := ParseInventory([]byte(tc.data))
			if tc.refuse == "" {
				if err != nil || format != tc.format || n != tc.packages {
					t.Fatalf("ParseInventory = %q, %d, %v; want %q, %d", format, n, err, tc.format, tc.packages)
				}
				return
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.refuse) {
				t.Fatalf("ParseInventory = %q, %d, %v; want a refusal containing %q", format, n, err, tc.refuse)
			}
		})
	}
}

// TestAddKeepsInventoryVerbatim: the inventory is kept byte for byte under FILE.d/software,
// named by its sha512, and the image entry and the history reference it by that sha512.
func TestAddKeepsInventoryVerbatim(t *testing.T) {
	for _, tc := range []struct {
		name, data, format, ext string
	}{
		{"spdx", spdxDoc, InventorySPDX, ".json"},
		{"cyclonedx", cycloneDXDoc, InventoryCycloneDX, ".json"},
		{"rpm", strings.ReplaceAll(rpmQA, "\n", "\r\n"), InventoryRPM, ".txt"},
		{"dpkg", dpkgL, InventoryDpkg, ".txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _ := newWorkspace(t)
			dir := filepath.Dir(w.List)
			inv := writeFile(t, dir, "inventory", []byte(tc.data))
			res, err := w.Add(AddOptions{Image: rawImage(t, dir, "a.raw"), Title: "A", Version: "1", Software: inv})
			if err != nil {
				t.Fatal(err)
			}
			sum := sha512.Sum512([]byte(tc.data))
			hexsum := hex.EncodeToString(sum[:])
			if res.Software == nil || res.Software.SHA512 != hexsum || res.Software.Format != tc.format {
				t.Fatalf("software = %+v", res.Software)
			}
			kept := filepath.Join(w.Dir(), "software", hexsum+tc.ext)
			got, err := os.ReadFile(kept)
			if err != nil || !bytes.Equal(got, []byte(tc.data)) {
				t.Fatalf("kept inventory %s: %v, equal %v", kept, err, bytes.Equal(got, []byte(tc.data)))
			}
			if res.Software.Path != filepath.Join("image.list.d", "software", hexsum+tc.ext) {
				t.Errorf("path %q is not relative to the list's directory", res.Software.Path)
			}
			img := readList(t, w).Images[0]
			var ref, format string
			json.Unmarshal(img.Raw[KeySoftwareSHA512], &ref)
			json.Unmarshal(img.Raw[KeySoftwareFormat], &format)
			if ref != hexsum || format != tc.format {
				t.Errorf("list references %q (%q), want %q (%q)", ref, format, hexsum, tc.format)
			}
			recs, _ := w.History()
			if last := recs[len(recs)-1]; last.Software == nil || last.Software.SHA512 != hexsum {
				t.Errorf("history: %+v", last)
			}
		})
	}
}

func TestAddRefusesBadInventory(t *testing.T) {
	w, _ := newWorkspace(t)
	dir := filepath.Dir(w.List)
	inv := writeFile(t, dir, "inventory", []byte("not an inventory\n"))
	before, _ := os.ReadFile(w.List)
	if _, err := w.Add(AddOptions{Image: rawImage(t, dir, "a.raw"), Title: "A", Version: "1", Software: inv}); !errors.Is(err, ErrRefused) {
		t.Fatalf("want a refusal, got %v", err)
	}
	after, _ := os.ReadFile(w.List)
	recs, _ := w.History()
	if !bytes.Equal(before, after) || len(recs) != 1 {
		t.Fatalf("a refused add changed the list or the history (%d records)", len(recs))
	}
}
