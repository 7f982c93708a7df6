package loadtest

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"syscall"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/humanize"
)

// Machine describes where a load test ran, so figures can be compared honestly.
type Machine struct {
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Hostname  string `json:"hostname"`
	// GOGC and MemoryLimit are the collector's settings during the run (the memory limit 0
	// when there was none): they decide most of the max RSS (see MemoryLimit).
	GOGC        int64 `json:"gogc"`
	MemoryLimit int64 `json:"memory_limit_bytes"`
}

func thisMachine() Machine {
	m := Machine{
		CPUModel:  cpuModel(),
		Cores:     runtime.NumCPU(),
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS,
		Arch:      runtime.GOARCH,
	}
	m.Hostname, _ = os.Hostname()
	gc := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(gc)
	if gc[0].Value.Kind() == metrics.KindUint64 {
		m.GOGC = int64(gc[0].Value.Uint64())
	}
	if gc[1].Value.Kind() == metrics.KindUint64 && gc[1].Value.Uint64() < math.MaxInt64 {
		m.MemoryLimit = int64(gc[1].Value.Uint64())
	}
	return m
}

// cpuModel reads the first "model name" of /proc/cpuinfo ("unknown" elsewhere).
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(key) == "model name" {
			return strings.TrimSpace(val)
		}
	}
	return "unknown"
}

// resourceUsage is the process's CPU time and peak resident set (getrusage), and the
// collector's cycles so far: what a memory limit costs shows there.
type resourceUsage struct {
	CPU      time.Duration
	MaxRSS   int64 // bytes
	GCCycles uint64
	// GCCPU is the runtime's estimate of the CPU its collector used (runtime/metrics
	// /cpu/classes/gc/total: marking, assists, pauses, sweeping), and GCIdleCPU the part of it
	// spent marking on processors that had nothing else to run (/cpu/classes/gc/mark/idle):
	// getrusage counts that too, but it delayed nothing in the process.
	GCCPU, GCIdleCPU time.Duration
}

func processUsage() resourceUsage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return resourceUsage{}
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	gc := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/gc/mark/idle:cpu-seconds"}}
	metrics.Read(gc)
	u := resourceUsage{CPU: cpu, MaxRSS: int64(ru.Maxrss) * 1024} // Linux reports ru_maxrss in KiB
	if gc[0].Value.Kind() == metrics.KindUint64 {
		u.GCCycles = gc[0].Value.Uint64()
	}
	if gc[1].Value.Kind() == metrics.KindFloat64 && gc[2].Value.Kind() == metrics.KindFloat64 {
		u.GCCPU = time.Duration(gc[1].Value.Float64() * float64(time.Second))
		u.GCIdleCPU = time.Duration(gc[2].Value.Float64() * float64(time.Second))
	}
	return u
}

// gcSettings says how the collector ran, e.g. "GOGC=400, memory limit 517.4 MiB".
func (m Machine) gcSettings() string {
	gogc := "GOGC=off"
	if m.GOGC > 0 {
		gogc = fmt.Sprintf("GOGC=%d", m.GOGC)
	}
	if m.MemoryLimit <= 0 {
		return gogc + ", no memory limit"
	}
	return gogc + ", memory limit " + humanize.Bytes(m.MemoryLimit)
}
