/*
 * initprobe RUNS CMD [ARGS...]: a stock FUSE server's own start-up, as fuse-wrap starts it.
 *
 * RUNS times: a SOCK_SEQPACKET socket pair, then CMD forked and executed in a process group
 * of its own with every "%m" in ARGS replaced by /dev/fd/N (N its end of the pair, as
 * fuse-wrap passes it: libfuse >= 3.3 and go-fuse take it as an already mounted device), a
 * FUSE_INIT sent to it (major 7, the minor of <linux/fuse.h>, the flags fuse-wrap offers
 * before the kernel's grant is known), and the time from just before the fork to the INIT
 * reply's arrival timed with CLOCK_MONOTONIC; then the process group is killed (SIGKILL) and
 * reaped. Prints, for each run,
 *   startup <milliseconds>
 * and "fail <why>" for a run without a valid reply (within 30 s). This is what the wrapper
 * itself does at a restart, less its bookkeeping: bench/wrap subtracts its median from the
 * stall an application sees across a SIGKILL of the wrapped server.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What fuse-wrap offers (wrap/src/lib.rs, RELAYED). */
#define OFFER                                                                                  \
	(FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_DONT_MASK | FUSE_AUTO_INVAL_DATA |           \
	 FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO | FUSE_ASYNC_DIO | FUSE_WRITEBACK_CACHE | \
	 FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | FUSE_CACHE_SYMLINKS | FUSE_SETXATTR_EXT |     \
	 FUSE_INIT_EXT)

static int one_run(int argc, char **argv)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		printf("fail socketpair: %s\n", strerror(errno));
		return 1;
	}
	char dev[32];
	snprintf(dev, sizeof dev, "/dev/fd/%d", sv[1]);
	char **args = calloc((size_t)argc + 1, sizeof *args);
	if (!args)
		return 1;
	for (int i = 0; i < argc; i++) {
		char *at = strstr(argv[i], "%m");
		if (!at) {
			args[i] = argv[i];
			continue;
		}
		size_t n = strlen(argv[i]) + strlen(dev);
		args[i] = malloc(n);
		if (!args[i])
			return 1;
		snprintf(args[i], n, "%.*s%s%s", (int)(at - argv[i]), argv[i], dev, at + 2);
	}
	double t0 = now();
	pid_t pid = fork();
	if (pid < 0) {
		printf("fail fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		setpgid(0, 0);
		fcntl(sv[1], F_SETFD, 0);
		close(sv[0]);
		execvp(args[0], args);
		_exit(127);
	}
	close(sv[1]);
	struct {
		struct fuse_in_header h;
		struct fuse_init_in in;
	} req;
	memset(&req, 0, sizeof req);
	req.h.len = sizeof req;
	req.h.opcode = FUSE_INIT;
	req.h.unique = 2;
	req.in.major = FUSE_KERNEL_VERSION;
	req.in.minor = FUSE_KERNEL_MINOR_VERSION;
	req.in.max_readahead = 1 << 20;
	req.in.flags = (uint32_t)OFFER;
	req.in.flags2 = (uint32_t)((uint64_t)OFFER >> 32);
	int rc = 0;
	if (send(sv[0], &req, sizeof req, MSG_NOSIGNAL) != (ssize_t)sizeof req) {
		printf("fail send: %s\n", strerror(errno));
		rc = 1;
	} else {
		struct pollfd p = { .fd = sv[0], .events = POLLIN };
		char buf[4096];
		int ready = poll(&p, 1, 30000);
		ssize_t n = ready > 0 ? recv(sv[0], buf, sizeof buf, 0) : -1;
		double t1 = now();
		struct fuse_out_header oh;
		if (n >= (ssize_t)sizeof oh) {
			memcpy(&oh, buf, sizeof oh);
			if (oh.error == 0 && oh.unique == 2)
				printf("startup %.3f\n", (t1 - t0) * 1e3);
			else
				printf("fail INIT answered %d\n", oh.error), rc = 1;
		} else {
			printf("fail no INIT reply (%s)\n", ready == 0 ? "timeout" : "the server exited");
			rc = 1;
		}
	}
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(sv[0]);
	for (int i = 0; i < argc; i++)
		if (args[i] != argv[i])
			free(args[i]);
	free(args);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: initprobe RUNS CMD [ARGS...] (%%m: /dev/fd/N)\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	int runs = atoi(argv[1]), failures = 0;
	for (int i = 0; i < runs; i++)
		failures += one_run(argc - 2, argv + 2);
	return failures ? 1 : 0;
}
