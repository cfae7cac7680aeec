package sdk

import "errors"

// Hinted is an error that says what to do about it: the obvious next step
// ("start libvirtd", "free the IP or give the node another one"). khw
// prints the hint on its own line under the error. The provider that hits
// the failure knows the next step best, so hints are made there and travel
// to khw in the diagnostic's hint field.
type Hinted interface {
	error
	ErrorHint() string
}

// hintError is an error with a hint.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string     { return e.err.Error() }
func (e *hintError) Unwrap() error     { return e.err }
func (e *hintError) ErrorHint() string { return e.hint }

// WithHint returns err with what to do about it. A nil err stays nil and an
// empty hint adds nothing.
func WithHint(err error, hint string) error {
	if err == nil || hint == "" {
		return err
	}
	return &hintError{err: err, hint: hint}
}

// HintOf returns the hint of the first error in err's chain that has one,
// or "".
func HintOf(err error) string {
	var h Hinted
	if errors.As(err, &h) {
		return h.ErrorHint()
	}
	return ""
}
