"""The run's progress display (aeprobe.progress) and the process pool of the studies (aeprobe.studies.parallel)."""
from __future__ import annotations

import io
import os

import pytest

from aeprobe.progress import STATUS_ENV, Progress, file_task, hms
from aeprobe.studies.parallel import default_workers, map_jobs


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_quiet_mode_prints_one_line_per_stage():
    out = io.StringIO()  # not a TTY
    with Progress("demo", stream=out, stages=2) as p:
        with p.stage("training"):
            t = p.task("net a", epochs=3)
            for e in (1, 2, 3):
                t.on_epoch_end(e, {}, None)
            t.done()
        with p.stage("figures"):
            pass
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and [name for name, _ in p.timings] == ["training", "figures"]
    assert lines[0].startswith("[demo] stage 1/2 training: done in") and lines[0].endswith("1 net")
    assert lines[1].startswith("[demo] stage 2/2 figures: done in")


def test_disabled_progress_prints_nothing():
    out = _Tty()
    with Progress("demo", stream=out, enabled=False) as p:
        with p.stage("x"):
            p.task("n", 2).update(1)
    assert out.getvalue() == ""


def test_a_failed_stage_says_so():
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with Progress("demo", stream=out) as p, p.stage("training"):
            raise RuntimeError("boom")
    assert "training: failed" in out.getvalue()


def test_live_line_names_the_nets_their_epochs_and_the_eta():
    out = _Tty()
    with Progress("disks", stream=out, stages=3, interval=60) as p:
        with p.stage("training", work=20):
            a, b = p.task("bias-free", 10), p.task("biased seed 0", 10)
            a.update(5)
            b.update(5)
            line = p.line()
            assert "1/3 training" in line and "bias-free ep 5/10" in line and "biased seed 0 ep 5/10" in line
            assert "0/2 nets done" in line and "ETA" in line
            a.done()
            assert "bias-free" not in p.line() and "1/2 nets done" in p.line()
            p.note("figures of the main part")
            assert p.line().endswith("| figures of the main part")
            b.done()
            assert "ETA" not in p.line()  # nothing left to train
    assert out.getvalue().endswith("\n")  # the stage's last line is kept


def test_tasks_of_other_processes_report_through_status_files(tmp_path, monkeypatch):
    out = _Tty()
    with Progress("x", stream=out, interval=60) as p, p.stage("training"):
        status = p.status_dir()
        assert status is not None and status.is_dir()
        monkeypatch.setenv(STATUS_ENV, str(status))
        t = file_task("job1", "hole psi1", epochs=15)
        t.update(7)
        assert "hole psi1 ep 7/15" in p.line()
        t.done()
        assert "1/1 nets done" in p.line()


def test_file_task_without_a_status_dir_is_a_plain_task(monkeypatch):
    monkeypatch.delenv(STATUS_ENV, raising=False)
    t = file_task("k", "label", 3)
    t.update(2)
    assert t.epoch == 2 and not t.finished


def test_hms():
    assert hms(0) == "0:00" and hms(61.4) == "1:01" and hms(3725) == "1:02:05" and hms(float("nan")) == "?"


def _square(x):
    return x * x


def _env(_):
    return os.environ.get(STATUS_ENV)


def test_map_jobs_keeps_the_order_of_the_jobs(tmp_path):
    assert map_jobs(_square, [3, 1, 2]) == [9, 1, 4]
    assert map_jobs(_square, [3, 1, 2], workers=2, cost=lambda j: j) == [9, 1, 4]  # spawned processes
    assert map_jobs(_env, [0], status_dir=tmp_path) == [str(tmp_path)]
    assert os.environ.get(STATUS_ENV) is None or os.environ.get(STATUS_ENV) != str(tmp_path)


def test_default_workers_is_one_process_per_thread_at_most_one_per_job():
    assert default_workers(11, threads=2) == 2
    assert default_workers(1, threads=16) == 1
    assert default_workers(5, threads=1) == 1


def test_map_jobs_takes_an_iterator_and_reports_each_result_as_it_comes():
    def jobs():
        yield from (1, 2, 3)

    for workers in (1, 2):
        seen = []
        res = map_jobs(_square, jobs(), workers=workers, on_result=lambda i, r, pending: seen.append((i, r, pending)))
        assert res == [1, 4, 9]
        assert sorted((i, r) for i, r, _ in seen) == [(0, 1), (1, 4), (2, 9)]
        assert sorted(p for _, _, p in seen) == [0, 1, 2]  # jobs still to finish after each one
