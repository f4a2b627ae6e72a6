package adopt

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

type fakeLister []Domain

func (f fakeLister) Domains(_ context.Context, names []string) ([]Domain, error) { return f, nil }

func TestAdopt(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	write := func(name, content string) (string, string) {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		h := sha512.Sum512([]byte(content))
		return p, hex.EncodeToString(h[:])
	}
	good, sha := write("good.raw", "good")
	bad, _ := write("bad.raw", "bad")
	snap := filepath.Join(dir, "snapshot.db")
	im := snapshot.Image{Subscription: "s", Status: snapshot.Endorsed, Since: now.Add(-time.Hour), Expires: now.Add(time.Hour)}
	if err := snapshot.Write(snap, snapshot.Meta{Serial: 1, Created: now, Expires: now.Add(time.Hour)}, []snapshot.Entry{{SHA512: sha, Images: []snapshot.Image{im}}}, nil); err != nil {
		t.Fatal(err)
	}
	s, err := snapshot.Open(snap)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mem := admission.NewMemory(filepath.Join(dir, "admitted"))
	j := &admission.Judge{Snapshot: s, Hasher: hasher{}, Config: config.Admission{Mode: config.ModeEnforce}, Now: now, Memory: &mem}
	xml := func(name, uuid, disk string) string {
		return `<domain type='qemu'><name>` + name + `</name><uuid>` + uuid + `</uuid><devices><disk type='file'><driver type='raw'/><source file='` + disk + `'/><target dev='vda'/></disk></devices></domain>`
	}
	l := fakeLister{
		{Name: "ok", UUID: "11111111-2222-4333-8444-555555555555", XML: xml("ok", "11111111-2222-4333-8444-555555555555", good)},
		{Name: "bad", UUID: "11111111-2222-4333-8444-666666666666", XML: xml("bad", "11111111-2222-4333-8444-666666666666", bad)},
	}
	res, err := Adopt(context.Background(), l, nil, j, mem, Options{DryRun: true, Now: now})
	if err != nil || len(res) != 2 || !res[0].Adopted || res[1].Adopted || !strings.Contains(res[1].Reason, "no subscribed list endorses it") {
		t.Fatalf("dry run: %+v, %v", res, err)
	}
	if a, _ := mem.Load(l[0].UUID); a != nil {
		t.Fatal("the dry run remembered")
	}
	if _, err := Adopt(context.Background(), l, nil, j, mem, Options{Now: now}); err != nil {
		t.Fatal(err)
	}
	a, err := mem.Load(l[0].UUID)
	if err != nil || a == nil || a.Op != admission.OpAdopt || len(a.Layers) != 1 || a.Layers[0].Path != good {
		t.Fatalf("memory: %+v, %v", a, err)
	}
	if a, _ := mem.Load(l[1].UUID); a != nil {
		t.Fatal("a domain on an unendorsed base was adopted")
	}
}

type hasher struct{}

func (hasher) SHA512(p string) (string, error) {
	b, err := os.ReadFile(p)
	h := sha512.Sum512(b)
	return hex.EncodeToString(h[:]), err
}
