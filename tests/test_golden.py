"""Golden runs: the outputs of short clips must not change unless meant to.

Runs each case of ``tests/golden_runs.py`` (the four-camera sample and PETS09, offline
and online association) and compares its CSV, MOT and summary outputs with the ones
stored in ``tests/golden/``. After an intended change of behaviour, regenerate them with
``PYTHONPATH=$PWD python3 -m tests.golden_runs`` and say why in the commit.
"""

from __future__ import annotations

import pytest

from tests.golden_runs import CASES, compare, run_case


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_match_the_golden_run(name, tmp_path):
    summary = run_case(name, tmp_path)
    problems = compare(name, tmp_path, summary)
    assert not problems, (f"{name} differs from tests/golden/{name} (if intended, "
                          "regenerate: PYTHONPATH=$PWD python3 -m tests.golden_runs "
                          f"{name}):\n" + "\n".join(problems))
