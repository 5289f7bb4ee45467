"""scripts/deps.sh with stand-ins for dpkg-query and apt-get: it waits for
another apt instead of failing, says what it installs and why, and two runs
at once install once.  (The real apt is not touched.)"""
import os
import subprocess

from conftest import ROOT

DPKG_QUERY = """#!/bin/sh
# dpkg-query -W -f=... PKG: everything is installed but xxd, until apt-get installs it
pkg=$3
if [ "$pkg" = xxd ] && [ ! -e "$STUB/installed" ]; then exit 1; fi
printf 'install ok installed'
"""

APT_GET = """#!/bin/sh
echo "$*" >> "$STUB/log"
case "$*" in
*update*)
	# the first update finds the lists locked by another apt
	[ -e "$STUB/updated" ] || { touch "$STUB/updated"; echo "E: Could not get lock /var/lib/apt/lists/lock" >&2; exit 100; }
	;;
*install*)
	sleep 1
	touch "$STUB/installed"
	;;
esac
exit 0
"""


def stubs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("dpkg-query", DPKG_QUERY), ("apt-get", APT_GET)):
        (bin_dir / name).write_text(text)
        os.chmod(bin_dir / name, 0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", STUB=str(tmp_path), DEPS_RETRY_S="1")
    return env


def deps(env, what="build"):
    return subprocess.Popen([os.path.join(ROOT, "scripts", "deps.sh"), what], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_deps_waits_for_another_apt_and_says_what_and_why(tmp_path):
    if os.getuid() != 0:
        import pytest
        pytest.skip("deps.sh installs only as root")
    env = stubs(tmp_path)
    p = deps(env)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "installing xxd (to build the shim and the tools)" in err
    assert "retrying" in err
    log = (tmp_path / "log").read_text().splitlines()
    assert ["update" in line.split() for line in log] == [True, True, False]
    assert log[-1].split()[-1] == "xxd" and "install" in log[-1].split()
    assert all("DPkg::Lock::Timeout=" in line for line in log)


def test_two_deps_runs_at_once_install_once(tmp_path):
    if os.getuid() != 0:
        import pytest
        pytest.skip("deps.sh installs only as root")
    env = stubs(tmp_path)
    (tmp_path / "updated").touch()          # no lock trouble here
    runs = [deps(env), deps(env)]
    for p in runs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    log = (tmp_path / "log").read_text().splitlines()
    assert sum("install" in line for line in log) == 1, log


def test_make_demo_needs_only_the_demo():
    """make demo builds the shim, the tool and the example it runs: not the
    test programs, whose packages (chromium, servers) the demo does not need."""
    p = subprocess.run(["make", "-n", "-B", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "deps.sh build" in p.stdout
    assert "deps.sh test" not in p.stdout and "build/tests/" not in p.stdout
    assert "build/examples/loop" in p.stdout
