package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of the CPU times in /proc/PID/stat; it is
// 100 on every Linux architecture Go supports.
const clockTick = 100

// processCPU returns the user+system CPU time a process has used so far,
// from /proc (Linux only); pid 0 is loadgen itself.
func processCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, err
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after its
	// closing parenthesis are space-separated, utime and stime being the
	// 14th and 15th fields of the line.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// cpuMeter samples the CPU time of loadgen and optionally of the server at
// the start and end of the measured window.
type cpuMeter struct {
	serverPID         int
	pg                *pgCPU
	pg0               map[int]time.Duration
	pgCPU             time.Duration
	pgDone            bool
	self0, server0    time.Duration
	selfOK, serverOK  bool
	selfCPU, srvCPU   time.Duration
	selfDone, srvDone bool
}

func (m *cpuMeter) start(ctx context.Context) {
	var err error
	if m.pg != nil {
		if m.pg0, err = m.pg.sample(ctx); err != nil {
			m.pg0 = nil
		}
	}
	m.self0, err = processCPU(0)
	m.selfOK = err == nil
	if m.serverPID > 0 {
		m.server0, err = processCPU(m.serverPID)
		m.serverOK = err == nil
	}
}

func (m *cpuMeter) stop(ctx context.Context) {
	if m.pg0 != nil {
		if after, err := m.pg.sample(ctx); err == nil {
			m.pgCPU, m.pgDone = delta(m.pg0, after), true
		}
	}
	if m.selfOK {
		if c, err := processCPU(0); err == nil {
			m.selfCPU, m.selfDone = c-m.self0, true
		}
	}
	if m.serverOK {
		if c, err := processCPU(m.serverPID); err == nil {
			m.srvCPU, m.srvDone = c-m.server0, true
		}
	}
}

// pgCPU sums the CPU time of the PostgreSQL processes that serve the
// benchmark database (its backends, plus the WAL writer, checkpointer and
// other auxiliary processes) by reading /proc: it works only when the
// database runs on this machine and loadgen may read its processes.
type pgCPU struct {
	db *sql.DB
}

func newPGCPU(url string) *pgCPU {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil
	}
	db.SetMaxOpenConns(1)
	return &pgCPU{db: db}
}

func (p *pgCPU) close() {
	if p != nil {
		p.db.Close()
	}
}

// sample returns the CPU time used so far by each relevant process.
func (p *pgCPU) sample(ctx context.Context) (map[int]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rows, err := p.db.QueryContext(ctx, `SELECT pid FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND (datname = current_database() OR backend_type <> 'client backend')`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		if c, err := processCPU(pid); err == nil {
			out[pid] = c
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no readable PostgreSQL process")
	}
	return out, rows.Err()
}

// delta is the CPU time used between two samples; a process that started
// in between counts in full, one that ended in between is lost.
func delta(before, after map[int]time.Duration) time.Duration {
	var d time.Duration
	for pid, a := range after {
		d += a - before[pid]
	}
	return d
}
