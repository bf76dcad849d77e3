/*
 * metaops [-d SIZE] [-p PROCS] DIR N [PAUSE]
 *
 * Default: create N empty files in DIR (open O_CREAT|O_EXCL + close), sleep PAUSE seconds
 * (default 0; bench/run passes more than the FUSE entry/attr timeout, so every stat is a
 * round trip to the server rather than a dcache hit whose share would depend on how long the
 * create phase took), then stat each by path, then unlink each; times each phase with
 * CLOCK_MONOTONIC and prints
 *   create <files/s>
 *   stat <files/s>
 *   unlink <files/s>
 *
 * -d SIZE: files with data: the create phase also writes SIZE bytes to each file before the
 * close, and a read phase after the stat phase opens each, reads it back (one read of SIZE
 * bytes, checking the length and the bytes stamped at both ends) and closes it. Prints
 * "read <files/s>" between stat and unlink.
 *
 * -p PROCS: PROCS processes in parallel, process K in its own directory DIR/pK (made before
 * the first phase), with N/PROCS of the files each (N in all). The phases are kept apart by a
 * barrier (pipes to and from the parent): no process starts a phase before every process has
 * finished the one before; the rate of a phase is N over the time from the first process
 * starting it to the last one finishing it.
 *
 * metaops -1 PHASE [-d SIZE] DIR N: one phase alone (for bench/count), PHASE being create,
 * stat, read or unlink as above (read needs the files of "create" with the same -d), or
 * pread: DIR is then a file of at least N * SIZE bytes (SIZE 4096 without -d), opened once,
 * posix_fadvise(POSIX_FADV_RANDOM) (no readahead: one page cache miss per read), read with N
 * preads of SIZE bytes at offsets 0, SIZE, 2 * SIZE, ..., closed. Prints "PHASE <ops/s>".
 *
 * Built at bench time by bench/run, bench/recovery and bench/count. DIR must exist and must
 * not hold files named f000000... (or directories p0...).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { CREATE, STAT, READ, UNLINK, PREAD, NPHASES };
static const char *phase_name[NPHASES] = { "create", "stat", "read", "unlink", "pread" };

static char *paths;      /* N paths, len bytes apart */
static size_t len;
static long data_size;   /* -d: bytes per file (0: empty files) */
static char *wbuf, *rbuf;
static int in_child;     /* a -p child: errors are reported to the parent */
static int done_fd = -1; /* a child's end of the pipe to the parent */

struct report { double t0, t1; int ok; };

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "metaops: %s %s: %s\n", what, path, strerror(errno));
	if (in_child) {
		struct report r = { 0, 0, 0 };
		if (write(done_fd, &r, sizeof r) < 0)
			_exit(1);
		_exit(1);
	}
	exit(1);
}

static void pause_for(double pause)
{
	if (pause <= 0)
		return;
	struct timespec ts = { (time_t)pause, (long)((pause - (double)(time_t)pause) * 1e9) };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The content of file i: a byte pattern with i stamped at both ends. */
static void fill(char *buf, long i)
{
	memset(buf, 'a' + (int)(i % 26), (size_t)data_size);
	if (data_size >= (long)sizeof i) {
		memcpy(buf, &i, sizeof i);
		memcpy(buf + data_size - sizeof i, &i, sizeof i);
	}
}

static void write_all(int fd, const char *buf, size_t n, const char *path)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write", path);
		buf += w;
		n -= (size_t)w;
	}
}

static void check_content(long i, ssize_t got, const char *path)
{
	if (got != data_size) {
		fprintf(stderr, "metaops: read %s: %zd bytes, not %ld\n", path, got, data_size);
		errno = EIO;
		die("read", path);
	}
	long head = i, tail = i;
	if (data_size >= (long)sizeof i) {
		memcpy(&head, rbuf, sizeof i);
		memcpy(&tail, rbuf + data_size - sizeof i, sizeof i);
	}
	if (head != i || tail != i || rbuf[data_size / 2] != 'a' + (int)(i % 26)) {
		fprintf(stderr, "metaops: read %s: wrong content\n", path);
		errno = EIO;
		die("read", path);
	}
}

/* Phase ph on files [lo, hi). */
static void run_phase(int ph, long lo, long hi)
{
	struct stat st;
	for (long i = lo; i < hi; i++) {
		const char *p = paths + len * (size_t)i;
		int fd;
		switch (ph) {
		case CREATE:
			fd = open(p, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
			if (fd < 0)
				die("create", p);
			if (data_size > 0) {
				fill(wbuf, i);
				write_all(fd, wbuf, (size_t)data_size, p);
			}
			if (close(fd) != 0)
				die("close", p);
			break;
		case STAT:
			if (stat(p, &st) != 0)
				die("stat", p);
			break;
		case READ:
			fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				die("open", p);
			ssize_t got;
			do
				got = read(fd, rbuf, (size_t)data_size);
			while (got < 0 && errno == EINTR);
			if (got < 0)
				die("read", p);
			check_content(i, got, p);
			if (close(fd) != 0)
				die("close", p);
			break;
		case UNLINK:
			if (unlink(p) != 0)
				die("unlink", p);
			break;
		}
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: metaops [-d SIZE] [-p PROCS] DIR N [PAUSE_SECONDS]\n"
			"       metaops -1 create|stat|read|unlink|pread [-d SIZE] DIR N\n");
	exit(2);
}

static int parse_phase(const char *s)
{
	for (int ph = 0; ph < NPHASES; ph++)
		if (strcmp(s, phase_name[ph]) == 0)
			return ph;
	fprintf(stderr, "metaops: unknown phase %s\n", s);
	exit(2);
}

static void pread_phase(const char *file, long n)
{
	size_t bs = data_size > 0 ? (size_t)data_size : 4096;
	char *buf = malloc(bs);
	if (!buf)
		die("malloc", "");
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open", file);
	errno = posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	if (errno != 0)
		die("posix_fadvise", file);
	for (long i = 0; i < n; i++) {
		ssize_t got = pread(fd, buf, bs, (off_t)i * (off_t)bs);
		if (got != (ssize_t)bs) {
			if (got >= 0)
				errno = EIO;
			die("pread", file);
		}
	}
	if (close(fd) != 0)
		die("close", file);
	free(buf);
}

int main(int argc, char **argv)
{
	int opt, procs = 0, single = -1;
	while ((opt = getopt(argc, argv, "+d:p:1:")) != -1) {
		switch (opt) {
		case 'd':
			data_size = strtol(optarg, NULL, 10);
			if (data_size <= 0 || data_size > (1L << 30)) {
				fprintf(stderr, "metaops: bad SIZE %s\n", optarg);
				return 2;
			}
			break;
		case 'p':
			procs = (int)strtol(optarg, NULL, 10);
			if (procs <= 0 || procs > 1024) {
				fprintf(stderr, "metaops: bad PROCS %s\n", optarg);
				return 2;
			}
			break;
		case '1':
			single = parse_phase(optarg);
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2 && argc - optind != 3)
		usage();
	const char *dir = argv[optind];
	long n = strtol(argv[optind + 1], NULL, 10);
	if (n <= 0) {
		fprintf(stderr, "metaops: bad N %s\n", argv[optind + 1]);
		return 2;
	}
	double pause = argc - optind == 3 ? strtod(argv[optind + 2], NULL) : 0;
	if (procs > n)
		procs = (int)n;
	if (single == READ && data_size == 0) {
		fprintf(stderr, "metaops: read needs -d SIZE\n");
		return 2;
	}

	if (single == PREAD) {
		double t0 = now();
		pread_phase(dir, n);
		printf("pread %.0f\n", n / (now() - t0));
		return 0;
	}

	len = strlen(dir) + 32;
	paths = malloc(len * (size_t)n);
	if (!paths)
		die("malloc", "");
	if (data_size > 0) {
		wbuf = malloc((size_t)data_size);
		rbuf = malloc((size_t)data_size);
		if (!wbuf || !rbuf)
			die("malloc", "");
	}
	/* Process k (of procs) has files [n * k / procs, n * (k + 1) / procs) in DIR/pk. */
	for (int k = 0; k < (procs ? procs : 1); k++) {
		long lo = procs ? n * k / procs : 0, hi = procs ? n * (k + 1) / procs : n;
		if (procs) {
			char sub[len];
			snprintf(sub, len, "%s/p%d", dir, k);
			if (mkdir(sub, 0755) != 0)
				die("mkdir", sub);
		}
		for (long i = lo; i < hi; i++) {
			if (procs)
				snprintf(paths + len * (size_t)i, len, "%s/p%d/f%06ld", dir, k, i);
			else
				snprintf(paths + len * (size_t)i, len, "%s/f%06ld", dir, i);
		}
	}

	int phases[4], nph = 0;
	phases[nph++] = CREATE;
	phases[nph++] = STAT;
	if (data_size > 0)
		phases[nph++] = READ;
	phases[nph++] = UNLINK;
	double rate[NPHASES];

	if (single >= 0) {
		double t0 = now();
		run_phase(single, 0, n);
		printf("%s %.0f\n", phase_name[single], n / (now() - t0));
		return 0;
	}

	if (!procs) {
		/* One process: each phase timed around its loop; the pause is not timed. */
		for (int j = 0; j < nph; j++) {
			if (phases[j] == STAT)
				pause_for(pause);
			double t0 = now();
			run_phase(phases[j], 0, n);
			rate[phases[j]] = n / (now() - t0);
		}
	} else {
		int go[2], done[2];
		if (pipe(go) != 0 || pipe(done) != 0)
			die("pipe", "");
		pid_t *pids = calloc((size_t)procs, sizeof *pids);
		if (!pids)
			die("calloc", "");
		for (int k = 0; k < procs; k++) {
			pids[k] = fork();
			if (pids[k] < 0)
				die("fork", "");
			if (pids[k] == 0) {
				in_child = 1;
				done_fd = done[1];
				close(go[1]);
				close(done[0]);
				long lo = n * k / procs, hi = n * (k + 1) / procs;
				for (int j = 0; j < nph; j++) {
					char c;
					if (read(go[0], &c, 1) != 1)
						_exit(1); /* the parent is gone */
					struct report r;
					r.t0 = now();
					run_phase(phases[j], lo, hi);
					r.t1 = now();
					r.ok = 1;
					if (write(done[1], &r, sizeof r) != sizeof r)
						_exit(1);
				}
				_exit(0);
			}
		}
		close(go[0]);
		close(done[1]);
		int failed = 0;
		for (int j = 0; j < nph && !failed; j++) {
			if (phases[j] == STAT)
				pause_for(pause);
			char release[1024];
			memset(release, 'g', (size_t)procs);
			if (write(go[1], release, (size_t)procs) != procs)
				die("write", "barrier");
			double first = 0, last = 0;
			for (int k = 0; k < procs; k++) {
				struct report r;
				ssize_t got = read(done[0], &r, sizeof r);
				if (got != sizeof r || !r.ok) {
					fprintf(stderr, "metaops: a process failed in the %s phase\n", phase_name[phases[j]]);
					failed = 1;
					break;
				}
				if (k == 0 || r.t0 < first)
					first = r.t0;
				if (k == 0 || r.t1 > last)
					last = r.t1;
			}
			rate[phases[j]] = n / (last - first);
		}
		close(go[1]); /* children waiting for a phase read EOF and exit */
		for (int k = 0; k < procs; k++) {
			if (failed)
				kill(pids[k], SIGTERM);
			int status;
			while (waitpid(pids[k], &status, 0) < 0 && errno == EINTR)
				;
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
				failed = 1;
		}
		if (failed)
			return 1;
		for (int k = 0; k < procs; k++) {
			char sub[len];
			snprintf(sub, len, "%s/p%d", dir, k);
			if (rmdir(sub) != 0)
				die("rmdir", sub);
		}
	}

	for (int j = 0; j < nph; j++)
		printf("%s %.0f\n", phase_name[phases[j]], rate[phases[j]]);
	free(paths);
	return 0;
}
