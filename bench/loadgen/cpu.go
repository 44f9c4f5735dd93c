package loadgen

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// userHZ is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const userHZ = 100

// ProcessCPU is pid's user+system CPU seconds so far, 0 when unknown.
func ProcessCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name, which may itself hold spaces.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / userHZ
}

// softirqSeconds is the machine's softirq CPU seconds so far (the seventh
// field of /proc/stat's cpu line).
func softirqSeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	v, _ := strconv.ParseFloat(f[7], 64)
	return v / userHZ
}

// CPUMeter measures the server's CPU time and the machine's softirq time
// over a phase.
type CPUMeter struct {
	pid         int
	cpu0, soft0 float64
}

// StartCPU starts measuring; pid 0 measures softirq time only.
func StartCPU(pid int) CPUMeter {
	return CPUMeter{pid: pid, cpu0: ProcessCPU(pid), soft0: softirqSeconds()}
}

// Fill sets r's CPU fields from the start until now, per million answers
// from r.Answered.
func (m CPUMeter) Fill(r *Result) {
	if m.pid > 0 {
		r.ServerCPU = ProcessCPU(m.pid) - m.cpu0
	}
	r.Softirq = softirqSeconds() - m.soft0
	if r.Answered > 0 {
		r.CPUPerMillion = r.ServerCPU / float64(r.Answered) * 1e6
		r.SoftirqPerMillion = r.Softirq / float64(r.Answered) * 1e6
	}
}
