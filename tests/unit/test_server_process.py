"""lgsid.serving.process: a server that dies or never answers gives an error naming its log, and is stopped."""

import subprocess
import sys

import pytest

from lgsid.serving.process import free_port, stop_process_group, wait_for_ping


def test_a_server_that_exits_is_reported_with_its_exit_code_and_log():
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"], start_new_session=True)
    proc.wait(30)
    with pytest.raises(RuntimeError, match=r"exited with 3; log: srv\.log"):
        wait_for_ping(proc, f"http://127.0.0.1:{free_port()}", 30, "srv.log")


def test_a_server_that_never_answers_is_stopped_at_the_timeout():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        with pytest.raises(RuntimeError, match=r"did not answer /ping in 0 s; log: srv\.log"):
            wait_for_ping(proc, f"http://127.0.0.1:{free_port()}", 0, "srv.log")
        assert proc.poll() is not None  # the whole process group was stopped
    finally:
        stop_process_group(proc)
