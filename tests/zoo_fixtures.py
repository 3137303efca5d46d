"""Session fixtures that provide real models from the cache, fetching them if needed.

Use them from a test module with ``from tests.zoo_fixtures import rapidocr_models  # noqa: F401``;
a test that asks for one is skipped (with the pip error) when the models cannot be fetched.
"""

from __future__ import annotations

import pytest

from converters.zoo.fetch import FETCHERS, FetchError


def require_models(kind: str) -> dict:
    """{file stem: path} for ``kind`` ("rapidocr" or "mediapipe"), or skip the calling test when offline."""
    try:
        return FETCHERS[kind]()
    except FetchError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        pytest.skip(f"{kind} models unavailable (offline?): {lines[0]} ... {lines[-1]}")


@pytest.fixture(scope="session")
def rapidocr_models() -> dict:
    """RapidOCR 1.4.4's ONNX models: {stem: Path}."""
    return require_models("rapidocr")


@pytest.fixture(scope="session")
def mediapipe_models() -> dict:
    """MediaPipe 0.10.14's TFLite models: {stem: Path}."""
    return require_models("mediapipe")
