package guestmem

import (
	"fmt"
	"runtime"
)

// FaultError is an access to a mapping of guest memory or of the dirty log
// that faulted: the front-end shrank the file behind it after it was
// mapped (a size checked at mapping time does not stay true). Such an
// access raises SIGBUS, which kills a Go program unless the goroutine
// that made it called debug.SetPanicOnFault(true); then it panics with a
// runtime.Error that AsFault turns into a FaultError.
type FaultError struct {
	Addr uintptr // the faulting address
}

func (e *FaultError) Error() string {
	return fmt.Sprintf("memory fault at %#x: the front-end shrank guest memory or the dirty log under their mapping", e.Addr)
}

// AsFault returns the FaultError that the recovered panic value p stands
// for, or nil when p is not a memory fault. A nil pointer dereference is not
// one (the runtime gives it no address): it is a bug of ours, not the
// front-end's doing.
func AsFault(p any) error {
	re, ok := p.(runtime.Error)
	if !ok {
		return nil
	}
	a, ok := re.(interface{ Addr() uintptr })
	if !ok {
		return nil
	}
	return &FaultError{Addr: a.Addr()}
}
