"""Whether the process recorded on a run still runs: a finished, a killed-but-unreaped and a reused pid are dead."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from backup_pipeline.core.process_owner import ProcessOwner, this_host


def test_this_process_is_alive():
    me = ProcessOwner.current()
    assert me.host == this_host() and me.pid == os.getpid()
    assert me.is_alive()


def test_a_process_that_ended_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not ProcessOwner(host=this_host(), pid=child.pid).is_alive()


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_a_killed_process_its_parent_has_not_reaped_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = replace(ProcessOwner.current(), pid=child.pid, started=None)
        assert owner.is_alive()
        os.kill(child.pid, signal.SIGKILL)
        time.sleep(0.3)  # a zombie now: os.kill(pid, 0) still succeeds on it
        assert not owner.is_alive()
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_a_pid_given_to_another_process_since_is_not_the_runs():
    me = ProcessOwner.current()
    assert me.started is not None
    assert not replace(me, started=str(int(me.started) - 1)).is_alive()


@pytest.mark.skipif(not os.path.exists("/proc/self/ns/pid"), reason="needs PID namespaces")
def test_a_process_of_another_pid_namespace_is_never_taken_for_dead():
    # A container sharing this host name numbers its processes from 1: its pid, absent here, proves nothing.
    me = ProcessOwner.current()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    boot = me.namespace.split("/", 1)[0]
    other = replace(me, pid=child.pid, started=None, namespace=f"{boot}/pid:[1]")
    assert other.is_alive()
    # The same pid in this namespace is dead, and so is any process of a boot before this one.
    assert not replace(other, namespace=me.namespace).is_alive()
    assert not replace(other, namespace="another-boot/pid:[1]").is_alive()
