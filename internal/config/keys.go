package config

import (
	"reflect"
	"strings"
)

// ScalarKeys lists the dotted keys of every scalar setting (not lists), which the vmgate
// command lets VMGATE_<KEY> variables override (dots become underscores).
func ScalarKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			switch f.Type.Kind() {
			case reflect.Struct:
				walk(f.Type, prefix+name+".")
			case reflect.Slice, reflect.Map:
			default:
				keys = append(keys, prefix+name)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return keys
}
