package passthrough

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// maybeKillPriv runs fn without CAP_FSETID when kill is set, so the host
// kernel clears setuid and setgid bits as it would for an unprivileged
// writer (HANDLE_KILLPRIV_V2 makes that the daemon's job).
//
// Capabilities are per thread in Linux: the goroutine is locked to its
// thread while the capability is dropped and the capability is restored
// before the thread serves anything else. Should restoring fail, the
// goroutine stays locked to the thread, so no other goroutine ever runs on
// it and the runtime ends the thread when this goroutine ends.
func (fs *FS) maybeKillPriv(kill bool, fn func() error) error {
	if !kill {
		return fn()
	}
	runtime.LockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("capget: %w", err)
	}
	const bit = 1 << unix.CAP_FSETID // CAP_FSETID < 32: the first word
	if data[0].Effective&bit == 0 {
		runtime.UnlockOSThread()
		return fn()
	}
	dropped := data
	dropped[0].Effective &^= bit
	if err := unix.Capset(&hdr, &dropped[0]); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("drop CAP_FSETID: %w", err)
	}
	err := fn()
	if rerr := unix.Capset(&hdr, &data[0]); rerr != nil {
		fs.log.Error("restoring CAP_FSETID failed; retiring the thread", "err", rerr)
		return err
	}
	runtime.UnlockOSThread()
	return err
}
