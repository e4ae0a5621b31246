"""The README starts with exactly the two commands, and .ci/run runs the second one."""

import re
import subprocess

from .conftest import EXAMPLES, ROOT


def _fenced_bash(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)\n```", text, re.S | re.M)


def test_readme_opens_with_two_commands():
    text = (ROOT / "README.md").read_text()
    before_prose = text.split("\n\nThe first command")[0]
    blocks = _fenced_bash(before_prose)
    assert len(blocks) == 2 and all("\n" not in b for b in blocks)
    main, tests = blocks
    assert main.startswith("python3 -m venv .venv && .venv/bin/pip install")
    assert main.endswith("nanoto evaluate workflows/examples/cantilever_periodic.yaml")
    assert (EXAMPLES / "cantilever_periodic.yaml").is_file()  # test_cli runs this job
    assert "pytest" in tests and "[all,test]" in tests


def test_ci_runs_the_readme_test_command():
    script = ROOT / ".ci" / "run"
    awk = re.search(r"\$\(awk '(.*?)' README.md\)", script.read_text()).group(1)
    out = subprocess.run(["awk", awk, "README.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _fenced_bash((ROOT / "README.md").read_text())[1]
