package idmap

import (
	"fmt"
	"syscall"
)

// RuleError reports a flag value that is malformed, or that conflicts with
// an earlier value of the same flag. Err says what is wrong.
type RuleError struct {
	Flag  string // e.g. "--translate-uid" or "--uid-map"
	Index int    // position among the flag's values, from 1
	Text  string // the value as given
	Err   error
}

// Error returns e.g. `--translate-uid rule #2 "foo:1:2:3": unknown type "foo": ...`.
func (e *RuleError) Error() string {
	return fmt.Sprintf("%s rule #%d %q: %v", e.Flag, e.Index, e.Text, e.Err)
}

// Unwrap returns Err.
func (e *RuleError) Unwrap() error { return e.Err }

// ForbiddenErrno is the errno a guest gets for an id a forbid-guest rule
// covers.
//
// virtiofsd means permission denied (it raises
// io::ErrorKind::PermissionDenied, whose errno is EPERM); because that
// io::Error carries no OS error code, virtiofsd 1.13 in fact replies EIO.
// ferryfs replies the errno meant.
const ForbiddenErrno = syscall.EPERM

// ForbiddenError is the error ToHost returns for a guest id that a
// forbid-guest rule covers. It unwraps to [ForbiddenErrno], so
// errors.Is(err, syscall.EPERM) holds and errors.As finds the errno.
//
// One ForbiddenError exists per forbid-guest rule, made when the map is
// built, so that a refused lookup allocates nothing; it therefore names the
// rule and its range, not the id looked up.
type ForbiddenError struct {
	Kind  Kind
	Rule  Rule   // the forbid-guest rule
	Index int    // the rule's position among the flag's values, from 1
	Text  string // the rule as given
}

// Error returns e.g. `guest UIDs 0-999 forbidden by --translate-uid rule #1 "forbid-guest:0:1000"`.
func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("%s forbidden by %s rule #%d %q",
		span("guest", e.Kind, e.Rule.From, e.Rule.last()), e.Kind.TranslateFlag(), e.Index, e.Text)
}

// Unwrap returns [ForbiddenErrno].
func (e *ForbiddenError) Unwrap() error { return ForbiddenErrno }
