"""asyncshim run: what it tells a user about programs it cannot see into."""
import os
import subprocess

from conftest import TOOL, traces


def build_static(tmp_path, flag):
    src = tmp_path / "st.c"
    src.write_text("int main(void) { return 3; }\n")
    exe = tmp_path / ("st" + flag)
    subprocess.run(["cc", flag, "-o", str(exe), str(src)], check=True)
    return str(exe)


def test_run_says_a_static_binary_cannot_be_profiled(tmp_path):
    """A statically linked program has no dynamic loader, so LD_PRELOAD never
    loads the shim: run says so plainly, runs it anyway and keeps its status."""
    for flag in ("-static", "-static-pie"):
        exe = build_static(tmp_path, flag)
        p = subprocess.run([TOOL, "run", "-o", str(tmp_path / "t"), "--", exe],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 3
        assert f"{exe} is statically linked: LD_PRELOAD cannot reach it" in p.stderr
        assert "CGO_ENABLED=1" in p.stderr
        assert traces(tmp_path) == []


def test_run_is_quiet_about_dynamic_programs(tmp_path):
    p = subprocess.run([TOOL, "run", "-o", str(tmp_path / "t"), "--", "true"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert "statically linked" not in p.stderr
    # found along PATH, and through a script's interpreter
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh\nexit 4\n")
    os.chmod(script, 0o755)
    p = subprocess.run([TOOL, "run", "-o", str(tmp_path / "t"), "--", str(script)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 4 and "statically linked" not in p.stderr
