"""libuv and libevent programs keep working under the shim's callback
wrappers: handles libuv restarts with the callback it holds, and the
arguments libevent hands back besides the callback call (finalizers,
bufferevents, read-back functions)."""
import pytest

from conftest import one_trace, prog, report, run_shim


def run(tmp_path, cmd):
    p = run_shim(cmd, tmp_path, check=False)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}: {p.stderr}"
    assert "asyncshim:" not in p.stderr
    return p.stdout.splitlines(), report(one_trace(tmp_path))["traces"][0]


# ---- libuv ----

def test_uv_repeating_timer_and_timer_again_keep_their_callback(tmp_path):
    """libuv restarts a repeating timer with uv_timer_again, which calls
    uv_timer_start with the callback the handle holds: the trampoline."""
    out, tr = run(tmp_path, [prog("uv_again"), "timer"])
    assert out == ["timer 5"]
    (cb,) = tr["slow_callbacks"]             # the repeating timer is still timed
    assert cb["function"] == "slow_repeat_cb" and cb["source"] == "uv_timer" and cb["count"] == 1


@pytest.mark.parametrize("mode", ["idle", "check", "prepare", "poll", "read", "listen"])
def test_uv_handle_restarted_with_the_callback_it_holds(tmp_path, mode):
    out, _ = run(tmp_path, [prog("uv_again"), mode])
    assert out == [f"{mode} 3"]


# ---- libevent ----

def test_bufferevent_free_in_a_read_callback(tmp_path):
    """bufferevent_free finalizes the bufferevent's events: libevent calls
    bufferevent_finalize_cb_ with the event's argument, the bufferevent."""
    out, _ = run(tmp_path, [prog("event_finalize"), "bufferevent"])
    assert out == ["read hello", "freed"]


def test_event_finalizers_get_the_programs_argument(tmp_path):
    """event_finalize and event_free_finalize, outside any callback and
    from inside the event's own callback (libevent's regress within_cb)."""
    out, _ = run(tmp_path, [prog("event_finalize"), "finalize"])
    assert out == ["finalized 4"]


def test_event_read_back_and_self_cbarg_are_the_programs(tmp_path):
    out, _ = run(tmp_path, [prog("event_finalize"), "readback"])
    assert out == ["readback ok", "self ok", "ran 4"]
