package passthrough

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// forEachParallel calls f(k) for every k below n, on as many goroutines as
// the runtime has processors, in batches so that small tables are not
// worth a goroutine.
func forEachParallel(n int, f func(k int)) {
	const batch = 256
	workers := min(runtime.GOMAXPROCS(0), (n+batch-1)/batch)
	if workers <= 1 {
		for k := range n {
			f(k)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				start := int(next.Add(batch)) - batch
				if start >= n {
					return
				}
				for k := start; k < min(start+batch, n); k++ {
					f(k)
				}
			}
		})
	}
	wg.Wait()
}
