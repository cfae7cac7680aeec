package runtime

import (
	"errors"
	"fmt"
	"strings"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// RecipeError is a recipe that cannot be evaluated: a syntax error, a bad
// argument, a failed validation. Pos is the recipe file:line:col that the
// person should look at; Trace lists the calls that led there.
type RecipeError struct {
	Pos   string
	Msg   string
	Trace []string
}

func (e *RecipeError) Error() string {
	var b strings.Builder
	if e.Pos != "" {
		b.WriteString(e.Pos + ": ")
	}
	b.WriteString(e.Msg)
	for _, t := range e.Trace {
		b.WriteString("\n    called from " + t)
	}
	return b.String()
}

// recipeError turns a Starlark error into a RecipeError that starts with the
// innermost recipe position (the failing call or fail()).
func recipeError(err error) error {
	var serr syntax.Error
	if errors.As(err, &serr) {
		return &RecipeError{Pos: serr.Pos.String(), Msg: "syntax error: " + serr.Msg}
	}
	var rerrs resolve.ErrorList
	if errors.As(err, &rerrs) && len(rerrs) > 0 {
		return &RecipeError{Pos: rerrs[0].Pos.String(), Msg: rerrs[0].Msg}
	}
	var ee *starlark.EvalError
	if !errors.As(err, &ee) {
		return err
	}
	// An error inside a load()ed module is wrapped by the loading call;
	// report the innermost one, with the loads as its trace.
	var outer []string
	for {
		var inner *starlark.EvalError
		if cause := ee.Unwrap(); cause != nil && errors.As(cause, &inner) {
			if p := innermost(ee.CallStack); p != "" {
				outer = append([]string{p}, outer...)
			}
			ee = inner
			continue
		}
		break
	}
	var frames []string
	for i := len(ee.CallStack) - 1; i >= 0; i-- {
		if p := ee.CallStack[i].Pos; p.IsValid() && p.Filename() != "<builtin>" {
			frames = append(frames, p.String())
		}
	}
	msg := ee.Msg
	if c := ee.Unwrap(); c != nil {
		msg = c.Error()
	}
	msg = strings.TrimPrefix(msg, "fail: ")
	msg = strings.TrimPrefix(msg, "Starlark computation cancelled: ")
	re := &RecipeError{Msg: msg}
	if len(frames) > 0 {
		re.Pos, re.Trace = frames[0], frames[1:]
	}
	for i := len(outer) - 1; i >= 0; i-- {
		re.Trace = append(re.Trace, outer[i])
	}
	return re
}

func innermost(cs starlark.CallStack) string {
	for i := len(cs) - 1; i >= 0; i-- {
		if p := cs[i].Pos; p.IsValid() && p.Filename() != "<builtin>" {
			return p.String()
		}
	}
	return ""
}

// Errorf is a convenience for builtins: a message that names the builtin.
func Errorf(b *starlark.Builtin, format string, args ...any) error {
	return fmt.Errorf("%s: %s", b.Name(), fmt.Sprintf(format, args...))
}
