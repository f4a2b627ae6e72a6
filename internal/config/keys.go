package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvConfig names the configuration file, for the vmgate command and the hook alike: it
// names a file, never a value, so both still read the same values. The hook's wrapper
// (hook install with a configuration file of its own) passes it.
const EnvConfig = "VMGATE_CONFIG"

// envPrefix starts every variable that overrides a scalar key.
const envPrefix = "VMGATE_"

// FilePath is the configuration file to read: the --config flag, else $VMGATE_CONFIG, else
// DefaultPath.
func FilePath(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	if p := getenv(EnvConfig); p != "" {
		return p
	}
	return DefaultPath
}

// ScalarKeys lists the dotted keys of every scalar setting (not lists), which the vmgate
// command lets VMGATE_<KEY> variables override (dots become underscores).
func ScalarKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if opts == "inline" {
				walk(f.Type, prefix)
				continue
			}
			if name == "" || name == "-" {
				continue
			}
			switch ft := f.Type; {
			case isScalar(ft):
				keys = append(keys, prefix+name)
			case ft.Kind() == reflect.Struct:
				walk(ft, prefix+name+".")
			case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct:
				walk(ft.Elem(), prefix+name+".")
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return keys
}

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

// isScalar reports whether a value of type t is written as one YAML scalar: lists, maps and
// structs are not, unless the type reads itself from text (time.Time).
func isScalar(t reflect.Type) bool {
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		return true
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Slice, reflect.Array, reflect.Map, reflect.Interface, reflect.Func, reflect.Chan:
		return false
	case reflect.Pointer:
		return isScalar(t.Elem())
	}
	return true
}

// EnvName is the variable that overrides a scalar key: admission.mode → VMGATE_ADMISSION_MODE.
func EnvName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Override sets one scalar key on top of the file.
type Override struct {
	Key   string // dotted, as ScalarKeys names it: admission.mode
	From  string // where it comes from, for messages: VMGATE_ADMISSION_MODE
	Value string // read as the same text written unquoted at Key in the file would be
}

// EnvOverrides returns the overrides of the VMGATE_<KEY> variables that lookup finds, in
// ScalarKeys order. An empty variable overrides nothing, so that `VMGATE_X=` in a unit file
// or a shell cannot blank a key by accident.
func EnvOverrides(lookup func(string) (string, bool)) []Override {
	var out []Override
	for _, key := range ScalarKeys() {
		env := EnvName(key)
		if v, ok := lookup(env); ok && v != "" {
			out = append(out, Override{Key: key, From: env, Value: v})
		}
	}
	return out
}

// apply sets the field that o names as the file's decoder would have set it from the same
// text written unquoted there: the field's own type decides, so an override is typed exactly
// like the file (0123 stays "0123" for a text key, yes is true for a boolean one, 90s is a
// duration). The text is never parsed as YAML structure: "[::1]:9477" is text, not a list.
func (c *Config) apply(o Override) error {
	// Decode into a fresh value so that a refused text leaves the file's value alone.
	fresh := decodeScalar(reflect.ValueOf(c).Elem(), o.Key)
	if fresh == nil {
		return fmt.Errorf("config: %s: no such key %s", o.From, o.Key)
	}
	n := yaml.Node{Kind: yaml.ScalarNode, Value: o.Value}
	if err := n.Decode(fresh.target.Interface()); err != nil {
		return fmt.Errorf("config: %s: %s; give a value that %s takes, or unset the variable", o.From, yamlReason(err), o.Key)
	}
	fresh.set()
	return nil
}

// scalarTarget is where an override decodes (target, a pointer to a new value of the key's
// type) and how to store it.
type scalarTarget struct {
	target reflect.Value
	set    func()
}

// decodeScalar finds the field of a dotted key under v, nil when there is none. A nil pointer
// to a struct on the way (an optional section) is made only when the value set in it is not
// the zero value: "~" must not turn an absent section into a present, empty one.
func decodeScalar(v reflect.Value, key string) *scalarTarget {
	name, rest, nested := strings.Cut(key, ".")
	f, ok := fieldByTag(v, name)
	if !ok {
		return nil
	}
	if !nested {
		fresh := reflect.New(f.Type())
		return &scalarTarget{target: fresh, set: func() { f.Set(fresh.Elem()) }}
	}
	if f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Struct {
		inner := reflect.New(f.Type().Elem())
		if !f.IsNil() {
			inner.Elem().Set(f.Elem())
		}
		t := decodeScalar(inner.Elem(), rest)
		if t == nil {
			return nil
		}
		setInner := t.set
		t.set = func() {
			setInner()
			if !f.IsNil() || !inner.Elem().IsZero() {
				f.Set(inner)
			}
		}
		return t
	}
	return decodeScalar(f, rest)
}

// fieldByTag finds the field of struct v whose yaml name is name, inline structs included.
func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	if v.Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag, opts, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if opts == "inline" {
			if f, ok := fieldByTag(v.Field(i), name); ok {
				return f, true
			}
			continue
		}
		if tag == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// yamlReason is the decoder's complaint without its "yaml: unmarshal errors: line 0:"
// framing, which means nothing for a variable.
func yamlReason(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		_, m, _ = strings.Cut(m, ": ")
		msgs[i] = m
	}
	return strings.Join(msgs, "; ")
}
