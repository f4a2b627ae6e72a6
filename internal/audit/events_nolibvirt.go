//go:build !libvirt_dlopen

package audit

import "errors"

// Subscribe needs libvirt: see terminate's host scope.
func Subscribe(uri string, event func(uuid, kind string)) (Watch, error) {
	return nil, errors.New("this vmgate was built without libvirt: build it with -tags libvirt_dlopen (make build)")
}
