// Package policy knows which images are endorsed: it parses and checks HEPiX image lists,
// keeps each subscription's state and an auditable history, and compiles the snapshot the
// hook reads. It knows nothing of libvirt or of trace records.
//
// Security-critical: a mistake here admits an image no endorser vouches for. Changes need a
// second reader.
package policy
