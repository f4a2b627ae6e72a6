package trace

import "time"

// ECS returns the record as an Elastic Common Schema document, the form `vmgate trace query
// --format ecs` prints and the shipper sends: ECS names where ECS has the field, vmgate.* for
// the rest. seq, hash and prev are the record's place in the journal's hash chain; they travel
// with it so that a SIEM holding the records can check the chain without the journal.
//
// It is a pure function of its arguments: the same record always gives the same document.
// Empty values are left out. The document is nested (`{"event":{"action":…}}`), the form
// Elasticsearch stores and every ECS consumer reads, rather than dotted keys.
func (r Record) ECS(seq uint64, hash, prev string) map[string]any {
	doc := map[string]any{
		"@timestamp": r.Time.UTC().Format(time.RFC3339Nano),
		"ecs":        map[string]any{"version": ECSVersion},
	}
	event := map[string]any{"kind": "event", "module": "vmgate", "dataset": "vmgate.trace"}
	put(event, "action", r.Event)
	put(event, "outcome", r.Outcome)
	put(event, "reason", r.Reason)
	doc["event"] = event
	if r.Host != "" {
		doc["host"] = map[string]any{"name": r.Host}
	}

	var related struct{ ip, hash, user []string }
	if u := r.User; u != nil {
		user := map[string]any{}
		put(user, "id", u.ID)
		put(user, "name", u.Name)
		if len(user) > 0 {
			doc["user"] = user
		}
		related.user = appendNew(appendNew(related.user, u.ID), u.Name)
	}
	if a := r.Actor; a != nil {
		related.user = appendNew(related.user, a.Name)
	}
	cloud := map[string]any{}
	if i := r.Instance; i != nil {
		cloud["provider"] = "openstack" // only Nova's metadata fills Instance
		inst := map[string]any{}
		put(inst, "id", i.ID)
		put(inst, "name", i.Name)
		if len(inst) > 0 {
			cloud["instance"] = inst
		}
	}
	if p := r.Project; p != nil {
		proj := map[string]any{}
		put(proj, "id", p.ID)
		put(proj, "name", p.Name)
		if len(proj) > 0 {
			cloud["project"] = proj
		}
	}
	if len(cloud) > 0 {
		doc["cloud"] = cloud
	}

	for _, ip := range r.IPs {
		related.ip = appendNew(related.ip, ip.Address)
	}
	for _, im := range r.Images {
		related.hash = appendNew(related.hash, im.SHA512)
	}
	if len(related.hash) > 0 {
		// ECS hash.* describes one file; the first image is the root disk for Nova and the
		// first disk judged otherwise. All of them are in related.hash and vmgate.images.
		doc["hash"] = map[string]any{"sha512": related.hash[0]}
	}
	rel := map[string]any{}
	putList(rel, "ip", related.ip)
	putList(rel, "hash", related.hash)
	putList(rel, "user", related.user)
	if len(rel) > 0 {
		doc["related"] = rel
	}

	vm := map[string]any{"seq": seq}
	put(vm, "hash", hash)
	put(vm, "prev_hash", prev)
	dom := map[string]any{}
	put(dom, "name", r.Domain.Name)
	put(dom, "uuid", r.Domain.UUID)
	if len(dom) > 0 {
		vm["domain"] = dom
	}
	if len(r.Images) > 0 {
		ims := make([]any, len(r.Images))
		for i, im := range r.Images {
			ims[i] = ecsImage(im)
		}
		vm["images"] = ims
		for _, im := range r.Images {
			// The list that vouched for the first image that has one, for searches by list.
			if im.List != "" || im.Subscription != "" {
				list := map[string]any{}
				put(list, "identifier", im.List)
				put(list, "version", im.ListVersion)
				put(list, "subscription", im.Subscription)
				put(list, "endorser", im.Endorser)
				vm["list"] = list
				break
			}
		}
	}
	if l := r.List; l != nil {
		// A list event of vmgate sync names its list itself.
		list := map[string]any{}
		put(list, "subscription", l.Subscription)
		put(list, "identifier", l.Identifier)
		put(list, "version", l.Version)
		put(list, "sha256", l.SHA256)
		put(list, "endorser", l.Endorser)
		vm["list"] = list
	}
	put(vm, "mode", r.Mode)
	put(vm, "exemption", r.Exemption)
	put(vm, "action", r.Action)
	if a := r.Actor; a != nil {
		// The Unix account that ran vmgate terminate; user.* is the VM's owner.
		actor := map[string]any{"uid": a.UID}
		put(actor, "name", a.Name)
		vm["actor"] = actor
	}
	if r.RevokedAt != nil {
		vm["revoked_at"] = r.RevokedAt.UTC().Format(time.RFC3339Nano)
	}
	if b := r.Block; b != nil {
		block := map[string]any{}
		put(block, "kind", b.Kind)
		put(block, "target", b.Target)
		put(block, "reason", b.Reason)
		put(block, "by", b.By)
		put(block, "source", b.Source)
		if b.Until != nil {
			block["until"] = b.Until.UTC().Format(time.RFC3339Nano)
		}
		vm["block"] = block
	}
	put(vm, "libvirt_op", r.Op)
	put(vm, "version", r.Version)
	putList(vm, "truncated", r.Truncated)
	putList(vm, "macs", r.MACs)
	if len(r.IPs) > 0 {
		ips := make([]any, len(r.IPs))
		for i, ip := range r.IPs {
			m := map[string]any{"address": ip.Address}
			put(m, "type", ip.Type)
			ips[i] = m
		}
		vm["ips"] = ips
	}
	doc["vmgate"] = vm
	return doc
}

// ECSVersion is the ECS release whose field definitions ECS follows (ecs.version).
const ECSVersion = "8.17.0"

func ecsImage(im Image) map[string]any {
	m := map[string]any{}
	put(m, "disk", im.Disk)
	put(m, "source", im.Source)
	put(m, "glance_id", im.GlanceID)
	put(m, "sha512", im.SHA512)
	put(m, "identifier", im.Identifier)
	put(m, "title", im.Title)
	put(m, "version", im.Version)
	put(m, "status", im.Status)
	put(m, "subscription", im.Subscription)
	put(m, "list", im.List)
	put(m, "list_version", im.ListVersion)
	put(m, "endorser", im.Endorser)
	return m
}

func put(m map[string]any, k, v string) {
	if v != "" {
		m[k] = v
	}
}

func putList(m map[string]any, k string, v []string) {
	if len(v) > 0 {
		m[k] = v
	}
}

// appendNew appends s unless it is empty or already there: related.* fields are sets.
func appendNew(list []string, s string) []string {
	if s == "" {
		return list
	}
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
