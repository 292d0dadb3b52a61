package identity

import (
	"sync"
	"testing"
)

// TestAuthenticateDuringUpdate runs Authenticate, Allow and Permits while
// Update swaps between two tables. Under -race it checks the swap is free
// of data races; each Identity must come whole from one table, never a mix.
func TestAuthenticateDuringUpdate(t *testing.T) {
	t.Parallel()
	const tok = "concurrent-token-0000"
	tables := []Config{
		{Callers: []Caller{{Name: "v1", Tokens: [][32]byte{HashToken(tok)}, AllowTargets: patterns(t, "one.example"),
			Rate: Rate{PerSecond: 1e6, Burst: 1e6}}}},
		{Callers: []Caller{{Name: "v2", Tokens: [][32]byte{HashToken(tok)}, AllowTargets: patterns(t, "two.example"),
			Rate: Rate{PerSecond: 1e6, Burst: 1e6}}}},
	}
	a := New(tables[0])
	permitted := map[string]string{"v1": "one.example", "v2": "two.example"}

	const workers, rounds = 8, 300
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				a.Update(tables[i%2])
			}
		}
	})
	var failures sync.Map
	var readers sync.WaitGroup
	ctx := callCtx(t, remote, nil, "Bearer "+tok)
	for range workers {
		readers.Go(func() {
			for range rounds {
				out, err := a.Authenticate(ctx)
				if err != nil {
					failures.Store(err.Error(), true)
					return
				}
				id, _ := FromContext(out)
				host, ok := permitted[id.Name]
				if !ok || !id.Permits(host) || id.Permits("one.example") == id.Permits("two.example") || !id.Allow() {
					failures.Store("identity "+id.Name+" mixes tables", true)
					return
				}
			}
		})
	}
	readers.Wait()
	close(stop)
	wg.Wait()
	failures.Range(func(k, _ any) bool {
		t.Errorf("concurrent Authenticate: %v", k)
		return true
	})
}
