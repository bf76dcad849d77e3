/*
 * inodes create|stat ROOT NDIRS NFILES: the many-inodes side of bench/recovery.
 *
 *   create: makes ROOT/dNNNN/fNNNNN, NDIRS directories of NFILES empty files each
 *           (openat(O_CREAT|O_EXCL) + close relative to each directory's fd).
 *   stat:   stat()s every one of those paths by its full path, so that through a FUSE mount
 *           the kernel looks each directory and file up once (and keeps them for the entry
 *           timeout).
 * Prints "<ok> <failed> <seconds>" and, for the first failure, its path and errno on stderr.
 * Exit status 0 if everything succeeded, 1 otherwise. Built at bench time by bench/recovery.
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

int main(int argc, char **argv)
{
	if (argc != 5 || (strcmp(argv[1], "create") != 0 && strcmp(argv[1], "stat") != 0)) {
		fprintf(stderr, "usage: inodes create|stat ROOT NDIRS NFILES\n");
		return 2;
	}
	int create = strcmp(argv[1], "create") == 0;
	const char *root = argv[2];
	long ndirs = strtol(argv[3], NULL, 10), nfiles = strtol(argv[4], NULL, 10);
	char path[4096], name[32];
	unsigned long ok = 0, failed = 0;
	double t0 = now();
	for (long d = 0; d < ndirs; d++) {
		snprintf(path, sizeof(path), "%s/d%04ld", root, d);
		if (create) {
			if (mkdir(path, 0755) != 0 && errno != EEXIST) {
				if (!failed++)
					fprintf(stderr, "inodes: mkdir %s: %s\n", path, strerror(errno));
				continue;
			}
			int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (dfd < 0) {
				if (!failed++)
					fprintf(stderr, "inodes: open %s: %s\n", path, strerror(errno));
				continue;
			}
			for (long f = 0; f < nfiles; f++) {
				snprintf(name, sizeof(name), "f%05ld", f);
				int fd = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
				if (fd < 0 || close(fd) != 0) {
					if (!failed++)
						fprintf(stderr, "inodes: create %s/%s: %s\n", path, name, strerror(errno));
					continue;
				}
				ok++;
			}
			close(dfd);
		} else {
			struct stat st;
			for (long f = 0; f < nfiles; f++) {
				snprintf(path, sizeof(path), "%s/d%04ld/f%05ld", root, d, f);
				if (stat(path, &st) != 0) {
					if (!failed++)
						fprintf(stderr, "inodes: stat %s: %s\n", path, strerror(errno));
					continue;
				}
				ok++;
			}
		}
	}
	printf("%lu %lu %.3f\n", ok, failed, now() - t0);
	return failed ? 1 : 0;
}
