"""docs/ERRORS.md must list every error class with its real exit code, and exit codes must be distinct."""

import re
from pathlib import Path

from edgert import errors

DOC = Path(__file__).resolve().parents[1] / "docs" / "ERRORS.md"


def test_every_error_class_is_documented_with_its_exit_code_and_kind():
    rows = {m.group(2): (int(m.group(1)), m.group(3).strip())
            for m in re.finditer(r"^\| (\d+) \| `(\w+)` \| ([^|]+) \|", DOC.read_text(), re.MULTILINE)}
    for cls in errors.ALL_ERRORS:
        assert cls.__name__ in rows, f"{cls.__name__} missing from docs/ERRORS.md"
        assert rows[cls.__name__] == (cls.exit_code, cls.kind), cls.__name__
    assert set(rows) == {c.__name__ for c in errors.ALL_ERRORS}


def test_exit_codes_are_distinct_and_leave_2_to_click():
    codes = [c.exit_code for c in errors.ALL_ERRORS]
    assert len(codes) == len(set(codes)) and 2 not in codes and 0 not in codes


def test_catalogue_is_complete():
    found = {obj for obj in vars(errors).values()
             if isinstance(obj, type) and issubclass(obj, errors.EdgertError)}
    assert found == set(errors.ALL_ERRORS)
