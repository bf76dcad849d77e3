/*
 * metaops DIR N [PAUSE]: create N empty files in DIR (open O_CREAT|O_EXCL + close), sleep
 * PAUSE seconds (default 0; bench/run passes more than the FUSE entry/attr timeout, so every
 * stat is a round trip to the server rather than a dcache hit whose share would depend on how
 * long the create phase took), then stat each by path, then unlink each; times each phase
 * with CLOCK_MONOTONIC and prints
 *   create <files/s>
 *   stat <files/s>
 *   unlink <files/s>
 * Built at bench time by bench/run. DIR must exist and must not hold files named f000000...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "metaops: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: metaops DIR N [PAUSE_SECONDS]\n");
		return 2;
	}
	const char *dir = argv[1];
	long n = strtol(argv[2], NULL, 10);
	if (n <= 0) {
		fprintf(stderr, "metaops: bad N %s\n", argv[2]);
		return 2;
	}
	size_t len = strlen(dir) + 16;
	char *paths = malloc(len * (size_t)n);
	if (!paths)
		die("malloc", "");
	for (long i = 0; i < n; i++)
		snprintf(paths + len * i, len, "%s/f%06ld", dir, i);

	double t0 = now();
	for (long i = 0; i < n; i++) {
		int fd = open(paths + len * i, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
		if (fd < 0)
			die("create", paths + len * i);
		if (close(fd) != 0)
			die("close", paths + len * i);
	}
	double t1 = now();
	double pause = argc == 4 ? strtod(argv[3], NULL) : 0;
	if (pause > 0) {
		struct timespec ts = { (time_t)pause, (long)((pause - (double)(time_t)pause) * 1e9) };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
	double t2 = now();
	struct stat st;
	for (long i = 0; i < n; i++)
		if (stat(paths + len * i, &st) != 0)
			die("stat", paths + len * i);
	double t3 = now();
	for (long i = 0; i < n; i++)
		if (unlink(paths + len * i) != 0)
			die("unlink", paths + len * i);
	double t4 = now();

	printf("create %.0f\n", n / (t1 - t0));
	printf("stat %.0f\n", n / (t3 - t2));
	printf("unlink %.0f\n", n / (t4 - t3));
	free(paths);
	return 0;
}
