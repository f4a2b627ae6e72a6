package endorse

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/vmgate/vmgate/internal/journal"
)

// The seed corpora are in testdata/fuzz/<target>/, which go test runs every time; fuzz with
// e.g. go test -run '^$' -fuzz FuzzParseInventory -fuzztime 30s ./internal/endorse/.

// FuzzParseInventory: an inventory is whatever the endorser's tooling produced. Parsing never
// panics, and what it accepts has a known format and, for text, at least one package.
func FuzzParseInventory(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		format, n, err := ParseInventory(data)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("an error that is not a refusal: %v", err)
			}
			return
		}
		switch format {
		case InventorySPDX, InventoryCycloneDX:
		case InventoryRPM, InventoryDpkg:
			if n < 1 {
				t.Fatalf("%s with %d packages accepted", format, n)
			}
		default:
			t.Fatalf("unknown format %q", format)
		}
	})
}

// FuzzDetectFormat: an image's first bytes are anything. Detection never panics and names
// one of the four formats or refuses.
func FuzzDetectFormat(f *testing.F) {
	f.Fuzz(func(t *testing.T, head []byte) {
		format, err := DetectFormat(head)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("an error that is not a refusal: %v", err)
			}
			return
		}
		switch format {
		case FormatQCOW2, FormatRaw, FormatVMDK, FormatOVA:
		default:
			t.Fatalf("unknown format %q", format)
		}
	})
}

// FuzzHistoryRecord: the history file is read back by history and verify-history, and
// anyone with write access to it can append a well-chained entry of any content. Such an
// entry never makes them panic, and, on a list it does not describe, never makes
// verify-history pass.
func FuzzHistoryRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var buf bytes.Buffer
		if json.Compact(&buf, data) != nil || bytes.ContainsAny(buf.Bytes(), "\r\n") || buf.Len() > 1<<16 {
			return // the journal takes only one line of JSON
		}
		dir := t.TempDir()
		w := &Workspace{List: filepath.Join(dir, "image.list"), Actor: testActor()}
		if err := w.Init(InitOptions{Identifier: testListID, Title: "t", EndorserDN: "/CN=a", EndorserCA: "/CN=b"}); err != nil {
			t.Fatal(err)
		}
		j, err := journal.Open(w.HistoryPath(), journal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = j.Append(buf.Bytes())
		j.Close()
		if err != nil {
			return
		}
		recs, err := w.History()
		if err != nil {
			return // not a change: history says so
		}
		rep, err := w.VerifyHistory()
		if err != nil {
			t.Fatalf("verify-history fails to read what history read: %v", err)
		}
		if rep.Intact() {
			// An init in the middle, an add the list lacks, a remove of an image never added,
			// a sign without its archive: none of them can be right.
			t.Fatalf("verify-history passes after a forged %q entry: %+v", recs[len(recs)-1].Action, rep)
		}
	})
}
