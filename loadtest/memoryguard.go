package loadtest

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/humanize"
)

// The memory limit gives way when it eats the run. MemoryLimit estimates what the viewers hold
// live; a run that falls behind (a flash crowd on a machine short of CPU) holds more, the
// collector then runs without pause near the limit (the runtime lets it take half the CPU), the
// run falls further behind and holds more still: 200 peers joining at once on two cores
// collapsed in some runs (150 origin copies, 1,300 stalls, 50 s of 120 s of CPU in the
// collector) and never without the limit. So while the limit is set, a guard reads the
// collector's share of the CPU every second and raises the limit by half whenever that share
// passes gcShareMax over the last few seconds: a lean process while the run is healthy, memory
// instead of a death spiral when it is not.

const (
	// gcShareMax is the collector's share of the available CPU above which the limit is raised.
	// A healthy load test spends about 5 % in it, one thrashing against its limit 35-45 %.
	gcShareMax = 0.2
	// gcGuardWindow is how many one-second samples the share is taken over.
	gcGuardWindow = 3
	limitRaise    = 1.5
)

// cpuSample is the runtime's cumulative CPU seconds: the collector's and all there were.
type cpuSample struct{ gc, total float64 }

// memoryGuard decides when to raise the limit; read and setLimit are the runtime's (tests fake them).
type memoryGuard struct {
	read     func() cpuSample
	setLimit func(int64) int64 // debug.SetMemoryLimit: a negative value reads the limit
	samples  []cpuSample
}

// check takes a sample and raises the limit when the collector's share of the last
// gcGuardWindow seconds passed gcShareMax. It returns the share and the new limit (0: kept).
func (g *memoryGuard) check() (share float64, raisedTo int64) {
	g.samples = append(g.samples, g.read())
	if len(g.samples) <= gcGuardWindow {
		return 0, 0
	}
	g.samples = g.samples[len(g.samples)-gcGuardWindow-1:]
	first, last := g.samples[0], g.samples[len(g.samples)-1]
	if last.total <= first.total {
		return 0, 0
	}
	share = (last.gc - first.gc) / (last.total - first.total)
	if share <= gcShareMax {
		return share, 0
	}
	limit := g.setLimit(-1)
	if limit <= 0 || limit == math.MaxInt64 {
		return share, 0
	}
	raised := int64(math.Min(float64(limit)*limitRaise, math.MaxInt64/2))
	g.setLimit(raised)
	g.samples = g.samples[:0] // judge the new limit on its own seconds
	return share, raised
}

// GuardMemoryLimit runs the guard until ctx ends; `crowdsurf loadtest` starts it when it set the
// memory limit itself.
func GuardMemoryLimit(ctx context.Context, log *slog.Logger) {
	g := &memoryGuard{read: readCPU, setLimit: debug.SetMemoryLimit}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if share, raised := g.check(); raised > 0 {
			log.Warn("the collector took a large share of the CPU near the memory limit; raised the limit (GOMEMLIMIT=off runs without one)",
				"gc_share", share, "limit", humanize.Bytes(raised))
		}
	}
}

// readCPU reads the collector's CPU less what it ran on otherwise idle processors (that costs
// the run nothing), and the available CPU. The runtime updates both when a collection ends, so
// a healthy run's samples repeat for seconds (check then sees no change), and a thrashing one's
// are fresh every second.
func readCPU() cpuSample {
	s := []metrics.Sample{
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/gc/mark/idle:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
	}
	metrics.Read(s)
	f := func(i int) float64 {
		if s[i].Value.Kind() == metrics.KindFloat64 {
			return s[i].Value.Float64()
		}
		return 0
	}
	return cpuSample{gc: f(0) - f(1), total: f(2)}
}
