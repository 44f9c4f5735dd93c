package main

import "syscall"

const (
	sigUSR1 = syscall.SIGUSR1
	sigUSR2 = syscall.SIGUSR2
	sigHUP  = syscall.SIGHUP
	sigKILL = syscall.SIGKILL
)
