package main

import (
	"errors"
	"fmt"
	"testing"
)

func TestExitCode(t *testing.T) {
	cases := []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{refused("list refused"), exitRefused},
		{fmt.Errorf("sync: %w", refused("x")), exitRefused},
		{errors.New("config: no such file"), exitError},
		{&outcome{code: exitTargets}, exitTargets},
		{fmt.Errorf("terminate: %w", &outcome{code: exitTargets}), 3},
	}
	for _, c := range cases {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}
