#!/usr/bin/env bash
# Compares caddy-tftp with tftpd-hpa, atftpd and dnsmasq on loopback, inside
# a private network namespace, with one load client (bench/tftpload) that
# checks every byte it receives against files whose SHA-256 it verified.
#
#   bench/compare.sh [--quick] [--reps N] [--servers "ours tftpd-hpa atftpd dnsmasq"]
#                    [--cases REGEX] [--diag] [--profile DIR] [--out FILE] [--keep]
#
#   --quick    one repetition of fewer, shorter cases (a smoke run, ~4 min)
#   --reps N   repetitions (default 3); cells are medians over them
#   --servers  which servers to run (default: all four, plus "ours-dflt",
#              caddy-tftp with its default per-host limit, in the
#              concurrency cases)
#   --cases RE only the cases whose name matches the extended regex RE
#   --diag     add the diagnostic cases of the client-disagreement question
#              (issue 20): short runs, warm-up, client and server on
#              separate CPUs, both on one CPU
#   --profile DIR  for every case, count the server's system calls, context
#              switches and CPU migrations (perf stat) into DIR, and sum them
#              up per transfer in DIR/summary.txt
#   --record DIR   for every case, record a call graph of ours (perf record -g
#              at 4999 Hz) into DIR/CASE-ours-REP.perf.data; use one of the
#              two at a time, and neither for the table: perf skews it
#   --out FILE also write the table to FILE (and its raw lines to
#              FILE without .txt plus .raw.txt)
#   --keep     keep the work directory (raw results, server logs)
#
# The table ends with issue 20's goal rows, each measured with both load
# clients: tftpload's own (blocking syscalls for one client, netpoller
# otherwise, block-by-block comparison) and "-indep" cases, which behave
# like the independent client the issue was measured with (netpoller, a
# socket and fresh buffers per transfer, SHA-256 per file).
#
# It needs root (network namespace, port 69, apt-get) and Go. Missing tools
# are installed with apt-get; tftpd-hpa and atftpd conflict as packages, so
# both are downloaded and unpacked into bench/.cache instead of installed.
#
# Method: every case runs against a freshly started server; the servers take
# turns within each repetition, in an order rotated by one per repetition.
# Single-stream cases ("-pin") run server and client on CPU 0 (taskset).
# Server CPU is utime+stime from /proc/PID/stat (threads and waited-for
# children included) read by the client before and after each run; for
# tftpd-hpa, which forks per request and never waits for its children, it
# is perf's task-clock of the whole process tree when perf is installed.
# Peak RSS is VmHWM after clear_refs reset it before the run (tftpd-hpa:
# the sampled sum over its process tree).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
CACHE=${TFTPBENCH_CACHE:-$BENCH/.cache}

QUICK=0
REPS=3
SERVERS="ours tftpd-hpa atftpd dnsmasq ours-dflt"
OUT=""
CASEFILTER=""
DIAG=0
PROFILE=""
RECORD=""
KEEP=0
IN_NS=0
ARGS=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 REPS=1 ;;
	--reps) REPS=$2; shift ;;
	--servers) SERVERS=$2; shift ;;
	--cases) CASEFILTER=$2; shift ;;
	--diag) DIAG=1 ;;
	--profile) PROFILE=$2; shift ;;
	--record) RECORD=$2; shift ;;
	--out) OUT=$2; shift ;;
	--keep) KEEP=1 ;;
	--in-ns) IN_NS=1 ;;
	-h | --help) sed -n '2,50p' "$0"; exit 0 ;;
	*) echo "unknown option: $1" >&2; exit 2 ;;
	esac
	shift
done

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- setup --

setup() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "compare.sh needs root (network namespace, port 69, apt-get); run it with sudo" >&2
		exit 1
	fi
	command -v go >/dev/null || { echo "Go is needed" >&2; exit 1; }
	local need=()
	command -v unshare >/dev/null || need+=(util-linux)
	command -v taskset >/dev/null || need+=(util-linux)
	command -v ip >/dev/null || need+=(iproute2)
	[ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
	# Shared libraries of the two unpacked servers.
	for lib in libwrap0 libpcre2-8-0; do
		dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q 'ok installed' || need+=("$lib")
	done
	local perf_ok=1
	command -v perf >/dev/null || perf_ok=0
	if [ ${#need[@]} -gt 0 ] || [ $perf_ok = 0 ] || [ ! -x "$CACHE/tftpd-hpa/usr/sbin/in.tftpd" ] || [ ! -x "$CACHE/atftpd/usr/sbin/atftpd" ]; then
		log "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
	fi
	if [ ${#need[@]} -gt 0 ]; then
		log "apt-get install ${need[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
	fi
	if [ $perf_ok = 0 ]; then
		# Only for tftpd-hpa's CPU time; the comparison runs without it.
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends linux-perf >/dev/null 2>&1 ||
			log "perf unavailable: tftpd-hpa's CPU time will be missing"
	fi
	mkdir -p "$CACHE"
	for pkg in tftpd-hpa atftpd; do
		local bin=$CACHE/$pkg/usr/sbin/in.tftpd
		[ $pkg = atftpd ] && bin=$CACHE/$pkg/usr/sbin/atftpd
		if [ ! -x "$bin" ]; then
			log "downloading $pkg"
			rm -rf "$CACHE/$pkg" "$CACHE"/${pkg}_*.deb
			(cd "$CACHE" && apt-get download -q "$pkg" >/dev/null)
			dpkg-deb -x "$CACHE"/${pkg}_*.deb "$CACHE/$pkg"
		fi
	done
	log "building the dev binary and tftpload"
	(cd "$REPO" && go build -o "$CACHE/caddy" ./cmd/caddy && go build -o "$CACHE/tftpload" ./bench/tftpload)
}

if [ -n "$PROFILE" ]; then
	mkdir -p "$PROFILE"
	PROFILE=$(cd "$PROFILE" && pwd)
fi
if [ -n "$RECORD" ]; then
	mkdir -p "$RECORD"
	RECORD=$(cd "$RECORD" && pwd)
fi

if [ $IN_NS = 0 ]; then
	setup
	exec unshare -n -- "$0" --in-ns "${ARGS[@]}"
fi

# --------------------------------------------------- inside the netns --

ip link set lo up
# glibc's AI_ADDRCONFIG ignores 127.0.0.1: tftpd-hpa needs another address
# on lo to resolve its -a argument.
ip addr add 127.0.0.2/8 dev lo

HPA=$CACHE/tftpd-hpa/usr/sbin/in.tftpd
ATFTPD=$CACHE/atftpd/usr/sbin/atftpd
DNSMASQ=/usr/sbin/dnsmasq
LOAD=$CACHE/tftpload
ADDR=127.0.0.1:69

WORK=$(mktemp -d /tmp/tftpbench.XXXXXX)
chmod 755 "$WORK"
ROOT=$WORK/root
RAW=$WORK/raw.txt
cleanup() {
	[ -n "${SPID:-}" ] && kill -TERM "$SPID" 2>/dev/null || true
	[ -n "${PERFPID:-}" ] && kill -TERM "$PERFPID" 2>/dev/null || true
	if [ $KEEP = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
"$LOAD" -mkfile "$ROOT"
chmod 1777 "$ROOT" # uploads, by servers running as nobody
: >"$RAW"

HAVE_PERF=0
command -v perf >/dev/null && perf stat -x, -e task-clock -o /dev/null -- true 2>/dev/null && HAVE_PERF=1

SPID="" PERFPID="" PERFOUT=""

# start_server NAME PIN FILES...: starts NAME (pinned to CPU 0 if PIN is 1
# or split),
# waits until it answers and, for caddy-tftp, uploads FILES into its memory
# store. Sets SPID.
start_server() {
	local name=$1 pin=$2
	shift 2
	local ts=()
	case $pin in 1 | split) ts=(taskset -c 0) ;; esac
	PERFPID="" PERFOUT=""
	case $name in
	ours | ours-dflt)
		local perhost=1024
		[ $name = ours-dflt ] && perhost=128
		TFTPBENCH_LISTEN=$ADDR TFTPBENCH_PER_HOST=$perhost \
			"${ts[@]}" "$CACHE/caddy" run --config "$BENCH/Caddyfile" --adapter caddyfile \
			>>"$WORK/$name.log" 2>&1 &
		SPID=$!
		;;
	tftpd-hpa)
		if [ $HAVE_PERF = 1 ]; then
			PERFOUT=$WORK/perf.txt
			"${ts[@]}" perf stat -x, -e task-clock -o "$PERFOUT" -- \
				"$HPA" -L -a $ADDR -s -c -u nobody "$ROOT" >>"$WORK/$name.log" 2>&1 &
			PERFPID=$!
			SPID=""
			for _ in $(seq 100); do
				SPID=$(pgrep -P $PERFPID -x in.tftpd || true)
				[ -n "$SPID" ] && break
				sleep 0.01
			done
		else
			"${ts[@]}" "$HPA" -L -a $ADDR -s -c -u nobody "$ROOT" >>"$WORK/$name.log" 2>&1 &
			SPID=$!
		fi
		;;
	atftpd)
		"${ts[@]}" "$ATFTPD" --daemon --no-fork --port 69 --bind-address 127.0.0.1 --logfile - \
			--maxthread 1024 "$ROOT" >>"$WORK/$name.log" 2>&1 &
		SPID=$!
		;;
	dnsmasq)
		"${ts[@]}" "$DNSMASQ" --keep-in-foreground --conf-file=/dev/null --port=0 --enable-tftp \
			--tftp-root="$ROOT" --listen-address=127.0.0.1 --bind-interfaces --user=nobody \
			--group=nogroup --pid-file= --log-facility=- --tftp-max=1024 >>"$WORK/$name.log" 2>&1 &
		SPID=$!
		;;
	esac
	if ! "$LOAD" -addr $ADDR -wait 5s; then
		log "$name did not start; its log:"
		tail -20 "$WORK/$name.log" >&2
		exit 1
	fi
	if [[ $name == ours* ]]; then
		local f
		for f in "$@"; do
			"$LOAD" -addr $ADDR -put "$f" -src "$ROOT/$f" -blksize 65464 -windowsize 16 >/dev/null
		done
	fi
}

stop_server() {
	kill -TERM "$SPID" 2>/dev/null || true
	wait "$SPID" 2>/dev/null || true
	if [ -n "$PERFPID" ]; then
		wait "$PERFPID" 2>/dev/null || true
	fi
	SPID="" PERFPID=""
}

# record_perf LABEL: adds tftpd-hpa's task-clock of the last run.
record_perf() {
	[ -n "$PERFOUT" ] && [ -s "$PERFOUT" ] || return 0
	local ms
	ms=$(awk -F, '$3 ~ /task-clock/ {print $1}' "$PERFOUT" | head -1)
	[ -n "$ms" ] && echo "PERF $1 task_clock_ms=$ms" >>"$RAW"
}

# The server's system calls (all, and the ones a TFTP server makes per
# packet or per transfer), context switches and migrations, for --profile.
PSTAT_EVENTS=raw_syscalls:sys_enter,context-switches,cpu-migrations,task-clock
for sc in sendto sendmsg sendmmsg recvfrom recvmsg recvmmsg socket bind close setsockopt getsockname \
	epoll_wait epoll_pwait epoll_ctl futex write nanosleep openat pread64 tgkill madvise mmap; do
	PSTAT_EVENTS=$PSTAT_EVENTS,syscalls:sys_enter_$sc
done

# profile_start SERVER TAG / profile_stop: with --profile, perf stat (and
# for ours perf record -g) attached to the running server.
PSTATPID="" PRECPID=""
profile_start() {
	[ -n "$PROFILE$RECORD" ] || return 0
	if [ -n "$PROFILE" ]; then
		perf stat -x, -e "$PSTAT_EVENTS" -p "$SPID" -o "$PROFILE/stat-$2.txt" >/dev/null 2>&1 &
		PSTATPID=$!
	fi
	if [ -n "$RECORD" ] && [[ $1 == ours* ]]; then
		perf record -q -g -F 4999 -p "$SPID" -o "$RECORD/$2.perf.data" >/dev/null 2>&1 &
		PRECPID=$!
	fi
	sleep 0.3 # let perf attach
}
profile_stop() {
	[ -n "$PROFILE$RECORD" ] || return 0
	local p
	for p in $PSTATPID $PRECPID; do
		kill -INT "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	PSTATPID="" PRECPID=""
}

# profile_summary TAG RESULT-FILE: one line of counts per transfer.
profile_summary() {
	[ -n "$PROFILE" ] && [ -s "$PROFILE/stat-$1.txt" ] || return 0
	local ok
	ok=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' "$2")
	[ -n "$ok" ] && [ "$ok" -gt 0 ] || return 0
	awk -F, -v tag="$1" -v ok="$ok" '
		$3 != "" && $1 ~ /^[0-9.]+$/ {
			name = $3; sub(/^syscalls:sys_enter_/, "", name); sub(/^raw_syscalls:sys_enter$/, "syscalls", name)
			if ($1 > 0) line = line sprintf(" %s=%.2f", name, $1 / ok)
		}
		END { printf "%s transfers=%d per transfer:%s\n", tag, ok, line }' "$PROFILE/stat-$1.txt" >>"$PROFILE/summary.txt"
}

# run_case NAME SERVER REP KIND PIN FILE TFTPLOAD-ARGS...
# PIN: 0 no pinning, 1 server and client on CPU 0, split server on CPU 0
# and client on CPU 1.
# For uploads FILE is replaced by a name unique to the server and repetition
# (tftpd-hpa only overwrites world-writable files).
run_case() {
	local cs=$1 srv=$2 rep=$3 kind=$4 pin=$5 file=$6
	shift 6
	local args=("$@")
	if [ "$kind" = put ]; then
		file="put-$cs-$srv-$rep.bin"
		args=(-put "$file" "${args[@]}")
	fi
	local label="case=$cs server=$srv rep=$rep kind=$kind want=$(want_of "$@")"
	local ts=()
	case $pin in 1) ts=(taskset -c 0) ;; split) ts=(taskset -c 1) ;; esac
	local tree=()
	[ "$srv" = tftpd-hpa ] && tree=(-tree)
	local files=()
	[ "$kind" != put ] && files=("$file")
	start_server "$srv" "$pin" "${files[@]}"
	local err=$WORK/err.txt rc=0
	profile_start "$srv" "$cs-$srv-$rep"
	"${ts[@]}" "$LOAD" -addr $ADDR -pid "$SPID" "${tree[@]}" -label "$label" -out "$RAW" "${args[@]}" \
		>"$WORK/res.txt" 2>"$err" || rc=$?
	profile_stop
	[ $rc = 0 ] && profile_summary "$cs-$srv-$rep" "$WORK/res.txt"
	local why=""
	if [ $rc != 0 ]; then
		why=failed
		grep -q 'server error' "$err" && why=refused
	elif [ "$kind" = put ] &&
		! "$LOAD" -addr $ADDR -get "$file" -size 16777216 -seed 21 -blksize 1468 >/dev/null 2>>"$err"; then
		# The upload read back differs (or cannot be read).
		why=readback-failed
	fi
	stop_server
	record_perf "$label"
	if [ -n "$why" ]; then
		echo "FAILED $label why=$why" >>"$RAW"
		log "$cs $srv rep $rep: $why: $(tail -1 "$err")"
	else
		[ -s "$err" ] && log "$cs $srv rep $rep: $(tail -1 "$err")"
		log "$cs $srv rep $rep: $(sed 's/^RESULT //; s/case=[^ ]* server=[^ ]* rep=[^ ]* kind=[^ ]* //' "$WORK/res.txt" | cut -c1-220)"
	fi
}

# want_of ARGS: the block/window size asked for, BS/W.
want_of() {
	local bs=512 w=1
	while [ $# -gt 0 ]; do
		case $1 in
		-blksize) bs=$2; shift ;;
		-windowsize) w=$2; shift ;;
		esac
		shift
	done
	echo "$bs/$w"
}

# ---------------------------------------------------------------- cases --

# Each case: NAME KIND PIN FILE ARGS. Concurrency runs are not pinned.
CASES=()
add() { CASES+=("$*"); }
M="-root $ROOT"
if [ $QUICK = 1 ]; then
	add get16m-b512-pin single 1 f16m -get f16m $M -n 3
	add get16m-b1468-pin single 1 f16m -get f16m $M -blksize 1468 -n 3
	add get16m-b65464-pin single 1 f16m -get f16m $M -blksize 65464 -n 3
	add get16m-b1468-w64-pin single 1 f16m -get f16m $M -blksize 1468 -windowsize 64 -n 3
	add f1k-c64 conc 0 f1k -get f1k $M -blksize 1468 -c 64 -n 3000 -duration 5s
	add f1k-c64-indep conc 0 f1k -get f1k $M -blksize 1468 -c 64 -n 3000 -duration 5s -client indep
	add f1k-c256 conc 0 f1k -get f1k $M -blksize 1468 -c 256 -n 5000 -duration 5s
	add f1k-c256-indep conc 0 f1k -get f1k $M -blksize 1468 -c 256 -n 5000 -duration 5s -client indep
	add f1m-c1 conc 0 f1m -get f1m $M -blksize 1468 -c 1 -n 100 -duration 3s
	add f1m-c1-indep conc 0 f1m -get f1m $M -blksize 1468 -c 1 -n 100 -duration 3s -client indep
	add f1m-c64 conc 0 f1m -get f1m $M -blksize 1468 -c 64 -n 300 -duration 5s
	add f1m-c64-indep conc 0 f1m -get f1m $M -blksize 1468 -c 64 -n 300 -duration 5s -client indep
	add f1m-c256 conc 0 f1m -get f1m $M -blksize 1468 -c 256 -n 400 -duration 5s
	add put16m-b512-pin put 1 - -size 16777216 -seed 21
	add put16m-b1468-pin put 1 - -size 16777216 -seed 21 -blksize 1468
else
	add get16m-b512-pin single 1 f16m -get f16m $M -n 3
	add get16m-b1468-pin single 1 f16m -get f16m $M -blksize 1468 -n 3
	add get16m-b8192-pin single 1 f16m -get f16m $M -blksize 8192 -n 3
	add get16m-b65464-pin single 1 f16m -get f16m $M -blksize 65464 -n 3
	add get16m-b1468-w4-pin single 1 f16m -get f16m $M -blksize 1468 -windowsize 4 -n 3
	add get16m-b1468-w16-pin single 1 f16m -get f16m $M -blksize 1468 -windowsize 16 -n 3
	add get16m-b1468-w64-pin single 1 f16m -get f16m $M -blksize 1468 -windowsize 64 -n 3
	add f1k-c1 conc 0 f1k -get f1k $M -blksize 1468 -c 1 -n 5000 -duration 6s
	add f1k-c16 conc 0 f1k -get f1k $M -blksize 1468 -c 16 -n 10000 -duration 6s
	add f1k-c64 conc 0 f1k -get f1k $M -blksize 1468 -c 64 -n 10000 -duration 6s
	add f1k-c64-indep conc 0 f1k -get f1k $M -blksize 1468 -c 64 -n 10000 -duration 6s -client indep
	add f1k-c256 conc 0 f1k -get f1k $M -blksize 1468 -c 256 -n 20000 -duration 6s
	add f1k-c256-indep conc 0 f1k -get f1k $M -blksize 1468 -c 256 -n 20000 -duration 6s -client indep
	add f1m-c1 conc 0 f1m -get f1m $M -blksize 1468 -c 1 -n 200 -duration 6s
	add f1m-c1-indep conc 0 f1m -get f1m $M -blksize 1468 -c 1 -n 200 -duration 6s -client indep
	add f1m-c16 conc 0 f1m -get f1m $M -blksize 1468 -c 16 -n 1000 -duration 6s
	add f1m-c64 conc 0 f1m -get f1m $M -blksize 1468 -c 64 -n 1000 -duration 6s
	add f1m-c64-indep conc 0 f1m -get f1m $M -blksize 1468 -c 64 -n 1000 -duration 6s -client indep
	add f1m-c256 conc 0 f1m -get f1m $M -blksize 1468 -c 256 -n 1000 -duration 6s
	add put16m-b512-pin put 1 - -size 16777216 -seed 21
	add put16m-b1468-pin put 1 - -size 16777216 -seed 21 -blksize 1468
fi

if [ $DIAG = 1 ]; then
	# The client-disagreement question (issue 20), 1 KiB x 64 clients:
	# short runs from a cold server like the baseline's 2000 transfers,
	# the same after 2000 untimed transfers, client and server on
	# separate CPUs, and both on one CPU; each with both clients.
	for cl in native indep; do
		sfx=""
		[ $cl = indep ] && sfx=-indep
		add f1k-c64-n2000$sfx conc 0 f1k -get f1k $M -blksize 1468 -c 64 -n 2000 -client $cl
		add f1k-c64-n2000-warm$sfx conc 0 f1k -get f1k $M -blksize 1468 -c 64 -n 2000 -warmup 2000 -client $cl
		add f1k-c64-split$sfx conc split f1k -get f1k $M -blksize 1468 -c 64 -n 10000 -duration 5s -client $cl
		add f1k-c64-onecpu$sfx conc 1 f1k -get f1k $M -blksize 1468 -c 64 -n 10000 -duration 5s -client $cl
	done
fi
if [ -n "$CASEFILTER" ]; then
	kept=()
	for c in "${CASES[@]}"; do
		[[ ${c%% *} =~ $CASEFILTER ]] && kept+=("$c")
	done
	CASES=("${kept[@]}")
fi

# ------------------------------------------------------------------ run --

read -r -a SRV <<<"$SERVERS"
{
	echo "# caddy-tftp vs tftpd-hpa, atftpd, dnsmasq — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# machine: $(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) CPUs" \
		"($(grep -c ^processor /proc/cpuinfo) online), $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)," \
		"kernel $(uname -r)$(lscpu 2>/dev/null | awk -F': *' '/Hypervisor vendor/ {print ", VM (" $2 ")"}')"
	echo "# reps=$REPS quick=$QUICK diag=$DIAG rmem_max=$(cat /proc/sys/net/core/rmem_max)" \
		"loadavg at start=$(cut -d' ' -f1-3 /proc/loadavg) (a shared machine: other work may run alongside)"
	echo "# ours: ${TFTPBENCH_REV:-$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo '?')};" \
		"tftpd-hpa $(dpkg-deb -f "$CACHE"/tftpd-hpa_*.deb Version);" \
		"atftpd $(dpkg-deb -f "$CACHE"/atftpd_*.deb Version);" \
		"dnsmasq $("$DNSMASQ" --version | head -1 | awk '{print $3}')"
} >"$WORK/header.txt"
cat "$WORK/header.txt" >&2
START=$(date +%s)
for rep in $(seq 1 "$REPS"); do
	for c in "${CASES[@]}"; do
		read -r -a a <<<"$c"
		cs=${a[0]} kind=${a[1]} pin=${a[2]} file=${a[3]}
		args=("${a[@]:4}")
		n=${#SRV[@]}
		for i in $(seq 0 $((n - 1))); do
			srv=${SRV[$(((i + rep - 1) % n))]}
			# The default-limit variant only matters with many clients.
			if [ "$srv" = ours-dflt ] && [[ $cs != f1k-c64 && $cs != f1k-c256 && $cs != f1m-c256 ]]; then
				continue
			fi
			if [ "$srv" = dnsmasq ] && [ "$kind" = put ] && [ "$rep" != 1 ]; then
				continue # read-only: the refusal is recorded once
			fi
			run_case "$cs" "$srv" "$rep" "$kind" "$pin" "$file" "${args[@]}" || true
		done
	done
done
log "done in $(($(date +%s) - START)) s"

{
	cat "$WORK/header.txt"
	echo "# loadavg at end=$(cut -d' ' -f1-3 /proc/loadavg); took $(($(date +%s) - START)) s"
	echo
	"$LOAD" -report "$RAW"
} >"$WORK/table.txt"
cat "$WORK/table.txt"
if [ -n "$OUT" ]; then
	cp "$WORK/table.txt" "$OUT"
	cp "$RAW" "${OUT%.txt}.raw.txt"
fi
