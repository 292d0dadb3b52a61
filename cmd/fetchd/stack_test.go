package main

import (
	"context"
	"runtime"
	"sync"
	"testing"

	"google.golang.org/grpc/stats"
)

// stackPerGoroutine runs f on n fresh goroutines that then wait, and
// returns the goroutine stack memory each of them holds, on average.
func stackPerGoroutine(n int, f func()) uint64 {
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			f()
			ready.Done()
			<-release
		}()
	}
	ready.Wait()
	runtime.ReadMemStats(&after)
	close(release)
	done.Wait()
	if after.StackInuse < before.StackInuse {
		return 0
	}
	return (after.StackInuse - before.StackInuse) / uint64(n)
}

// TestStackGrower shows that a Fetch's goroutine leaves TagRPC holding a
// callStack-byte stack (not twice it, which the frame arithmetic would
// give if growStackFrame were too large), and that other services' calls
// keep the small stack they started with.
func TestStackGrower(t *testing.T) {
	const n = 1000
	tag := func(method string) func() {
		return func() { stackGrower{}.TagRPC(context.Background(), &stats.RPCTagInfo{FullMethodName: method}) }
	}
	fetch := stackPerGoroutine(n, tag("/fetchd.v1.FetchService/Fetch"))
	// The runtime's stack pools blur the count by the small stacks given
	// back as the goroutines grew.
	if fetch < callStack*3/4 || fetch >= callStack*3/2 {
		t.Errorf("a Fetch goroutine holds %d bytes of stack after TagRPC, want about %d", fetch, callStack)
	}
	health := stackPerGoroutine(n, tag("/grpc.health.v1.Health/Check"))
	if health >= callStack/2 {
		t.Errorf("a health check goroutine holds %d bytes of stack after TagRPC, want less than %d", health, callStack/2)
	}
}

// deep uses about depth*256 bytes of stack, the way a call's handler
// reaches deep only late in the call.
//
//go:noinline
func deep(depth int) byte {
	var frame [200]byte
	frame[depth%len(frame)] = byte(depth)
	if depth == 0 {
		return frame[0]
	}
	return deep(depth-1) + frame[(depth+1)%len(frame)]
}

// BenchmarkStackGrowth is the cost of a fresh goroutine reaching 14 KiB
// deep with its stack grown on the way (the runtime's copies) and grown
// first (growStack):
//
//	go test -run '^$' -bench BenchmarkStackGrowth -benchmem ./cmd/fetchd/
func BenchmarkStackGrowth(b *testing.B) {
	for _, bm := range []struct {
		name string
		grow bool
	}{{"on the way", false}, {"first", true}} {
		b.Run(bm.name, func(b *testing.B) {
			done := make(chan byte)
			for b.Loop() {
				go func() {
					if bm.grow {
						growStack()
					}
					done <- deep(14 << 10 / 256)
				}()
				<-done
			}
		})
	}
}
