package pki

import (
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The keys this process generated and the CPU time their generation took
// (the generating thread's own clock, so neither other goroutines nor
// other processes count). make bench divides it by the cores: the floor
// under a run's own keys, which no tool can beat for those keys.
var keysMade, keyCPUNanos atomic.Int64

// KeyWork is how many keys this process generated, and their CPU time.
func KeyWork() (keys int, cpu time.Duration) {
	return int(keysMade.Load()), time.Duration(keyCPUNanos.Load())
}

// timedOnThread runs gen on one OS thread and adds the thread's CPU time
// to KeyWork.
func timedOnThread[T any](gen func() (T, error)) (T, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start, ok := threadCPU()
	v, err := gen()
	if end, ok2 := threadCPU(); ok && ok2 && err == nil {
		keysMade.Add(1)
		keyCPUNanos.Add(int64(end - start))
	}
	return v, err
}

func threadCPU() (time.Duration, bool) {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
