"""Coverage-guided fuzzing of the IRC codec and door with atheris (libFuzzer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).parent.parent / "fuzz" / "fuzz_irc.py"


# libFuzzer stops itself after 20 s of fuzzing; instrumenting the imports
# before that takes most of a minute on a loaded 2-core machine.
@pytest.mark.timeout(240)
def test_atheris_finds_no_crash_in_the_irc_codec_and_door(tmp_path):
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate([
        b"PRIVMSG #f :hello\r\n",
        b"@label=1;+t=v MODE #f +kol key 3 fuzzer\r\n",
        b"CAP LS 302\r\nCAP REQ :batch server-time\r\nCHATHISTORY LATEST #f * 5\r\n",
        b"KICK #f,#g a,b :x\r\nWHO * %tcuihsnfdlaor,1\r\n",
    ]):
        (corpus / f"seed{i}").write_bytes(seed)
    result = subprocess.run(
        [sys.executable, str(HARNESS), "-runs=3000", "-max_total_time=20", "-max_len=700",
         "-timeout=20", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=200,
    )
    crashes = list(tmp_path.glob("crash-*"))
    assert result.returncode == 0 and not crashes, result.stderr[-3000:]
