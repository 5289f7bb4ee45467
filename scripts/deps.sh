#!/bin/sh
# deps.sh build|test|bench — install the Debian packages asyncshim needs,
# only those missing, so `make`, `make test` and `make demo` work on a fresh
# Debian 12 machine as root.  Quiet when everything is present.
set -e
build="gcc clang libclang-rt-14-dev make pkg-config liburcu-dev libmsgpack-dev libunwind-dev libdw-dev libelf-dev xxd"
test="$build python3 python3-msgpack python3-pytest python3-pytest-timeout redis-server redis-tools
      memcached nginx-light libuv1-dev libevent-dev procps chromium python3-websocket libc6-dbg binutils time"
bench="$test hyperfine strace valgrind linux-perf"
case "${1:-build}" in
	build) want=$build ;;
	test) want=$test ;;
	bench) want=$bench ;;
	*) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "asyncshim: missing packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
	exit 1
fi
echo "asyncshim: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# services in the packages (redis, memcached, nginx) must not start at install
own_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
	own_policy=1
fi
apt-get install -y -q --no-install-recommends $missing >/dev/null
[ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
exit 0
