package main

import (
	"context"

	"google.golang.org/grpc/stats"
)

// Stack pre-growth. grpc-go runs each call on a new goroutine, whose stack
// starts small (the runtime's running average, often 2-8 KiB here) and is
// copied to one twice the size each time a call goes deeper than it. A
// Fetch reaches about 16 KiB (interceptors, policy, the outbound engine
// under net/http, the metric SDK's attribute handling), so its stack was
// copied two or three times per call, each time at a deep point where the
// copy walks and adjusts 40-60 frames: runtime.morestack was 6-10% of the
// daemon's CPU under load (perf of the real process, pprof of
// BenchmarkDaemon). Growing the stack to 16 KiB as the call starts costs
// one copy of a handful of frames, and the deep points then fit.
//
// The same trick is used by servers whose requests run deep on fresh
// goroutines; it is worth its cost only on the hot method, so other
// services' calls (health, reflection) are left alone.
//
// With --stream-workers most calls run on goroutines grpc-go keeps, whose
// stacks stay grown from call to call, and growStack costs only its stack
// check and the clearing of its frame there. It still matters for the
// calls that arrive while every kept goroutine is busy and get a new one,
// and after a collection has shrunk an idle kept goroutine's stack.
//
// BenchmarkDaemon/parallel/fetchd, interleaved runs without and with it:
// 168-176 against 155-159 µs of CPU per call.

// callStack is the stack a Fetch is given as it starts. The frame of
// growStack is callStack less what the goroutine has used by the time the
// stats handler runs (under 2 KiB) and the runtime's guard (under 1 KiB),
// rounded down, so that the runtime's doubling lands on callStack, not on
// twice it.
const (
	callStack      = 16 << 10
	growStackFrame = callStack - 6<<10
)

// growStack makes the calling goroutine's stack at least callStack bytes:
// its frame does not fit a smaller one, so the runtime grows the stack on
// entry, and the grown stack is kept after it returns.
//
//go:noinline
func growStack() {
	var frame [growStackFrame]byte
	keepFrame(&frame)
}

// keepFrame keeps growStack's frame from being optimised away; the frame
// does not escape, so it stays on the stack.
//
//go:noinline
func keepFrame(*[growStackFrame]byte) {}

// stackGrower is a stats handler that grows the stack of each call to
// fetchd's own services as grpc-go tags the call, on the call's goroutine
// before any interceptor runs. It records nothing.
type stackGrower struct{}

func (stackGrower) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if fetchdMethod(info.FullMethodName) {
		growStack()
	}
	return ctx
}

func (stackGrower) HandleRPC(context.Context, stats.RPCStats) {}

func (stackGrower) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (stackGrower) HandleConn(context.Context, stats.ConnStats) {}
