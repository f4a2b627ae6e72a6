package policy

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// Glance is an OpenStack cloud's image service, as vmgate sync uses it: to learn which
// Glance image ids carry which bytes, so that the hook can judge a Nova instance by the id
// in its domain metadata without a network call, and optionally to deactivate revoked
// images. internal/openstack implements it with gophercloud.
type Glance interface {
	// Label names the cloud in messages.
	Label() string
	// Images lists every image the credentials can see, across all projects.
	Images(ctx context.Context) ([]GlanceImage, error)
	Deactivate(ctx context.Context, id string) error
	Reactivate(ctx context.Context, id string) error
}

// GlanceImage is what vmgate reads of one Glance image.
type GlanceImage struct {
	ID, Name, Owner, Visibility, Status string
	// Properties are the image's properties that may carry its hash (HashProperties);
	// others may be left out.
	Properties map[string]string
}

// Properties of a Glance image that name its sha512, in the order they are believed.
const (
	// PropHashAlgo and PropHashValue are computed by Glance itself from the uploaded
	// bytes (Rocky and later). When the algorithm is sha512 they win over every other.
	PropHashAlgo  = "os_hash_algo"
	PropHashValue = "os_hash_value"
	// PropImageHash is atrope's, "sha512:<hex>".
	PropImageHash = "image_hash"
	// PropSHA512 is older atrope's, the bare hex.
	PropSHA512 = "sha512"
	// PropApplianceAttributes is cloudkeeper-os's: the list entry's fields as a JSON
	// object, whose "sl:checksum:sha512" is the endorsed hash.
	PropApplianceAttributes = "APPLIANCE_ATTRIBUTES"
)

// Properties of a Glance image that make Nova boot an instance from something other than the
// image's bytes: block device mappings (nova/block_device.py, nova/compute/api.py
// _get_image_defined_bdms). A snapshot of a volume-backed instance carries them, and so can
// any image a user uploads: the endorsed bytes with a mapping that boots another image, a
// volume or a volume snapshot. Such an image is not mapped to its endorsement unless
// openstack.allow_image_block_device_mapping. Other properties were considered and left:
// "mappings" (EC2's legacy ephemeral and swap names, which Nova turns into blank disks
// only), "root_device_name" (a device name), "img_config_drive" (forces a config drive),
// "hw_rescue_device"/"hw_rescue_bus" (how a rescue disk is attached), "kernel_id" and
// "ramdisk_id" (direct kernel boot, which the hook refuses).
const (
	PropBlockDeviceMapping = "block_device_mapping"
	PropBDMv2              = "bdm_v2"
)

// BootProperties are the properties that make Nova boot something else than the image.
var BootProperties = []string{PropBlockDeviceMapping, PropBDMv2}

// HashProperties are the properties GlanceImage.Properties needs (with BootProperties).
var HashProperties = []string{PropHashAlgo, PropHashValue, PropImageHash, PropSHA512, PropApplianceAttributes}

// Sources of a Glance image's sha512.
const (
	SourceGlance = "glance" // os_hash_value, computed by Glance
)

// GlanceOptions is how sync treats Glance.
type GlanceOptions struct {
	// DeactivateRevoked deactivates in Glance every image whose sha512 a subscribed list
	// revoked (or let expire), and reactivates it when a list endorses it again.
	DeactivateRevoked bool
	// TrustedProjects own images whose sync-tool properties are believed when Glance
	// computed no sha512 of its own. Public images are believed too: Glance's default
	// policy lets only admins publicize an image.
	TrustedProjects []string
	// AllowBlockDeviceMapping maps images with BootProperties all the same.
	AllowBlockDeviceMapping bool
}

// GlanceState is what the last listing of Glance taught, kept in the state file so that a
// sync that cannot reach Glance keeps the ids it resolved before (a Glance image's bytes
// never change, so an id keeps its sha512 for life).
type GlanceState struct {
	Cloud     string    `json:"cloud"`
	Listed    time.Time `json:"listed,omitzero"` // last successful listing
	LastError string    `json:"last_error,omitempty"`
	// Images by Glance id: those whose sha512 is known to some subscription.
	Images map[string]*GlanceImageState `json:"images"`
	// Refused are images whose sha512 a subscription knows but that are not mapped, by
	// Glance id, with the reason: their properties make Nova boot something else.
	Refused map[string]string `json:"refused,omitempty"`
}

// GlanceImageState is one Glance image that vmgate maps to an image of the lists.
type GlanceImageState struct {
	SHA512 string `json:"sha512"`
	Source string `json:"source"` // SourceGlance or the property it came from
	Name   string `json:"name,omitempty"`
	Owner  string `json:"owner,omitempty"`
	Status string `json:"status"` // Glance's, at the last listing
	// Deactivated is set when vmgate deactivated the image; only those it reactivates.
	Deactivated bool `json:"deactivated_by_vmgate,omitempty"`
}

// Events of the Glance side of a sync, in the history.
const (
	EventGlanceMapped      = "glance.mapped"      // a Glance id now maps to an image of the lists
	EventGlanceConflict    = "glance.conflict"    // a sync tool's property contradicts the bytes
	EventGlanceDeactivated = "glance.deactivated" // openstack.deactivate_revoked acted
	EventGlanceReactivated = "glance.reactivated"
)

// GlanceReport says what one sync learnt from Glance and did to it.
type GlanceReport struct {
	Cloud     string
	Listed    int // images listed
	Mapped    int // of them, mapped to an image of the lists
	Conflicts int
	// Refused are images of known sha512 left unmapped: their properties make Nova boot
	// something else (block_device_mapping).
	Refused   int
	Untrusted int // carried only a property, on an image of a project not trusted
	// Err is why Glance could not be listed; the previous mapping stays in force.
	Err error
	// GuardErrs are deactivations or reactivations that failed.
	GuardErrs []error
}

// resolvedImage is one image's sha512 and where it came from; conflict explains a
// disagreement between properties, untrusted an unbelieved property, refused why the image
// is not mapped whatever its sha512.
type resolvedImage struct {
	sha512, source, conflict, refused string
	untrusted                         bool
}

// bootOverride says which of the image's properties make Nova boot something other than
// its bytes, "" when none does. bdm_v2 only says in which format block_device_mapping is
// written; an empty mapping ("[]") maps nothing.
func bootOverride(props map[string]string) string {
	v, ok := props[PropBlockDeviceMapping]
	if t := strings.TrimSpace(v); ok && t != "" && t != "[]" && t != "null" {
		if strings.EqualFold(strings.TrimSpace(props[PropBDMv2]), "true") {
			return PropBlockDeviceMapping + " (bdm_v2)"
		}
		return PropBlockDeviceMapping
	}
	return ""
}

// resolveGlanceImage decides which sha512 a Glance image's bytes have, and refuses to map an
// image whose properties make Nova boot something else.
func resolveGlanceImage(img *GlanceImage, opts *GlanceOptions) resolvedImage {
	r := resolveGlanceHash(img, opts)
	if p := bootOverride(img.Properties); p != "" && r.sha512 != "" && !opts.AllowBlockDeviceMapping {
		r.refused = fmt.Sprintf("property %s makes Nova boot the instance from another image, volume or snapshot than these bytes: the image is not mapped (openstack.allow_image_block_device_mapping)", p)
	}
	return r
}

func resolveGlanceHash(img *GlanceImage, opts *GlanceOptions) resolvedImage {
	claims := hashClaims(img.Properties)
	if strings.EqualFold(img.Properties[PropHashAlgo], "sha512") {
		if own, ok := normalSHA512(img.Properties[PropHashValue]); ok {
			r := resolvedImage{sha512: own, source: SourceGlance}
			for _, c := range claims {
				if c.sha512 != own {
					r.conflict = fmt.Sprintf("property %s says sha512 %s but Glance computed %s from the bytes: the image is judged by Glance's hash", c.prop, short(c.sha512), short(own))
					break
				}
			}
			return r
		}
	}
	if len(claims) == 0 {
		return resolvedImage{}
	}
	for _, c := range claims[1:] {
		if c.sha512 != claims[0].sha512 {
			return resolvedImage{conflict: fmt.Sprintf("properties %s and %s name different sha512 values and Glance computed none: the image is not mapped", claims[0].prop, c.prop)}
		}
	}
	if img.Visibility != "public" && !slices.Contains(opts.TrustedProjects, img.Owner) {
		return resolvedImage{untrusted: true}
	}
	return resolvedImage{sha512: claims[0].sha512, source: claims[0].prop}
}

type hashClaim struct{ prop, sha512 string }

// hashClaims reads the sync tools' properties; a malformed one is ignored (it vouches for
// nothing).
func hashClaims(props map[string]string) []hashClaim {
	var claims []hashClaim
	if v, ok := props[PropImageHash]; ok {
		algo, hexv, _ := strings.Cut(v, ":")
		if sha, ok := normalSHA512(hexv); ok && strings.EqualFold(algo, "sha512") {
			claims = append(claims, hashClaim{PropImageHash, sha})
		}
	}
	if sha, ok := normalSHA512(props[PropSHA512]); ok {
		claims = append(claims, hashClaim{PropSHA512, sha})
	}
	if raw, ok := props[PropApplianceAttributes]; ok {
		var attrs map[string]any
		if json.Unmarshal([]byte(raw), &attrs) == nil {
			if s, _ := attrs["sl:checksum:sha512"].(string); s != "" {
				if sha, ok := normalSHA512(s); ok {
					claims = append(claims, hashClaim{PropApplianceAttributes, sha})
				}
			}
		}
	}
	return claims
}

func normalSHA512(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) != 128 {
		return "", false
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", false
	}
	return s, true
}

func short(sha string) string {
	if len(sha) > 16 {
		return sha[:16] + "…"
	}
	return sha
}

// knownHashes is every sha512 some subscription endorses or once did.
func knownHashes(st *State) map[string]bool {
	known := map[string]bool{}
	for _, ss := range st.Subscriptions {
		for sha := range ss.Images {
			known[sha] = true
		}
	}
	return known
}

// resolveGlance lists Glance and replaces the state's mapping with what it finds. On a
// listing error the previous mapping stays, so ids resolved before keep working and new
// ones stay unknown (refused).
func resolveGlance(ctx context.Context, g Glance, opts *GlanceOptions, st *State, now time.Time) (*GlanceReport, []Event) {
	rep := &GlanceReport{Cloud: g.Label()}
	prev := st.Glance
	if prev == nil {
		prev = &GlanceState{Images: map[string]*GlanceImageState{}}
	}
	images, err := g.Images(ctx)
	if err != nil {
		rep.Err = fmt.Errorf("list Glance images of cloud %s: %w", g.Label(), err)
		prev.LastError = rep.Err.Error()
		st.Glance = prev
		return rep, nil
	}
	known := knownHashes(st)
	next := &GlanceState{Cloud: g.Label(), Listed: now, Images: map[string]*GlanceImageState{}, Refused: map[string]string{}}
	var events []Event
	rep.Listed = len(images)
	for i := range images {
		img := &images[i]
		r := resolveGlanceImage(img, opts)
		if r.untrusted {
			rep.Untrusted++
		}
		if r.conflict != "" {
			rep.Conflicts++
		}
		if r.sha512 == "" || !known[r.sha512] {
			continue
		}
		id := strings.ToLower(img.ID)
		if r.refused != "" {
			rep.Refused++
			next.Refused[id] = r.refused
			if prev.Refused[id] != r.refused {
				events = append(events, Event{Event: EventGlanceConflict, Cloud: g.Label(), GlanceID: id, SHA512: r.sha512, Title: img.Name,
					Message: fmt.Sprintf("Glance image %s (%s) has sha512 %s, but its %s", id, img.Name, short(r.sha512), r.refused)})
			}
			continue
		}
		old := prev.Images[id]
		gi := &GlanceImageState{SHA512: r.sha512, Source: r.source, Name: img.Name, Owner: img.Owner, Status: img.Status}
		if old != nil && old.SHA512 == r.sha512 {
			gi.Deactivated = old.Deactivated
		}
		next.Images[id] = gi
		rep.Mapped++
		if old == nil || old.SHA512 != r.sha512 {
			events = append(events, Event{Event: EventGlanceMapped, Cloud: g.Label(), GlanceID: id, SHA512: r.sha512, Title: img.Name,
				Message: fmt.Sprintf("Glance image %s (%s) has sha512 %s (from %s)", id, img.Name, short(r.sha512), r.source)})
		}
		if r.conflict != "" && (old == nil || old.SHA512 != r.sha512) {
			events = append(events, Event{Event: EventGlanceConflict, Cloud: g.Label(), GlanceID: id, SHA512: r.sha512, Title: img.Name, Message: r.conflict})
		}
	}
	st.Glance = next
	return rep, events
}

// glanceAction is one deactivation or reactivation the guard should make.
type glanceAction struct {
	id, event string
	img       *GlanceImageState
	why       string
}

// planGuard lists what openstack.deactivate_revoked asks for: deactivate every active image
// whose sha512 the lists no longer endorse (but once did), reactivate every image vmgate
// deactivated that is endorsed again. Images no list ever named are left alone: they are
// refused at boot all the same, and deactivating them is the cloud operator's call.
func planGuard(gs *GlanceState, entries []snapshot.Entry, now time.Time) []glanceAction {
	if gs == nil {
		return nil
	}
	byHash := make(map[string]*snapshot.Entry, len(entries))
	for i := range entries {
		byHash[entries[i].SHA512] = &entries[i]
	}
	var plan []glanceAction
	for _, id := range sortedKeys(gs.Images) {
		gi := gs.Images[id]
		e := byHash[gi.SHA512]
		if e == nil {
			continue
		}
		_, endorsed := e.EndorsedAt(now)
		switch {
		case !endorsed && gi.Status == "active":
			why := "revoked"
			if l := e.Latest(); l != nil {
				if r := l.ReasonAt(now); r != "" {
					why = r
				}
			}
			plan = append(plan, glanceAction{id: id, event: EventGlanceDeactivated, img: gi, why: why})
		case endorsed && gi.Deactivated && gi.Status == "deactivated":
			plan = append(plan, glanceAction{id: id, event: EventGlanceReactivated, img: gi, why: "endorsed again"})
		}
	}
	return plan
}

// guardGlance carries the plan out; it updates the state of each image acted on and
// returns the events to record.
func guardGlance(ctx context.Context, g Glance, gs *GlanceState, entries []snapshot.Entry, now time.Time, rep *GlanceReport) []Event {
	var events []Event
	for _, a := range planGuard(gs, entries, now) {
		var err error
		if a.event == EventGlanceDeactivated {
			err = g.Deactivate(ctx, a.id)
		} else {
			err = g.Reactivate(ctx, a.id)
		}
		verb := strings.TrimPrefix(a.event, "glance.")
		if err != nil {
			rep.GuardErrs = append(rep.GuardErrs, fmt.Errorf("glance image %s: %s: %w", a.id, strings.TrimSuffix(verb, "d"), err))
			continue
		}
		if a.event == EventGlanceDeactivated {
			a.img.Status, a.img.Deactivated = "deactivated", true
		} else {
			a.img.Status, a.img.Deactivated = "active", false
		}
		events = append(events, Event{Event: a.event, Cloud: g.Label(), GlanceID: a.id, SHA512: a.img.SHA512, Title: a.img.Name,
			Message: fmt.Sprintf("Glance image %s %s by openstack.deactivate_revoked: %s", a.id, verb, a.why)})
	}
	return events
}
