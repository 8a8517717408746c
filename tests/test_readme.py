"""The README's Python example runs as written (on ORL, from the repository root)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_face_tools_example_runs(
    shared_data: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Face tools", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace('"../shared/data/orl"', repr(str(shared_data / "orl")))
    monkeypatch.chdir(tmp_path)  # the example writes runs/people
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("Box(left=") and printed[0].endswith(" (128,)")
    assert printed[1].startswith("Verdict(") and "same=True" in printed[1]
    assert "label='s2'" in printed[2]
    assert printed[3:] == ["10", "1 0"]


def test_the_folders_the_readme_commands_write_are_ignored_by_git() -> None:
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        import pytest

        pytest.skip("not a git checkout")
    readme = (ROOT / "README.md").read_text()
    shell = "\n".join(re.findall(r"```bash\n(.*?)```", readme, re.S))
    written = re.findall(
        r"--out (\S+)|--gallery-dir (\S+)|prepare \S+ (\S+)|gallery add (\S+)", shell
    )
    folders = {next(group for group in match if group) for match in written}
    folders.add("eval-report")  # eval's default --out
    assert {"runs/data/orl150", "galleries", "runs/vit-tiny"} <= folders
    for folder in sorted(folders):
        probe = f"{folder.rstrip('/')}/file"
        done = subprocess.run(["git", "check-ignore", "-q", "--no-index", probe], cwd=ROOT)
        assert done.returncode == 0, f"{folder} is not ignored by git"
