package policy

import (
	"time"
)

// Expect is what a subscription pins about its list.
type Expect struct {
	Identifier string        // expected dc:identifier; empty: any, but it may not change later
	MaxAge     time.Duration // freeze: refuse a list created longer ago than this (0: no limit)
	ClockSkew  time.Duration // how far dc:date:created may lie in the future
}

// Previous is what vmgate remembers of the last list it accepted from a subscription.
type Previous struct {
	Identifier string
	Version    string
	SHA256     string // of the exact bytes accepted
}

// CheckContent applies the rules that need only the list and the clock: not created in the
// future, not expired, no duplicate images. `vmgate list verify` runs these.
func CheckContent(l *List, now time.Time, skew time.Duration) error {
	if l.Created.After(now.Add(skew)) {
		return refuse(ReasonCreatedInFuture, "list %s was created at %s, in the future (now %s)",
			l.Identifier, l.Created.Format(TimeLayout), now.UTC().Format(TimeLayout))
	}
	if !now.Before(l.Expires) {
		return refuse(ReasonExpired, "list %s version %s expired at %s",
			l.Identifier, l.Version, l.Expires.Format(TimeLayout))
	}
	ids := make(map[string]bool, len(l.Images))
	hashes := make(map[string]string, len(l.Images))
	for _, img := range l.Images {
		if ids[img.Identifier] {
			return refuse(ReasonDuplicateIdentifier, "list %s has two images with dc:identifier %s", l.Identifier, img.Identifier)
		}
		ids[img.Identifier] = true
		if other, dup := hashes[img.SHA512]; dup {
			return refuse(ReasonDuplicateSHA512, "list %s has images %s and %s with the same sha512 %s…",
				l.Identifier, other, img.Identifier, img.SHA512[:16])
		}
		hashes[img.SHA512] = img.Identifier
	}
	return nil
}

// Check applies every rule to a verified, parsed list: CheckContent, then the subscription's
// pins and the comparison with the previously accepted list (prev may be nil).
func Check(l *List, sha256 string, want Expect, prev *Previous, now time.Time) error {
	if want.Identifier != "" && l.Identifier != want.Identifier {
		return refuse(ReasonIdentifierMismatch, "list identifier is %s, the subscription expects %s", l.Identifier, want.Identifier)
	}
	if prev != nil && l.Identifier != prev.Identifier {
		return refuse(ReasonIdentifierMismatch, "list identifier changed from %s to %s", prev.Identifier, l.Identifier)
	}
	if err := CheckContent(l, now, want.ClockSkew); err != nil {
		return err
	}
	if want.MaxAge > 0 && now.Sub(l.Created) > want.MaxAge {
		return refuse(ReasonFrozen, "list %s version %s was created at %s, longer ago than max_age %s",
			l.Identifier, l.Version, l.Created.Format(TimeLayout), want.MaxAge)
	}
	if prev != nil {
		switch c := CompareVersions(l.Version, prev.Version); {
		case c < 0:
			return refuse(ReasonRollback, "list %s version %s is older than the accepted version %s", l.Identifier, l.Version, prev.Version)
		case c == 0 && sha256 != prev.SHA256:
			return refuse(ReasonRollback, "list %s version %s differs from the accepted list of the same version", l.Identifier, l.Version)
		}
	}
	return nil
}
