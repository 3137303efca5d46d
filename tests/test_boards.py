"""Board profiles: every shipped profile is valid, bad ones fail clearly, detection picks the right one.

Pure Python and cheap, so these also run in the emulated aarch64 subset (marker ``arm``).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from edgert import boards
from edgert.boards import BoardError, detect, list_profiles, load_profile, parse_bytes

pytestmark = pytest.mark.arm

FIXTURES = Path(__file__).parent / "fixtures" / "proc"
BOARDS_DIR = Path(boards.__file__).resolve().parent.parent / "boards"
REQUIRED = {
    "rpi-zero-2w",
    "rpi-3b-plus",
    "rpi-4-1gb",
    "rpi-4-2gb",
    "rpi-4-4gb",
    "rpi-4-8gb",
    "rpi-5-4gb",
    "rpi-5-8gb",
    "orange-pi-5",
    "rock-5b",
    "jetson-nano",
    "generic-aarch64",
    "x86-64-host",
}


# ------------------------------------------------------------------------------ shipped profiles


def test_every_required_board_has_a_profile():
    assert REQUIRED <= set(list_profiles())


@pytest.mark.parametrize("board_id", list_profiles())
def test_profile_loads_and_validates(board_id):
    profile = load_profile(board_id)
    assert profile.id == board_id
    assert Path(profile.source).name == f"{board_id}.toml"
    assert 0 < profile.memory.budget_bytes < profile.memory.ram_bytes
    assert set(profile.cpu.big_cpu_ids) <= {c for cl in profile.cpu.clusters for c in cl.cpu_ids}
    assert profile.runtime.default_threads <= len(profile.cpu.big_cpu_ids)


def test_big_little_boards_use_only_their_a76_cores():
    for board_id in ("orange-pi-5", "rock-5b"):
        profile = load_profile(board_id)
        assert profile.cpu.big_cpu_ids == (4, 5, 6, 7)
        assert profile.little_cpu_ids == (0, 1, 2, 3)
        assert profile.runtime.pin_to_big_cores
        assert profile.runtime.default_threads == 4


def test_loaded_values_have_their_types():
    profile = load_profile("rpi-4-4gb")
    assert profile.memory.ram_bytes == 4 << 30
    assert profile.cpu.l2_bytes == 1 << 20
    assert profile.tiles.volume == (96, 96, 96)
    assert isinstance(profile.cpu.peak_gflops_per_core, float)
    assert profile.cpu.clusters[0].core == "cortex-a72"
    assert not profile.cpu.simd.fp16_arith


def test_sparse_crossover_on_the_x86_host_matches_the_measurements():
    sparse = load_profile("x86-64-host").sparse
    assert sparse.crossover_sparsity == pytest.approx(0.85, abs=0.01)
    assert sparse.prefers_sparse(0.9) and not sparse.prefers_sparse(0.8)


def test_load_by_path_and_unknown_id():
    assert load_profile(BOARDS_DIR / "jetson-nano.toml").id == "jetson-nano"
    with pytest.raises(BoardError, match=r"unknown board 'rpi-9'.*rpi-4-4gb"):
        load_profile("rpi-9")
    with pytest.raises(BoardError, match="not a board id"):
        load_profile("Rpi..4")


def test_edgert_boards_dir_is_searched_first(tmp_path, monkeypatch):
    text = (BOARDS_DIR / "rpi-4-4gb.toml").read_text().replace('"Raspberry Pi 4 Model B (4 GB)"', '"site copy"')
    (tmp_path / "rpi-4-4gb.toml").write_text(text)
    monkeypatch.setenv("EDGERT_BOARDS_DIR", str(tmp_path))
    assert load_profile("rpi-4-4gb").name == "site copy"
    assert boards.profile_dirs()[0] == tmp_path


def test_board_error_is_edgerts():
    errors = pytest.importorskip("edgert.errors")
    assert BoardError is errors.BoardError


# ------------------------------------------------------------------------------------ sizes


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0B", 0),
        ("512", 512),
        (4096, 4096),
        ("32KiB", 32 << 10),
        ("1 MiB", 1 << 20),
        ("1GiB", 1 << 30),
        ("1.5GiB", 3 << 29),
        ("2.8GiB", int(2.8 * (1 << 30))),
        ("2tib", 2 << 40),
    ],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("-1GiB", "negative"),
        (-5, "negative"),
        ("4GB", "unknown size unit 'GB'"),
        ("lots", "not a size"),
        ("1.5B", "whole number"),
    ],
)
def test_parse_bytes_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        parse_bytes(text)


@pytest.mark.parametrize("value", [True, 1.5, None, ["1GiB"]])
def test_parse_bytes_rejects_other_types(value):
    with pytest.raises(TypeError, match="expected a size"):
        parse_bytes(value)


# ------------------------------------------------------------------------------- bad profiles


def _broken(tmp_path, source_id, old, new, *, count=1, file_id=None):
    """Write a copy of a shipped profile with one edit; return its path."""
    text = (BOARDS_DIR / f"{source_id}.toml").read_text()
    assert len(re.findall(old, text, flags=re.MULTILINE)) >= 1, old
    path = tmp_path / f"{file_id or source_id}.toml"
    path.write_text(re.sub(old, new, text, count=count, flags=re.MULTILINE))
    return path


@pytest.mark.parametrize(
    "source_id, old, new, field, message",
    [
        ("rpi-4-4gb", r"^budget_bytes = .*$", "", "memory.budget_bytes", "missing"),
        (
            "rpi-4-4gb",
            r"^default_threads = 4",
            'default_threads = "four"',
            "runtime.default_threads",
            "expected an integer, got 'four' (str)",
        ),
        ("rpi-4-4gb", r"^budget_bytes = \"2.8GiB\"", 'budget_bytes = "-1GiB"', "memory.budget_bytes", "negative"),
        ("rpi-4-4gb", r"^budget_bytes = \"2.8GiB\"", "budget_bytes = -1073741824", "memory.budget_bytes", "negative"),
        ("rpi-4-4gb", r"^big_cpu_ids = .*$", "big_cpu_ids = [0, 1, 2, 9]", "cpu.big_cpu_ids", "[9] are in no cluster"),
        (
            "rpi-4-4gb",
            r"^pin_to_big_cores = false",
            "pin_to_big_cores = false\nturbo = true",
            "runtime.turbo",
            "unknown key",
        ),
        ("rpi-4-4gb", r"^\[tiles\]", "[tile]", "tile", "unknown key"),
        (
            "rpi-4-4gb",
            r"^cpu_ids = \[0, 1, 2, 3\]",
            'cpu_ids = [0, "1", 2, 3]',
            "cpu.clusters[0].cpu_ids[1]",
            "expected an integer",
        ),
        ("rpi-4-4gb", r"^budget_bytes = .*$", 'budget_bytes = "3.9GiB"', "memory.budget_bytes", "room for the OS"),
        ("rpi-4-4gb", r"^fp16_arith = false", "fp16_arith = true", "cpu.simd.fp16_arith", "cortex-a72"),
        ("rpi-4-4gb", r"^numba_cpu_name = .*$", 'numba_cpu_name = "cortex-a76"', "runtime.numba_cpu_name", "SIGILL"),
        (
            "rpi-4-4gb",
            r"^crossover_sparsity = .*$",
            "crossover_sparsity = 0.9",
            "sparse.crossover_sparsity",
            "1 - sparse_useful_gflops / dense_gflops",
        ),
        ("rpi-4-4gb", r"^volume = .*$", 'volume = "96x96"', "tiles.volume", "DxHxW"),
        ("rpi-4-4gb", r"^l2_bytes = .*$", "l2_bytes = 1.5", "cpu.l2_bytes", "expected a size"),
        ("rpi-4-4gb", r"^avx2 = false", "avx2 = true", "cpu.simd.avx2", "cannot be true on aarch64"),
        ("rpi-4-4gb", r"^default_threads = 4", "default_threads = 5", "runtime.default_threads", "big cores only"),
        ("rpi-4-4gb", r"^cpu_parts = .*$", 'cpu_parts = ["0xd0b"]', "detect.cpu_parts", "no cluster's core"),
        ("orange-pi-5", r"^big_cpu_ids = .*$", "big_cpu_ids = [0, 1, 2, 3]", "cpu.big_cpu_ids", "little cores"),
        (
            "orange-pi-5",
            r"^pin_to_big_cores = true",
            "pin_to_big_cores = false",
            "runtime.pin_to_big_cores",
            "little cores",
        ),
        ("orange-pi-5", r"^cpu_ids = \[6, 7\]", "cpu_ids = [5, 7]", "cpu.clusters[2].cpu_ids", "another cluster"),
        ("rpi-5-8gb", r"^sustained_mhz = 2400", "sustained_mhz = 2600", "cpu.clusters[0].sustained_mhz", "max_mhz"),
    ],
)
def test_bad_profile_names_file_and_field(tmp_path, source_id, old, new, field, message):
    path = _broken(tmp_path, source_id, old, new)
    with pytest.raises(BoardError) as caught:
        load_profile(path)
    text = str(caught.value)
    assert str(path) in text
    assert f": {field}: " in text
    assert message in text


def test_id_must_match_the_file_name(tmp_path):
    path = _broken(tmp_path, "rpi-4-4gb", r"^name = ", "name = ", file_id="my-pi")
    with pytest.raises(BoardError, match=r"my-pi\.toml: id: 'rpi-4-4gb' differs from the file name"):
        load_profile(path)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("id = \n")
    with pytest.raises(BoardError, match=r"broken\.toml: not valid TOML"):
        load_profile(path)


def test_missing_file(tmp_path):
    with pytest.raises(BoardError, match="no such board profile file"):
        load_profile(tmp_path / "nope.toml")


# ---------------------------------------------------------------------------------- detection

# fixture directory, kernel machine, userland bits, expected profile, how it matched, expected warning
DETECTION_CASES = [
    ("rpi-zero-2w", "aarch64", 64, "rpi-zero-2w", "model", None),
    ("rpi-3b-plus", "aarch64", 64, "rpi-3b-plus", "model", None),
    ("rpi-4-4gb", "aarch64", 64, "rpi-4-4gb", "model", None),
    ("rpi-5-8gb", "aarch64", 64, "rpi-5-8gb", "model", None),
    ("orange-pi-5", "aarch64", 64, "orange-pi-5", "model", None),
    ("rock-5b", "aarch64", 64, "rock-5b", "model", None),
    ("jetson-nano", "aarch64", 64, "jetson-nano", "model", None),
    ("rpi-4-2gb-32bit-userland", "aarch64", 32, "rpi-4-2gb", "model", "32-bit userland on a 64-bit aarch64 kernel"),
    ("rpi-3b-plus-32bit-kernel", "armv7l", 32, "rpi-3b-plus", "model", "32-bit kernel (armv7l)"),
    ("rockpro64", "aarch64", 64, "generic-aarch64", "fallback", "no profile matches this board"),
    ("x86-64-host", "x86_64", 64, "x86-64-host", "fallback", None),
]


@pytest.mark.parametrize("fixture, kernel, bits, expected, matched_by, warning", DETECTION_CASES)
def test_detect_fixture(fixture, kernel, bits, expected, matched_by, warning):
    profile, found = detect(FIXTURES / fixture, kernel_machine=kernel, userland_bits=bits)
    assert profile is not None and profile.id == expected
    assert found.matched_by == matched_by
    if warning is None:
        assert found.warnings == ()
    else:
        assert any(warning in w for w in found.warnings), found.warnings
    assert found.numba_supported == (bits == 64)
    assert found.kernel_machine == kernel and found.userland_bits == bits


def test_detection_record_reads_the_files():
    profile, found = detect(FIXTURES / "orange-pi-5", kernel_machine="aarch64", userland_bits=64)
    assert found.model == "Xunlong Orange Pi 5"  # the trailing NUL is gone
    assert found.cpu_parts == ("0xd05", "0xd0b")
    assert found.cpu_count == 8
    assert {"asimdhp", "asimddp"} <= found.cpu_features
    assert found.mem_total_bytes == 7924868 * 1024
    assert found.machine == "aarch64"
    assert profile.memory.ram_bytes == 8 << 30  # no scaling: MemTotal is close to 8 GiB


def test_ram_variant_follows_memtotal(tmp_path):
    for mem_kb, expected in (
        (900_000, "rpi-4-1gb"),
        (1_867_440, "rpi-4-2gb"),
        (7_800_000, "rpi-4-8gb"),
        (16_000_000, "rpi-4-8gb"),
    ):
        root = _proc_root(tmp_path / str(mem_kb), "rpi-4-4gb", mem_kb=mem_kb)
        profile, found = detect(root, kernel_machine="aarch64", userland_bits=64)
        assert profile.id == expected, mem_kb
        assert found.warnings == ()


def test_smaller_variant_than_any_profile_scales_the_budget(tmp_path):
    root = _proc_root(tmp_path, "orange-pi-5", mem_kb=3_900_000)  # a 4 GB Orange Pi 5
    profile, found = detect(root, kernel_machine="aarch64", userland_bits=64)
    assert profile.id == "orange-pi-5"
    assert profile.memory.ram_bytes == 3_900_000 * 1024
    assert profile.memory.budget_bytes == int(3_900_000 * 1024 * 0.75)
    assert any("budget scaled down" in w for w in found.warnings)


def test_unknown_model_matches_by_cpu(tmp_path):
    root = _proc_root(tmp_path, "rpi-4-4gb", mem_kb=1_900_000, model="Some A72 TV box")
    profile, found = detect(root, kernel_machine="aarch64", userland_bits=64)
    assert (profile.id, found.matched_by) == ("rpi-4-2gb", "cpu")
    assert any("chose rpi-4-2gb by its CPU" in w for w in found.warnings)


def test_missing_simd_feature_is_reported(tmp_path):
    root = _proc_root(tmp_path, "rpi-5-8gb")
    cpuinfo = root / "proc" / "cpuinfo"
    cpuinfo.write_text(cpuinfo.read_text().replace(" asimdhp", "").replace(" asimddp", ""))
    _, found = detect(root, kernel_machine="aarch64", userland_bits=64)
    assert any("fp16_arith" in w and "SIGILL" in w for w in found.warnings)
    assert any("dotprod" in w for w in found.warnings)


def test_empty_proc_falls_back_or_gives_up(tmp_path):
    profile, found = detect(tmp_path, kernel_machine="aarch64", userland_bits=64)
    assert profile.id == "generic-aarch64" and found.model is None and found.cpu_count == 0
    profile, found = detect(tmp_path, kernel_machine="riscv64", userland_bits=64)
    assert profile is None and found.matched_by == "none"
    assert any("riscv64" in w for w in found.warnings)


def test_detect_on_this_machine_does_not_fail():
    profile, found = detect()
    assert found.userland_bits == struct.calcsize("P") * 8
    assert profile is None or profile.arch == found.machine


def _proc_root(root: Path, fixture: str, *, mem_kb: int | None = None, model: str | None = None) -> Path:
    """Copy a fixture, optionally with another MemTotal or device-tree model."""
    source = FIXTURES / fixture / "proc"
    proc = root / "proc"
    for path in source.rglob("*"):
        if path.is_file():
            target = proc / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    if mem_kb is not None:
        meminfo = proc / "meminfo"
        meminfo.write_text(re.sub(r"MemTotal:\s+\d+", f"MemTotal:       {mem_kb}", meminfo.read_text()))
    if model is not None:
        (proc / "device-tree" / "model").write_bytes(model.encode() + b"\x00")
    return root
