# bench/lib.sh: what bench/run and bench/recovery share, sourced by both right after
# `set -euo pipefail`. (bench/dense is Python and has its own.)
#
# A script sets LOG_TAG (the prefix of its log lines) before it sources this, then calls
# arm_cleanup before it mounts or starts anything, and make_workdir before anything that
# naps or builds. From then on every mount it lists in MOUNTS is undone on exit, error or
# Ctrl-C: a FUSE mount is aborted through /sys/fs/fuse/connections/N/abort (N from
# /proc/self/mountinfo, never from stat), then lazily unmounted; every process it lists in
# PIDS (and CHILD, the command `run` is waiting for) is killed by PID.
# shellcheck shell=bash disable=SC2034 # (variables set here for the scripts)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS_DIR=$REPO/bench/results

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$LOG_TAG" -1 "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# command_line "VAR..." ARGS...: how the script was called, for its report: "bash SCRIPT
# ARGS" after VAR='value' for each VAR set in the environment.
command_line() {
	local vars=$1 v cmd
	shift
	cmd="bash $0${*:+ $*}"
	for v in $vars; do
		if printenv "$v" >/dev/null; then cmd="$v='$(printenv "$v")' $cmd"; fi
	done
	echo "$cmd"
}

require_root() { [[ $EUID -eq 0 ]] || die "run as root ($1)"; } # require_root WHY

require_tools() { # require_tools HINT TOOL...: dies naming the first TOOL not on PATH (HINT may be "")
	local hint=$1 tool
	shift
	for tool; do
		command -v "$tool" >/dev/null || die "$tool not found${hint:+ ($hint)}"
	done
}

# ---------------------------------------------------------------- cleanup machinery
WORK=""
MOUNTS=()         # mountpoints we mount (FUSE)
PIDS=()           # servers (and keeper, probe) we started
FUSECTL_MOUNTED=0
CHILD=""          # the command `run` is waiting for now
NAPFD=""          # see nap

# run LIMIT CMD...: runs CMD under timeout(1), in the background and waited for, so that a
# Ctrl-C/TERM trap runs at once even if CMD is stuck in a hung FUSE server (the trap then
# aborts the connection, which unblocks it). The trap's own log lines then go where the
# caller sent run's stderr.
run() {
	local limit=$1 rc=0
	shift
	timeout -k 5 "$limit" "$@" &
	CHILD=$!
	wait "$CHILD" || rc=$?
	CHILD=""
	return "$rc"
}

# Prints "MAJ:MIN FSTYPE" of the topmost mount at exactly $1, from /proc/self/mountinfo.
mount_info() {
	awk -v m="$1" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { r = $3 " " $(i + 1); break } }
		END { if (r != "") print r }' /proc/self/mountinfo
}

is_mounted() { [[ -n $(mount_info "$1") ]]; }

fuse_mounted() { [[ $(mount_info "$1") == *" fuse"* ]]; }

# Tears down every mount at $1 without touching the (possibly dead) mountpoint itself.
abort_mount() {
	local mnt=$1 info dev fstype tries=0
	while info=$(mount_info "$mnt") && [[ -n $info ]] && ((tries++ < 8)); do
		read -r dev fstype <<<"$info"
		if [[ $fstype == fuse* ]]; then
			local minor=${dev#*:}
			if [[ -w /sys/fs/fuse/connections/$minor/abort ]]; then
				echo 1 >"/sys/fs/fuse/connections/$minor/abort" 2>/dev/null || true
			fi
		fi
		umount -l -c "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	done
}

kill_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || {
		wait "$pid" 2>/dev/null || true
		return 0
	}
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 30; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? m p busy=0
	trap - EXIT INT TERM
	# The latest first: a FUSE mount before the filesystem image its source is on.
	for ((m = ${#MOUNTS[@]} - 1; m >= 0; m--)); do abort_mount "${MOUNTS[m]}"; done
	if [[ -n $CHILD ]]; then kill_pid "$CHILD"; fi
	for p in "${PIDS[@]}"; do kill_pid "$p"; done
	if ((FUSECTL_MOUNTED)); then umount /sys/fs/fuse/connections 2>/dev/null || true; fi
	if [[ -n $WORK && -d $WORK ]]; then
		if [[ -n ${KEEP_WORK:-} ]]; then
			log "work dir kept: $WORK"
		else
			for m in "${MOUNTS[@]}"; do is_mounted "$m" && busy=1; done
			if ((busy)); then
				log "a mount is still present; leaving $WORK"
			else
				log "removing $WORK"
				rm -rf --one-file-system "$WORK"
			fi
		fi
	fi
	exit "$rc"
}

# Arms cleanup for exit, error, Ctrl-C and TERM, and mounts fusectl if it is not mounted.
arm_cleanup() {
	[[ -d /sys/fs/fuse/connections ]] || die "/sys/fs/fuse/connections missing (modprobe fuse)"
	trap cleanup EXIT
	trap 'log interrupted; exit 130' INT
	trap 'log terminated; exit 143' TERM
	if ! mount_info /sys/fs/fuse/connections | grep -q fusectl; then
		mount -t fusectl fusectl /sys/fs/fuse/connections
		FUSECTL_MOUNTED=1
	fi
}

# ---------------------------------------------------------------- work dir and builds
# make_workdir PREFIX: a new WORK under WORKBASE, with BUILD and LOGS in it, and the FIFO
# nap reads.
make_workdir() {
	WORK=$(realpath "$(mktemp -d "$WORKBASE/$1.XXXXXX")")
	BUILD=$WORK/build
	LOGS=$WORK/logs
	mkdir -p "$BUILD" "$LOGS" "$RESULTS_DIR"
	mkfifo "$WORK/nap.fifo"
	exec {NAPFD}<>"$WORK/nap.fifo"
	log "work dir $WORK ($(workdir_fs))"
}

workdir_fs() { df -PT "$WORK" | awk 'NR == 2 { print $2 " on " $1 }'; } # e.g. "ext4 on /dev/vda"

# image_fs NAME SIZE: a journaled ext4 of its own (mkfs.ext4 defaults) on a SIZE image
# WORK/NAME.img, loop-mounted at WORK/NAME (undone by cleanup, after the FUSE mounts made
# since); image_fs_description SIZE says so in a report.
image_fs() {
	require_tools "bash .ci/install-deps" mkfs.ext4
	truncate -s "$2" "$WORK/$1.img"
	mkfs.ext4 -q -F "$WORK/$1.img"
	mkdir -p "$WORK/$1"
	MOUNTS+=("$WORK/$1")
	mount -o loop "$WORK/$1.img" "$WORK/$1"
}
image_fs_description() { echo "ext4 with a journal (mkfs.ext4 defaults) on a loop-mounted $1 image in the work dir"; }

# nap SECONDS: a sleep that forks nothing (an external sleep would compete for the CPUs
# with a server being started): a read with a timeout from a FIFO nobody writes to.
nap() { read -rt "$1" -u "$NAPFD" _ || true; }

# poll_until PID TRIES SECONDS CMD...: CMD every SECONDS until it succeeds (returns 0), PID
# is gone (1) or TRIES tries failed (2). Forks nothing but what CMD forks.
poll_until() {
	local pid=$1 tries=$2 interval=$3 i
	shift 3
	for ((i = 0; i < tries; i++)); do
		"$@" && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		nap "$interval"
	done
	return 2
}

# cargo_build PKG...: cargo build --release of the packages, from what BUILD_FROM says:
# "worktree" builds the working tree in place (its target/); a git revision is exported
# (others' half-done edits are not measured, nor break the build) to $BUILD/tree and built
# in CARGO_CACHE, kept between runs (and shared by the scripts) for incremental builds.
# Sets BUILT_DIR to where the binaries are.
cargo_build() {
	local pkg args=()
	for pkg; do args+=(-p "$pkg"); done
	if [[ $BUILD_FROM == worktree ]]; then
		log "cargo build --release ${args[*]} (working tree)"
		(cd "$REPO" && cargo build --release "${args[@]}" >&2)
		BUILT_DIR=$REPO/target/release
	else
		log "cargo build --release ${args[*]} (git $BUILD_FROM, target dir $CARGO_CACHE)"
		mkdir -p "$BUILD/tree"
		git -C "$REPO" archive "$BUILD_FROM" | tar -x -C "$BUILD/tree"
		(cd "$BUILD/tree" && CARGO_TARGET_DIR=$CARGO_CACHE cargo build --release "${args[@]}" >&2)
		BUILT_DIR=$CARGO_CACHE/release
	fi
}

# What cargo_build builds from, for the report.
describe_build() {
	if [[ $BUILD_FROM == worktree ]]; then
		local dirty
		dirty=$(git -C "$REPO" status --porcelain --untracked-files=no | awk '{ print $2 }' | paste -sd' ' -)
		echo "the working tree at $(git -C "$REPO" rev-parse --short HEAD)${dirty:+, with uncommitted changes in: $dirty}"
	else
		echo "git $BUILD_FROM = $(git -C "$REPO" rev-parse --short "$BUILD_FROM") (exported, uncommitted changes not included)"
	fi
}

build_c() { # build_c NAME...: bench/NAME.c -> $BUILD/NAME
	local name
	for name; do cc -O2 -Wall -o "$BUILD/$name" "$REPO/bench/$name.c"; done
}

# ---------------------------------------------------------------- servers
drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# start_server LOG CMD...: CMD in the background, its stderr appended to LOG; sets SERVER_PID
# and SPAWN_T (the realtime just before the fork).
SERVER_PID=""
SPAWN_T=""
start_server() {
	local logf=$1
	shift
	SPAWN_T=$EPOCHREALTIME
	"$@" 2>>"$logf" &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
}

# wait_mounted MNT PID: until a FUSE mount is at MNT (10 s at most); fails if PID exits first.
wait_mounted() { poll_until "$2" 200 0.05 fuse_mounted "$1"; }

wait_exit() { poll_until "$1" $(($2 * 20)) 0.05 false || true; } # wait_exit PID SECONDS: until PID is gone

# stop_server MNT PID [UMOUNT_LIMIT [EXIT_LIMIT]]: a clean unmount (the server then exits
# and, if tagged, unregisters), aborted if umount takes over UMOUNT_LIMIT s (60); the server
# is killed if still there EXIT_LIMIT s (30) later.
stop_server() {
	local mnt=$1 pid=$2 umount_limit=${3:-60} exit_limit=${4:-30}
	if is_mounted "$mnt"; then
		run "$umount_limit" umount "$mnt" 2>/dev/null || {
			log "umount $mnt failed: aborting the connection"
			abort_mount "$mnt"
		}
	fi
	wait_exit "$pid" "$exit_limit"
	if kill -0 "$pid" 2>/dev/null; then
		log "server $pid still running $exit_limit s after unmount: killing it"
	fi
	kill_pid "$pid"
}

# ---------------------------------------------------------------- measurements
# rounds N ORDER FUNC ITEM...: N rounds of FUNC ITEM ROUND for every ITEM, in the order
# given (ORDER=same) or reversed every other round (ORDER=alternate), so that load from
# elsewhere on the machine falls on all of them alike.
rounds() {
	local n=$1 order=$2 func=$3 _round _k
	shift 3
	for ((_round = 1; _round <= n; _round++)); do
		if [[ $order == alternate ]] && ((_round % 2 == 0)); then
			for ((_k = $#; _k >= 1; _k--)); do "$func" "${!_k}" "$_round"; done
		else
			for _k; do "$func" "$_k" "$_round"; done
		fi
	done
}

# run_metaops DIR PAUSE OUT ERR [OPTION...]: a new directory DIR, sync, then bench/metaops.c
# (with the OPTIONs: -d SIZE, -p PROCS) for NFILES files in it (PAUSE s before the stat
# phase; 5 min at most), its report in OUT.
run_metaops() {
	mkdir "$1"
	sync
	run 300 "$BUILD/metaops" "${@:5}" "$1" "$NFILES" "$2" >"$3" 2>"$4"
}

# metaops_rates OUT ARRAY KEY [PREFIX]: adds every phase's rate in OUT (a metaops report:
# create, stat, unlink, and read with -d) to ARRAY[PREFIXcreate,KEY] etc., space-separated.
metaops_rates() {
	local -n rates=$2
	local phase value
	while read -r phase value; do
		# shellcheck disable=SC2004 # (an associative array: shellcheck cannot tell through -n)
		rates[${4:-}$phase,$3]+="$value "
	done <"$1"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
maximum() { printf '%s\n' "$@" | sort -g | tail -1; }

# ---------------------------------------------------------------- report
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

TABLE=""
row() { TABLE+="$*"$'\n'; } # a line of the results table

# report_head TITLE DATE WHAT BUILT_FROM: the first lines of a report.
report_head() {
	echo "# $1"
	echo
	echo "- date: $2"
	echo "- command: \`$COMMAND\` (from $REPO)"
	echo "- $3 built from: $4"
	echo "- kernel: $(uname -r); $(nproc) CPUs: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "- memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
}
