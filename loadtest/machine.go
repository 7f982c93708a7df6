package loadtest

import (
	"bufio"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Machine describes where a load test ran, so figures can be compared honestly.
type Machine struct {
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Hostname  string `json:"hostname"`
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

// resourceUsage is the process's CPU time and peak resident set (getrusage).
type resourceUsage struct {
	CPU    time.Duration
	MaxRSS int64 // bytes
}

func processUsage() resourceUsage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return resourceUsage{}
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	// Linux reports ru_maxrss in KiB.
	return resourceUsage{CPU: cpu, MaxRSS: int64(ru.Maxrss) * 1024}
}
