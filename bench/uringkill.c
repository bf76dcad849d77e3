// bench/uringkill.c: what a FUSE server's SIGKILL does to the requests in flight, over
// FUSE-over-io_uring (Linux 6.14+) and, for comparison, over read/write on /dev/fuse.
// Used by bench/uring-kill (see there); not a filesystem anyone should run.
//
//   uringkill MNT uring|dev     (as root; uring needs fuse's enable_uring=Y)
//
// The parent mounts MNT, answers INIT (asking for FUSE_OVER_IO_URING in uring mode) and keeps
// the /dev/fuse fd for the connection's whole life, as fuse-keeper does. Servers are forked
// children, one per "generation", serving a root directory with one file `f` (entry timeout
// 1 h, attribute timeout 0: each stat() is one GETATTR). Commands on stdin, one per line,
// each answered with one line on stdout:
//   spawn R   fork the next server. uring: one thread per CPU (each its own ring, NE
//             entries registered on its queue, buffers in a MAP_SHARED region the parent
//             made, so every generation has them at the same address); with R=1 it first
//             answers the requests it finds in the buffers of earlier generations and
//             commits them by their unique (a "resend" done in user space). dev: threads
//             reading and writing the shared /dev/fuse fd.
//   kill      SIGKILL the server and reap it.
//   resend    write FUSE_NOTIFY_RESEND to /dev/fuse (the kernel requeues what it had sent
//             through /dev/fuse and not seen answered).
//   quit      kill the server and exit (the caller then aborts and unmounts).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define NQ 2
#define NE 2
#define NGEN 64
#define PAYLOAD (256 * 1024)
#define SLOT (PAYLOAD + 4096)
#define OVER_IO_URING (1ULL << 41)
#define NOTIFY_RESEND 7

struct ent_in_out { uint64_t flags, commit_id; uint32_t payload_sz, padding; uint64_t reserved; };
struct req_header { char in_out[128]; char op_in[128]; struct ent_in_out ring; };
struct cmd_req { uint64_t flags, commit_id; uint16_t qid; uint8_t padding[6]; };

static int devfd;
static char *region;
static int gen;
static int replay;
static int dev_mode;

static char *slot(int g, int q, int e) { return region + (size_t)((g * NQ + q) * NE + e) * SLOT; }

static void fill_attr(struct fuse_attr *a, uint64_t ino) {
	memset(a, 0, sizeof *a);
	a->ino = ino;
	a->mode = ino == 1 ? (S_IFDIR | 0755) : (S_IFREG | 0644);
	a->nlink = ino == 1 ? 2 : 1;
	a->blksize = 4096;
}

// Handles one request (LOOKUP's name in `name`); returns the size of the reply written to
// `out` (which may be where `name` is) and sets *err.
static size_t handle(const struct fuse_in_header *ih, const char *name, void *out, int *err) {
	*err = 0;
	switch (ih->opcode) {
	case FUSE_LOOKUP: {
		struct fuse_entry_out *e = out;
		uint64_t ino = 0;
		if (ih->nodeid == 1 && !strcmp(name, "f")) ino = 2;
		memset(e, 0, sizeof *e);
		if (!ino) { *err = -ENOENT; return 0; }
		e->nodeid = ino; e->generation = 1; e->entry_valid = 3600; e->attr_valid = 0;
		fill_attr(&e->attr, ino);
		return sizeof *e;
	}
	case FUSE_GETATTR: {
		struct fuse_attr_out *a = out;
		memset(a, 0, sizeof *a);
		fill_attr(&a->attr, ih->nodeid);
		return sizeof *a;
	}
	default:
		*err = -ENOSYS;
		return 0;
	}
}

static void prep(struct io_uring *r, int cmd_op, int q, char *s, uint64_t commit) {
	struct io_uring_sqe *sqe = io_uring_get_sqe(r);
	// The kernel may read the iovecs after the submit (an SQE issued asynchronously): one
	// pair per slot, kept for the thread's life.
	static __thread struct iovec iov[NQ * NE * NGEN][2];
	int idx = (int)((s - region) / SLOT);
	iov[idx][0].iov_base = s; iov[idx][0].iov_len = sizeof(struct req_header);
	iov[idx][1].iov_base = s + 4096; iov[idx][1].iov_len = PAYLOAD;
	memset(sqe, 0, 128);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = devfd;
	sqe->cmd_op = cmd_op;
	sqe->addr = (uint64_t)(uintptr_t)iov[idx];
	sqe->len = 2;
	struct cmd_req *c = (struct cmd_req *)sqe->cmd;
	c->commit_id = commit; c->qid = q;
	io_uring_sqe_set_data(sqe, s);
}

static uint64_t answer(char *s) {
	struct req_header *h = (struct req_header *)s;
	struct fuse_in_header ih;
	memcpy(&ih, h->in_out, sizeof ih);
	int err;
	size_t n = handle(&ih, s + 4096, s + 4096, &err);
	struct fuse_out_header oh = { .len = sizeof oh + n, .error = err, .unique = ih.unique };
	memcpy(h->in_out, &oh, sizeof oh);
	h->ring.payload_sz = n;
	return ih.unique;
}

static void *queue_thread(void *arg) {
	int q = (int)(intptr_t)arg;
	cpu_set_t cs; CPU_ZERO(&cs); CPU_SET(q, &cs);
	sched_setaffinity(0, sizeof cs, &cs);
	struct io_uring r;
	int rc = io_uring_queue_init(16, &r, IORING_SETUP_SQE128);
	if (rc) { fprintf(stderr, "queue_init %d\n", rc); exit(1); }
	if (replay) {
		for (int g = 1; g < gen; g++)
			for (int e = 0; e < NE; e++) {
				char *s = slot(g, q, e);
				struct fuse_in_header ih;
				memcpy(&ih, ((struct req_header *)s)->in_out, sizeof ih);
				if (!ih.unique) continue;
				fprintf(stderr, "gen %d q %d: replaying slot g%d e%d unique %llu\n", gen, q, g, e, (unsigned long long)ih.unique);
				answer(s);
				prep(&r, 2, q, s, ih.unique);
			}
	}
	for (int e = 0; e < NE; e++) prep(&r, 1, q, slot(gen, q, e), 0);
	for (;;) {
		io_uring_submit_and_wait(&r, 1);
		struct io_uring_cqe *cqe;
		while (io_uring_peek_cqe(&r, &cqe) == 0) {
			char *s = io_uring_cqe_get_data(cqe);
			int res = cqe->res;
			io_uring_cqe_seen(&r, cqe);
			if (res < 0) {
				// -ENOENT: a replayed slot whose request was answered already.
				fprintf(stderr, "gen %d q %d: cqe res %d (%s)\n", gen, q, res, strerror(-res));
				continue;
			}
			uint64_t u = answer(s);
			prep(&r, 2, q, s, u);
		}
	}
	return NULL;
}

static void *dev_thread(void *arg) {
	(void)arg;
	static __thread char buf[PAYLOAD + 4096];
	char out[4096];
	for (;;) {
		ssize_t n = read(devfd, buf, sizeof buf);
		if (n < 0) { if (errno == EINTR || errno == ENOENT) continue; perror("read"); exit(1); }
		struct fuse_in_header *ih = (void *)buf;
		if (ih->opcode == FUSE_FORGET || ih->opcode == FUSE_BATCH_FORGET) continue;
		int err;
		size_t m = handle(ih, buf + sizeof *ih, out + sizeof(struct fuse_out_header), &err);
		struct fuse_out_header *oh = (void *)out;
		oh->len = sizeof *oh + m; oh->error = err; oh->unique = ih->unique;
		if (write(devfd, out, oh->len) < 0 && errno != ENOENT) perror("write");
	}
	return NULL;
}

static void serve(void) {
	pthread_t t[NQ];
	for (int q = 0; q < NQ; q++) pthread_create(&t[q], NULL, dev_mode ? dev_thread : queue_thread, (void *)(intptr_t)q);
	for (;;) pause();
}

int main(int argc, char **argv) {
	if (argc != 3 || (strcmp(argv[2], "dev") && strcmp(argv[2], "uring"))) {
		fprintf(stderr, "usage: uringkill MNT uring|dev\n");
		return 2;
	}
	dev_mode = !strcmp(argv[2], "dev");
	if (!dev_mode && NQ != sysconf(_SC_NPROCESSORS_CONF)) {
		fprintf(stderr, "built for %d CPUs (a queue each); this machine has %ld\n", NQ, sysconf(_SC_NPROCESSORS_CONF));
		return 2;
	}
	region = mmap(NULL, (size_t)NGEN * NQ * NE * SLOT, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED) { perror("mmap"); return 1; }
	devfd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (devfd < 0) { perror("/dev/fuse"); return 1; }
	char opts[256];
	snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", devfd);
	if (mount("uringkill", argv[1], "fuse.uringkill", MS_NOSUID | MS_NODEV, opts)) { perror("mount"); return 1; }
	char buf[8192];
	ssize_t n = read(devfd, buf, sizeof buf);
	if (n < (ssize_t)(sizeof(struct fuse_in_header) + sizeof(struct fuse_init_in))) { perror("INIT"); return 1; }
	struct fuse_in_header *ih = (void *)buf;
	struct fuse_init_in *ii = (void *)(buf + sizeof *ih);
	fprintf(stderr, "INIT %zd: %u.%u flags %#x flags2 %#x\n", n, ii->major, ii->minor, ii->flags, ii->flags2);
	struct { struct fuse_out_header oh; struct fuse_init_out io; } rep;
	memset(&rep, 0, sizeof rep);
	rep.oh.len = sizeof rep; rep.oh.unique = ih->unique;
	rep.io.major = 7; rep.io.minor = ii->minor;
	rep.io.max_readahead = ii->max_readahead;
	rep.io.flags = FUSE_INIT_EXT | FUSE_ASYNC_READ | FUSE_BIG_WRITES;
	rep.io.flags2 = dev_mode ? 0 : (uint32_t)(OVER_IO_URING >> 32);
	rep.io.max_write = 128 * 1024;
	rep.io.max_background = 16; rep.io.congestion_threshold = 12;
	if (write(devfd, &rep, sizeof rep) < 0) { perror("init reply"); return 1; }
	pid_t child = 0;
	char line[64];
	printf("ready\n"); fflush(stdout);
	while (fgets(line, sizeof line, stdin)) {
		if (!strncmp(line, "spawn", 5)) {
			if (gen + 1 >= NGEN) { printf("no generation left\n"); fflush(stdout); continue; }
			gen++;
			replay = atoi(line + 5);
			child = fork();
			if (!child) serve();
			printf("spawned gen %d pid %d\n", gen, child);
		} else if (!strncmp(line, "kill", 4)) {
			kill(child, SIGKILL); waitpid(child, NULL, 0);
			printf("killed %d\n", child);
		} else if (!strncmp(line, "resend", 6)) {
			struct fuse_out_header oh = { .len = sizeof oh, .error = NOTIFY_RESEND, .unique = 0 };
			printf("resend: %zd\n", write(devfd, &oh, sizeof oh));
		} else if (!strncmp(line, "quit", 4)) {
			if (child) { kill(child, SIGKILL); waitpid(child, NULL, 0); }
			printf("bye\n");
			break;
		}
		fflush(stdout);
	}
	return 0;
}
