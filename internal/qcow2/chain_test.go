package qcow2

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// qemuImg returns a function that runs the real qemu-img for a (sub)test. Without qemu-img
// (Debian's qemu-utils) the test is skipped, except when VMGATE_INTEGRATION=1, as in CI,
// where a missing tool fails the test instead of hiding it.
func qemuImg(t *testing.T) func(t *testing.T, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("qemu-img")
	if err != nil {
		if os.Getenv("VMGATE_INTEGRATION") == "1" {
			t.Fatalf("qemu-img is missing (apt-get install qemu-utils): %v", err)
		}
		t.Skip("qemu-img is missing (apt-get install qemu-utils); VMGATE_INTEGRATION=1 makes this a failure")
	}
	return func(t *testing.T, args ...string) {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// qemuChain is what `qemu-img info --backing-chain` says about the chain of top, the
// reference Chain is checked against.
func qemuChain(t *testing.T, top string) []Layer {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "--backing-chain", "--output=json", "-U", top).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", top, err)
	}
	var infos []struct {
		Filename      string `json:"filename"`
		Format        string `json:"format"`
		BackingFile   string `json:"backing-filename"`
		BackingFormat string `json:"backing-filename-format"`
	}
	if err := json.Unmarshal(out, &infos); err != nil {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}
	var layers []Layer
	for _, i := range infos {
		layers = append(layers, Layer{Path: i.Filename, Format: i.Format, BackingFile: i.BackingFile, BackingFormat: i.BackingFormat})
	}
	return layers
}

func wantLayers(t *testing.T, got, want []Layer) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d layers %+v\nwant %d %+v", len(got), got, len(want), want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("layer %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// chain runs Chain, fails the test on an error, and checks the result against qemu-img's
// own reading of the chain before returning it.
func chain(t *testing.T, top string, opts Options) []Layer {
	t.Helper()
	got, err := Chain(top, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantLayers(t, got, qemuChain(t, top))
	return got
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func wantError(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q, want one containing %q", err, w)
		}
	}
}

func TestChainQemuImg(t *testing.T) {
	img := qemuImg(t)

	t.Run("raw image", func(t *testing.T) {
		base := filepath.Join(t.TempDir(), "base.raw")
		img(t, "create", "-q", "-f", "raw", base, "1M")
		wantLayers(t, chain(t, base, Options{}), []Layer{{Path: base, Format: "raw"}})
	})

	t.Run("two layers, relative backing name", func(t *testing.T) {
		dir := t.TempDir()
		base, top := filepath.Join(dir, "base.raw"), filepath.Join(dir, "top.qcow2")
		img(t, "create", "-q", "-f", "raw", base, "1M")
		img(t, "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", top)
		wantLayers(t, chain(t, top, Options{Format: "qcow2"}), []Layer{
			{Path: top, Format: "qcow2", BackingFile: "base.raw", BackingFormat: "raw"},
			{Path: base, Format: "raw"},
		})
	})

	t.Run("three layers, absolute backing names", func(t *testing.T) {
		dir := t.TempDir()
		base, mid, top := filepath.Join(dir, "base.raw"), filepath.Join(dir, "mid.qcow2"), filepath.Join(dir, "top.qcow2")
		img(t, "create", "-q", "-f", "raw", base, "1M")
		img(t, "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", mid)
		img(t, "create", "-q", "-f", "qcow2", "-b", mid, "-F", "qcow2", top)
		wantLayers(t, chain(t, top, Options{}), []Layer{
			{Path: top, Format: "qcow2", BackingFile: mid, BackingFormat: "qcow2"},
			{Path: mid, Format: "qcow2", BackingFile: base, BackingFormat: "raw"},
			{Path: base, Format: "raw"},
		})
	})

	t.Run("three layers, relative names across directories", func(t *testing.T) {
		dir := t.TempDir()
		base := filepath.Join(dir, "images/base/base.raw")
		mid := filepath.Join(dir, "images/overlays/mid.qcow2")
		top := filepath.Join(dir, "vm/top.qcow2")
		for _, d := range []string{"images/base", "images/overlays", "vm"} {
			os.MkdirAll(filepath.Join(dir, d), 0o755)
		}
		img(t, "create", "-q", "-f", "raw", base, "1M")
		img(t, "create", "-q", "-f", "qcow2", "-b", "../base/base.raw", "-F", "raw", mid)
		img(t, "create", "-q", "-f", "qcow2", "-b", "../images/overlays/mid.qcow2", "-F", "qcow2", top)
		// Paths are joined as libvirt joins them, not cleaned.
		wantLayers(t, chain(t, top, Options{}), []Layer{
			{Path: top, Format: "qcow2", BackingFile: "../images/overlays/mid.qcow2", BackingFormat: "qcow2"},
			{Path: dir + "/vm/../images/overlays/mid.qcow2", Format: "qcow2", BackingFile: "../base/base.raw", BackingFormat: "raw"},
			{Path: dir + "/vm/../images/overlays/../base/base.raw", Format: "raw"},
		})
	})

	t.Run("version 2 images", func(t *testing.T) {
		dir := t.TempDir()
		base, mid, top := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "mid.qcow2"), filepath.Join(dir, "top.qcow2")
		img(t, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", base, "1M")
		img(t, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "base.qcow2", "-F", "qcow2", mid)
		img(t, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", mid, "-F", "qcow2", top)
		wantLayers(t, chain(t, top, Options{Format: "qcow2"}), []Layer{
			{Path: top, Format: "qcow2", BackingFile: mid, BackingFormat: "qcow2"},
			{Path: mid, Format: "qcow2", BackingFile: "base.qcow2", BackingFormat: "qcow2"},
			{Path: base, Format: "qcow2"},
		})
		for _, p := range []string{base, mid, top} {
			if h := header(t, p); h.Version != 2 {
				t.Errorf("%s: version %d, want 2", p, h.Version)
			}
		}
	})

	for _, size := range []string{"512", "2M"} {
		t.Run("cluster size "+size, func(t *testing.T) {
			dir := t.TempDir()
			base, top := filepath.Join(dir, "base.raw"), filepath.Join(dir, "top.qcow2")
			img(t, "create", "-q", "-f", "raw", base, "1M")
			img(t, "create", "-q", "-f", "qcow2", "-o", "cluster_size="+size, "-b", base, "-F", "raw", top)
			wantLayers(t, chain(t, top, Options{}), []Layer{
				{Path: top, Format: "qcow2", BackingFile: base, BackingFormat: "raw"},
				{Path: base, Format: "raw"},
			})
		})
	}

	t.Run("relative disk path", func(t *testing.T) {
		dir := t.TempDir()
		img(t, "create", "-q", "-f", "raw", filepath.Join(dir, "base.raw"), "1M")
		img(t, "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", filepath.Join(dir, "top.qcow2"))
		t.Chdir(dir)
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Chain("top.qcow2", Options{})
		if err != nil {
			t.Fatal(err)
		}
		wantLayers(t, got, []Layer{
			{Path: wd + "/top.qcow2", Format: "qcow2", BackingFile: "base.raw", BackingFormat: "raw"},
			{Path: wd + "/base.raw", Format: "raw"},
		})
	})

	t.Run("symbolic link and ..", func(t *testing.T) {
		// link -> real/sub, so link/.. is real, not the directory that holds link. Cleaning
		// the path would pick the decoy; the kernel, libvirt and QEMU pick real/base.raw.
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "real/sub"), 0o755)
		if err := os.Symlink("real/sub", filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		img(t, "create", "-q", "-f", "raw", filepath.Join(dir, "real/base.raw"), "1M")
		img(t, "create", "-q", "-f", "raw", filepath.Join(dir, "base.raw"), "2M") // the decoy
		img(t, "create", "-q", "-f", "qcow2", "-b", "../base.raw", "-F", "raw", filepath.Join(dir, "real/sub/top.qcow2"))
		top := filepath.Join(dir, "link/top.qcow2")
		got := chain(t, top, Options{})
		wantLayers(t, got, []Layer{
			{Path: top, Format: "qcow2", BackingFile: "../base.raw", BackingFormat: "raw"},
			{Path: dir + "/link/../base.raw", Format: "raw"},
		})
		if !sameFile(t, got[1].Path, filepath.Join(dir, "real/base.raw")) {
			t.Errorf("base %s is not real/base.raw", got[1].Path)
		}
	})

	t.Run("disk opened as raw", func(t *testing.T) {
		// libvirt opens the file as <driver type> says: a qcow2 file given as raw is a raw
		// disk whose bytes happen to be a qcow2 image, and its header is not followed.
		dir := t.TempDir()
		img(t, "create", "-q", "-f", "raw", filepath.Join(dir, "base.raw"), "1M")
		top := filepath.Join(dir, "top.qcow2")
		img(t, "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", top)
		got, err := Chain(top, Options{Format: "raw"})
		if err != nil {
			t.Fatal(err)
		}
		wantLayers(t, got, []Layer{{Path: top, Format: "raw"}})
	})

	t.Run("raw file given as qcow2", func(t *testing.T) {
		base := filepath.Join(t.TempDir(), "base.raw")
		img(t, "create", "-q", "-f", "raw", base, "1M")
		_, err := Chain(base, Options{Format: "qcow2"})
		wantError(t, err, "disk image "+base, "is not a qcow2 image, though its format is given as qcow2")
	})

	t.Run("missing backing file", func(t *testing.T) {
		dir := t.TempDir()
		base, top := filepath.Join(dir, "base.raw"), filepath.Join(dir, "top.qcow2")
		img(t, "create", "-q", "-f", "raw", base, "1M")
		img(t, "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", top)
		os.Remove(base)
		_, err := Chain(top, Options{})
		wantError(t, err, `backing file "base.raw" of `+top, base, "no such file or directory")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error %v is not fs.ErrNotExist", err)
		}
	})

	t.Run("missing disk image", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "gone.qcow2")
		_, err := Chain(missing, Options{})
		wantError(t, err, "disk image "+missing, "no such file or directory")
	})

	t.Run("loop made with qemu-img rebase", func(t *testing.T) {
		dir := t.TempDir()
		a, b := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
		img(t, "create", "-q", "-f", "qcow2", a, "1M")
		img(t, "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b)
		img(t, "rebase", "-q", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a)
		_, err := Chain(b, Options{})
		wantError(t, err, "backing chain loops back to "+b)
	})

	t.Run("external data file", func(t *testing.T) {
		dir := t.TempDir()
		top := filepath.Join(dir, "top.qcow2")
		img(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "data.raw"), top, "1M")
		_, err := Chain(top, Options{})
		wantError(t, err, "not supported: the image keeps its data in an external data file")
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("error %v is not ErrUnsupported", err)
		}
	})

	for _, format := range []string{"vmdk", "vhdx", "vpc", "qed", "vdi"} {
		t.Run(format+" image", func(t *testing.T) {
			dir := t.TempDir()
			other := filepath.Join(dir, "base."+format)
			img(t, "create", "-q", "-f", format, other, "1M")

			// Probed, given, and recorded by a parent: refused every time, never read as raw.
			_, err := Chain(other, Options{})
			wantError(t, err, "disk image "+other, `not supported: format "`+format+`"`)
			_, err = Chain(other, Options{Format: format})
			wantError(t, err, `not supported: format "`+format+`"`)

			top := filepath.Join(dir, "top.qcow2")
			img(t, "create", "-q", "-f", "qcow2", "-b", "base."+format, "-F", format, top)
			_, err = Chain(top, Options{})
			wantError(t, err, `backing file "base.`+format+`" of `+top, `not supported: format "`+format+`"`)
			if !errors.Is(err, ErrUnsupported) {
				t.Errorf("error %v is not ErrUnsupported", err)
			}
		})
	}

	t.Run("VMDK descriptor with a parent", func(t *testing.T) {
		dir := t.TempDir()
		img(t, "create", "-q", "-f", "vmdk", filepath.Join(dir, "parent.vmdk"), "1M")
		child := filepath.Join(dir, "child.vmdk")
		img(t, "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "-b", "parent.vmdk", "-F", "vmdk", child)
		_, err := Chain(child, Options{})
		wantError(t, err, `not supported: format "vmdk"`)
	})

	for _, name := range []string{"nbd://localhost:10809/export", `json:{"file":{"driver":"file","filename":"/etc/shadow"}}`} {
		t.Run("protocol backing name "+name[:4], func(t *testing.T) {
			top := filepath.Join(t.TempDir(), "top.qcow2")
			img(t, "create", "-q", "-f", "qcow2", "-u", "-b", name, "-F", "raw", top, "1M")
			_, err := Chain(top, Options{})
			wantError(t, err, "backing file "+strconv.Quote(name)+" of "+top, "not supported", "protocol string, not a file path")
		})
	}
}

// header parses the header of the qcow2 file at path.
func header(t *testing.T, path string) *Header {
	t.Helper()
	b, _, err := readStart(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(fa, fb)
}

// TestChainHandBuilt covers what qemu-img will not write: loops, overlong chains, broken
// headers, hostile backing names.
func TestChainHandBuilt(t *testing.T) {
	raw := []byte("raw disk bytes")

	t.Run("loop", func(t *testing.T) {
		dir := t.TempDir()
		a := writeFile(t, filepath.Join(dir, "a.qcow2"), build(3, "b.qcow2", "qcow2"))
		b := writeFile(t, filepath.Join(dir, "b.qcow2"), build(3, "a.qcow2", "qcow2"))
		_, err := Chain(a, Options{})
		wantError(t, err, `backing file "a.qcow2" of `+b, "backing chain loops back to "+a)
	})

	t.Run("image backed by itself", func(t *testing.T) {
		a := writeFile(t, filepath.Join(t.TempDir(), "a.qcow2"), build(2, "a.qcow2", "qcow2"))
		_, err := Chain(a, Options{})
		wantError(t, err, "backing chain loops")
	})

	t.Run("loop through a hard link", func(t *testing.T) {
		dir := t.TempDir()
		a := writeFile(t, filepath.Join(dir, "a.qcow2"), build(3, "alias.qcow2", "qcow2"))
		if err := os.Link(a, filepath.Join(dir, "alias.qcow2")); err != nil {
			t.Fatal(err)
		}
		_, err := Chain(a, Options{})
		wantError(t, err, "backing chain loops: "+filepath.Join(dir, "alias.qcow2")+" is the same file as "+a)
	})

	// layers writes a chain of n files: n-1 qcow2 images over a raw base.
	layers := func(t *testing.T, n int) string {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "layer0"), raw)
		for i := 1; i < n; i++ {
			format := "qcow2"
			if i == 1 {
				format = "raw"
			}
			writeFile(t, filepath.Join(dir, "layer"+strconv.Itoa(i)), build(3, "layer"+strconv.Itoa(i-1), format))
		}
		return filepath.Join(dir, "layer"+strconv.Itoa(n-1))
	}

	t.Run("16 layers", func(t *testing.T) {
		got, err := Chain(layers(t, 16), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 16 || got[15].Format != "raw" {
			t.Fatalf("got %d layers, the last %+v", len(got), got[len(got)-1])
		}
	})

	t.Run("17 layers", func(t *testing.T) {
		top := layers(t, 17)
		_, err := Chain(top, Options{})
		wantError(t, err, `backing file "layer0" of `, "backing chain of "+top+" is longer than 16 layers")
	})

	t.Run("MaxDepth", func(t *testing.T) {
		top := layers(t, 3)
		_, err := Chain(top, Options{MaxDepth: 2})
		wantError(t, err, "longer than 2 layers")
		if _, err := Chain(top, Options{MaxDepth: 3}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("oversized backing name", func(t *testing.T) {
		top := writeFile(t, filepath.Join(t.TempDir(), "top.qcow2"), build(3, strings.Repeat("x", 1024), "raw"))
		_, err := Chain(top, Options{})
		wantError(t, err, "disk image "+top, "backing file name is 1024 bytes long, more than 1023")
	})

	t.Run("backing name offset beyond the file", func(t *testing.T) {
		top := writeFile(t, filepath.Join(t.TempDir(), "top.qcow2"), put64(build(3, "base", "raw"), 8, 8000))
		_, err := Chain(top, Options{})
		wantError(t, err, "disk image "+top, "lies beyond the end of the file (4096 bytes)")
	})

	t.Run("truncated header", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "base.qcow2"), build(3, "", "")[:60])
		top := writeFile(t, filepath.Join(dir, "top.qcow2"), build(3, "base.qcow2", "qcow2"))
		_, err := Chain(top, Options{})
		wantError(t, err, `backing file "base.qcow2" of `+top, "truncated: 60 bytes")
	})

	t.Run("unknown incompatible feature", func(t *testing.T) {
		top := writeFile(t, filepath.Join(t.TempDir(), "top.qcow2"), put64(build(3, "", ""), 72, 1<<20))
		_, err := Chain(top, Options{})
		wantError(t, err, "not supported: unknown incompatible features 0x100000")
	})

	for _, name := range []string{
		"nbd:localhost:10809",
		"nbd://localhost/export",
		`json:{"file.driver":"file","file.filename":"/etc/shadow"}`,
		"http://example.org/base.img",
		"https://example.org/base.img",
		"rbd:pool/image",
		"file:/var/lib/images/base.raw",
		"base:raw",
	} {
		t.Run("protocol backing name "+name, func(t *testing.T) {
			top := writeFile(t, filepath.Join(t.TempDir(), "top.qcow2"), build(3, name, "raw"))
			_, err := Chain(top, Options{})
			proto, _, _ := strings.Cut(name, ":")
			wantError(t, err, "of "+top+": not supported: a "+strconv.Quote(proto)+" protocol string, not a file path")
			if !errors.Is(err, ErrUnsupported) {
				t.Errorf("error %v is not ErrUnsupported", err)
			}
		})
	}

	t.Run("file names with a colon", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "a:b"), raw)
		for _, name := range []string{"./a:b", dir + "/a:b"} {
			top := writeFile(t, filepath.Join(dir, "top.qcow2"), build(3, name, "raw"))
			got, err := Chain(top, Options{})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if len(got) != 2 || !sameFile(t, got[1].Path, filepath.Join(dir, "a:b")) {
				t.Fatalf("%s: got %+v", name, got)
			}
		}
	})

	t.Run("backing format not recorded, raw backing file", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "base"), raw)
		top := writeFile(t, filepath.Join(dir, "top.qcow2"), build(3, "base", ""))
		got, err := Chain(top, Options{})
		if err != nil {
			t.Fatal(err)
		}
		wantLayers(t, got, []Layer{
			{Path: top, Format: "qcow2", BackingFile: "base"},
			{Path: dir + "/base", Format: "raw"},
		})
	})

	t.Run("backing format not recorded, qcow2 backing file without a backing file", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "base"), build(2, "", ""))
		top := writeFile(t, filepath.Join(dir, "top.qcow2"), build(3, "base", ""))
		got, err := Chain(top, Options{})
		if err != nil {
			t.Fatal(err)
		}
		wantLayers(t, got, []Layer{
			{Path: top, Format: "qcow2", BackingFile: "base"},
			{Path: dir + "/base", Format: "qcow2"},
		})
	})

	t.Run("backing format not recorded, qcow2 backing file with a backing file", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "base"), raw)
		writeFile(t, filepath.Join(dir, "mid"), build(3, "base", "raw"))
		top := writeFile(t, filepath.Join(dir, "top.qcow2"), build(3, "mid", ""))
		_, err := Chain(top, Options{})
		wantError(t, err, top+" does not record the format of its backing file", "libvirt refuses such a chain")
	})

	t.Run("backing recorded as raw is not followed", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "mid"), build(3, "/nonexistent", "raw"))
		top := writeFile(t, filepath.Join(dir, "top.qcow2"), build(3, "mid", "raw"))
		got, err := Chain(top, Options{})
		if err != nil {
			t.Fatal(err)
		}
		wantLayers(t, got, []Layer{
			{Path: top, Format: "qcow2", BackingFile: "mid", BackingFormat: "raw"},
			{Path: dir + "/mid", Format: "raw"},
		})
	})

	t.Run("backing format recorded as luks", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "base"), raw)
		top := writeFile(t, filepath.Join(dir, "top.qcow2"), build(3, "base", "luks"))
		_, err := Chain(top, Options{})
		wantError(t, err, `backing file "base" of `+top, `not supported: format "luks"`)
	})

	t.Run("FIFO as backing file", func(t *testing.T) {
		dir := t.TempDir()
		if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
			t.Fatal(err)
		}
		top := writeFile(t, filepath.Join(dir, "top.qcow2"), build(3, "fifo", "raw"))
		_, err := Chain(top, Options{})
		wantError(t, err, "fifo is not a regular file or block device")
	})

	for _, name := range []string{"/dev/zero", "/tmp"} {
		t.Run("backing file "+name, func(t *testing.T) {
			top := writeFile(t, filepath.Join(t.TempDir(), "top.qcow2"), build(3, name, "raw"))
			_, err := Chain(top, Options{})
			wantError(t, err, name+" is not a regular file or block device")
		})
	}

	t.Run("empty path", func(t *testing.T) {
		_, err := Chain("", Options{})
		wantError(t, err, "empty path")
	})
}
