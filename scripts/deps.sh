#!/bin/sh
# deps.sh build|test|bench — install the Debian packages asyncshim needs,
# only those missing, so `make`, `make test`, `make demo` and `make bench`
# work on a fresh Debian 12 machine as root.  Quiet when everything is present.
#
# Another apt (unattended-upgrades, a second make job) may hold dpkg's lock:
# we wait for it (up to $DEPS_LOCK_WAIT seconds) instead of failing, and two
# runs of this script take turns.
set -e
build="gcc clang libclang-rt-14-dev make pkg-config liburcu-dev libmsgpack-dev libunwind-dev libdw-dev libelf-dev xxd"
test="$build python3 python3-msgpack python3-pytest python3-pytest-timeout redis-server redis-tools
      memcached nginx-light libuv1-dev libevent-dev procps chromium python3-websocket python3-gevent libc6-dbg binutils time nodejs
      util-linux"
bench="$test hyperfine strace valgrind linux-perf"
case "${1:-build}" in
	build) want=$build; why="to build the shim and the tools" ;;
	test) want=$test; why="for make test (test servers, libuv/libevent, chromium for the HTML report)" ;;
	bench) want=$bench; why="for make bench (hyperfine, strace, valgrind, perf)" ;;
	*) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac
wait_s=${DEPS_LOCK_WAIT:-900}
retry_s=${DEPS_RETRY_S:-10}

missing_of() {
	m=""
	for p in $want; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || m="$m $p"
	done
	echo "$m"
}

missing=$(missing_of)
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "asyncshim: missing packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
	exit 1
fi
# one run of this script at a time; the loser re-checks what is still missing
exec 9>/var/lock/asyncshim-deps.lock
flock -w "$wait_s" 9 || { echo "asyncshim: another deps.sh held its lock for ${wait_s}s" >&2; exit 1; }
missing=$(missing_of)
[ -z "$missing" ] && exit 0
echo "asyncshim: installing$missing ($why)" >&2
export DEBIAN_FRONTEND=noninteractive
lock="-o DPkg::Lock::Timeout=$wait_s"
# apt-get update takes the lists lock, which DPkg::Lock::Timeout does not
# cover on every apt: retry while another apt holds it
tries=0
until apt-get $lock update -q >/dev/null; do
	tries=$((tries + 1))
	[ "$tries" -ge $((wait_s / retry_s)) ] && { echo "asyncshim: apt-get update kept failing" >&2; exit 1; }
	echo "asyncshim: apt-get update failed (another apt running?), retrying in $retry_s s" >&2
	sleep "$retry_s"
done
# services in the packages (redis, memcached, nginx) must not start at install
own_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
	own_policy=1
fi
status=0
apt-get $lock install -y -q --no-install-recommends $missing >/dev/null || status=$?
[ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
[ "$status" = 0 ] || echo "asyncshim: apt-get install$missing failed (status $status)" >&2
exit $status
