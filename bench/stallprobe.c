/*
 * stallprobe DIR SECONDS [THRESHOLD_US]: the application side of bench/recovery.
 *
 * Loops stat(DIR/sp<pid>.<n>) with a new, never looked-up name each time, so that every
 * call is a LOOKUP round trip to the FUSE server (answered ENOENT) and none is served from
 * the kernel's caches. It times completions with CLOCK_MONOTONIC and prints, for every gap
 * between two consecutive completions longer than THRESHOLD_US (default 100), a line
 *   gap <microseconds> <start> <end>
 * where start and end are the CLOCK_REALTIME times (seconds, 6 decimals) of the two
 * completions, so that bench/recovery can match a gap with the SIGKILL it sent and with the
 * restarted server's log lines. Any result other than ENOENT (ENOTCONN, ECONNABORTED, EIO, a
 * file that exists...) is an error the recovery contract forbids; each one prints
 *   error <errno name> <realtime>
 * It stops after SECONDS, or on SIGTERM/SIGINT, and then prints
 *   done <stats> <errors> <longest gap us>
 * Output is line-buffered. It opens nothing on the mount and has its cwd elsewhere, so it
 * never holds a file of a mount whose server is dead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double secs(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: stallprobe DIR SECONDS [THRESHOLD_US]\n");
		return 2;
	}
	const char *dir = argv[1];
	double limit = strtod(argv[2], NULL);
	double threshold = (argc == 4 ? strtod(argv[3], NULL) : 100.0) / 1e6;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: nothing to restart, stat is not interrupted */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (chdir("/") != 0)
		perror("chdir /");

	size_t len = strlen(dir) + 48;
	char *path = malloc(len);
	if (!path)
		return 1;
	long pid = (long)getpid();
	unsigned long n = 0, errors = 0;
	double longest = 0;
	double start = secs(CLOCK_MONOTONIC);
	double prev = start, prev_real = secs(CLOCK_REALTIME);
	struct stat st;
	while (!stop) {
		snprintf(path, len, "%s/sp%ld.%lu", dir, pid, n++);
		int rc = stat(path, &st);
		int err = rc == 0 ? EEXIST : errno;
		double now = secs(CLOCK_MONOTONIC), now_real = secs(CLOCK_REALTIME);
		if (err != ENOENT) {
			errors++;
			printf("error %s %.6f\n", strerrorname_np(err) ? strerrorname_np(err) : "?", now_real);
		}
		double gap = now - prev;
		if (gap > threshold)
			printf("gap %.0f %.6f %.6f\n", gap * 1e6, prev_real, now_real);
		if (gap > longest)
			longest = gap;
		prev = now;
		prev_real = now_real;
		if (now - start > limit)
			break;
	}
	printf("done %lu %lu %.0f\n", n, errors, longest * 1e6);
	free(path);
	return 0;
}
