package endorse

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/vmgate/vmgate/internal/atomicfile"
	"github.com/vmgate/vmgate/internal/policy"
)

// Keys vmgate adds to an image entry, in a namespace of its own as HEPiX lists allow. Sites
// need not understand them: policy.Parse keeps unknown keys and ignores them.
const (
	KeySoftwareSHA512 = "vmgate:software:sha512" // sha512 of the software inventory, verbatim
	KeySoftwareFormat = "vmgate:software:format" // spdx-json, cyclonedx-json, rpm-qa, dpkg-query
)

// document is a list being edited: the raw keys policy.Parse kept, which are changed in place
// and rendered again, so that keys endorse does not know of are kept.
type document struct {
	top    map[string]json.RawMessage // keys beside hv:imagelist, rarely any
	list   map[string]json.RawMessage // hv:imagelist without hv:images
	images []map[string]json.RawMessage
	parsed *policy.List // what policy.Parse read from the bytes last loaded or rendered
}

// parseDocument reads a list with vmgate's own parser. A list it cannot parse is refused:
// endorse never writes what a site would refuse as malformed.
func parseDocument(data []byte) (*document, error) {
	l, err := policy.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err) // Parse accepted it, so this is unexpected
	}
	delete(top, "hv:imagelist")
	d := &document{top: top, list: make(map[string]json.RawMessage, len(l.Raw)), parsed: l}
	for k, v := range l.Raw {
		if k != "hv:images" {
			d.list[k] = v
		}
	}
	for _, img := range l.Images {
		d.images = append(d.images, img.Raw)
	}
	return d, nil
}

// loadDocument reads and parses the workspace's list.
func (w *Workspace) loadDocument() (*document, []byte, error) {
	data, err := os.ReadFile(w.List)
	if err != nil {
		return nil, nil, fmt.Errorf("list: %w", err)
	}
	d, err := parseDocument(data)
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", w.List, err)
	}
	return d, data, nil
}

// render writes the document as indented JSON with sorted keys and parses the result, so
// that what is written is exactly what vmgate sync will read.
func (d *document) render() ([]byte, error) {
	images := make([]map[string]any, len(d.images))
	for i, img := range d.images {
		images[i] = map[string]any{"hv:image": img}
	}
	list := make(map[string]any, len(d.list)+1)
	for k, v := range d.list {
		list[k] = v
	}
	list["hv:images"] = images
	top := make(map[string]any, len(d.top)+1)
	for k, v := range d.top {
		top[k] = v
	}
	top["hv:imagelist"] = list
	out, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render list: %w", err)
	}
	out = append(out, '\n')
	l, err := policy.Parse(out)
	if err != nil {
		return nil, fmt.Errorf("%w: the edited list would not parse: %w", ErrRefused, err)
	}
	d.parsed = l
	return out, nil
}

// raw encodes a value for one key; the values endorse sets are strings and numbers, which
// always encode.
func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("endorse: encode %T: %v", v, err))
	}
	return b
}

func (d *document) setList(key string, v any) { d.list[key] = raw(v) }

func hepixTime(t time.Time) string { return t.UTC().Format(policy.TimeLayout) }

// findImage returns the index of the image with the identifier, or -1.
func (d *document) findImage(identifier string) int {
	for i, img := range d.parsed.Images {
		if img.Identifier == identifier {
			return i
		}
	}
	return -1
}

// writeList replaces the list atomically. Lists are public: 0644.
func (w *Workspace) writeList(data []byte) error {
	return atomicfile.WriteFile(w.List, data, 0o644)
}
