// Package endorse is the endorser's side of the image-list policy: it keeps a signed HEPiX
// image list up to date, with an auditable history of every change, so that every vmgate
// site can verify what it syncs.
//
// # Files
//
// For a list FILE, everything lives next to it:
//
//	FILE                              the list (HEPiX JSON); between an edit and `sign` it holds
//	                                  changes that FILE.sig does not cover yet
//	FILE.sig, FILE.bundle             what `cosign sign-blob --output-signature/--bundle` writes
//	FILE.history                      the hash-chained, append-only history (internal/journal)
//	FILE.d/lock                       flock held during every edit
//	FILE.d/software/<sha512>.json|txt software inventories, verbatim, named by their sha512
//	FILE.d/versions/<v>.json(.sig|.bundle)  every signed version, byte for byte
//
// The list is always written with policy.Parse's own reading of it: an edit parses the list
// with policy.Parse, changes keys in the raw maps that Parse keeps (so unknown keys, such as
// AppDB's, survive), renders it and parses the result again before writing. Keys come out
// sorted and indented; nothing else changes.
//
// # Revocation
//
// Removing an image from the list is how HEPiX lists revoke: vmgate sync marks an image that
// a newer accepted list no longer names as revoked from that moment. Remove records the
// reason in the history at once; the revocation reaches sites with the next signed version.
//
// # Order of writes
//
// Each change is appended to the history before the list is replaced, so that no change
// takes effect unrecorded. A crash in between leaves a history entry for a change the list
// does not show; sign refuses until the list and the history agree again, which doing the
// same change once more achieves.
//
// # Verifying the history
//
// The history is a hash chain, which shows an entry edited, removed from the middle or
// reordered. verify-history also replays it: each signed version, as archived, and the list
// must hold exactly the images that the adds and removes before them leave, which shows
// entries cut from the end as long as the list or the archive still reflects them.
package endorse
