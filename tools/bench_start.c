/*
 * bench_start.c - start-up cost of a program: runs PROGRAM ITERATIONS times (posix_spawn + wait,
 * environment inherited, so LD_PRELOAD applies when set) and prints "start <microseconds per
 * run>".  tools/bench.sh compares /bin/true with and without the shim.
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

int main(int argc, char **argv)
{
	struct timespec a, b;

	if (argc != 3) {
		fprintf(stderr, "usage: %s PROGRAM ITERATIONS\n", argv[0]);
		return 2;
	}
	long n = atol(argv[2]);
	char *args[] = {argv[1], NULL};
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		pid_t pid;
		int st;
		if (posix_spawn(&pid, argv[1], NULL, NULL, args, environ) ||
		    waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "bench_start: %s did not run cleanly\n", argv[1]);
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double us = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / 1e3;
	printf("start %.1f\n", us / (double)n);
	return 0;
}
