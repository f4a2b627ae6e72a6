package admission

import (
	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/trace"
)

// Describe is what a trace record says of the domain itself: its name, uuid and MACs, and
// for a Nova instance the instance, its owner, its addresses and its Glance image. The hook
// and `vmgate terminate` both build their records from it, so the two say the same of a VM.
func Describe(d *domain.Domain) trace.Record {
	rec := trace.Record{Domain: trace.Domain{Name: d.Name, UUID: d.UUID}}
	for _, i := range d.Interfaces {
		if i.MAC != "" {
			rec.MACs = append(rec.MACs, i.MAC)
		}
	}
	if n := d.Nova; n != nil {
		rec.Instance = &trace.Instance{ID: d.UUID, Name: n.Name}
		if n.UserID != "" || n.UserName != "" {
			rec.User = &trace.Owner{ID: n.UserID, Name: n.UserName}
		}
		if n.ProjectID != "" || n.ProjectName != "" {
			rec.Project = &trace.Owner{ID: n.ProjectID, Name: n.ProjectName}
		}
		for _, p := range n.Ports {
			for _, ip := range p.IPs {
				rec.IPs = append(rec.IPs, trace.IP{Address: ip.Address.String(), Type: ip.Type})
			}
		}
		if n.Root != nil && n.Root.Type == "image" {
			rec.Images = []trace.Image{{GlanceID: n.Root.ID}}
		}
	}
	return rec
}

// TraceImages is what a trace record says of each disk the decision judged, and of the
// endorsement that vouched for it or last spoke of it; nil when no disk was judged.
func (dec *Decision) TraceImages() []trace.Image {
	var ims []trace.Image
	for _, d := range dec.Disks {
		im := trace.Image{Disk: d.Target, Source: d.Source, GlanceID: d.GlanceID, SHA512: d.SHA512, Status: d.Status}
		if e := d.Image; e != nil {
			im.Identifier, im.Title, im.Version = e.Identifier, e.Title, e.Version
			im.Subscription, im.List, im.ListVersion, im.Endorser = e.Subscription, e.List, e.ListVersion, e.Endorser
		}
		ims = append(ims, im)
	}
	return ims
}

// TraceBlock is what a trace record says of one of the site's blocks; nil for nil.
func TraceBlock(b *snapshot.Block) *trace.Block {
	if b == nil {
		return nil
	}
	tb := &trace.Block{Kind: b.Kind, Target: b.Target, Reason: b.Reason, By: b.By, Source: b.Source}
	if !b.Until.IsZero() {
		until := b.Until.UTC()
		tb.Until = &until
	}
	return tb
}
