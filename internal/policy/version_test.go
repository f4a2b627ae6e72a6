package policy

import "testing"

func TestCompareVersions(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"20261101080000", "20261120100000", -1},
		{"1.10", "1.9", 1},
		{"1.2", "1.2", 0},
		{"1.02", "1.2", 0},
		{"1.2", "1.2.1", -1},
		{"2", "10", -1},
		{"1.0a", "1.0b", -1},
		{"1.0", "1.0a", -1},
		{"", "1", -1},
		{"99999999999999999999999", "100000000000000000000000", -1},
	}
	for _, c := range cases {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := CompareVersions(c.b, c.a); got != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}
