"""The README's threat model names a test for each line: each named test exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def threat_model_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Threat model") :]
    section = section[: section.index("\n## ", 1)]
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]


def test_every_line_of_the_threat_model_names_tests_that_exist():
    rows = threat_model_rows()
    assert len(rows) >= 8
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        named = re.findall(r"`((?:tests/[\w/]+\.py)?::\w+)`", cells[-1])
        if cells[-1] == "as the maintenance role's line":
            continue
        assert named, f"no test named for: {cells[0]}"
        path = None
        for name in named:
            file, _, function = name.partition("::")
            path = ROOT / file if file else path
            assert re.search(rf"^def {function}\(", path.read_text(), re.MULTILINE), (
                f"{path.name}::{function}"
            )
