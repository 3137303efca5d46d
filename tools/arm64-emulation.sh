#!/usr/bin/env bash
# Run a command with an emulated aarch64 CPython (qemu-user), the way edgert runs on an ARM board.
#
#   tools/arm64-emulation.sh                      # python -m pytest -q -m arm
#   tools/arm64-emulation.sh python -m pytest -q tests/test_boards.py
#   ARM64_QEMU_CPU=cortex-a76 tools/arm64-emulation.sh python -c 'import numba'
#
# Inside the command `python`, `python3`, `python3.N` and `pytest` are the aarch64 interpreter of a
# Debian arm64 sysroot, run by qemu-aarch64-static on the chosen CPU model; the work tree's code comes
# first on PYTHONPATH. The exit status is the command's, or 125 when the set-up itself fails.
#
# Set-up, each step cached in ARM64_CACHE and skipped when already done:
#   1. apt-get installs qemu-user-static, debootstrap and binfmt-support when missing (root or sudo).
#   2. binfmt_misc learns to hand aarch64 ELF files to qemu, so a test that starts sys.executable in a
#      subprocess works. Best effort: without it only the top-level interpreter is emulated.
#   3. A Debian arm64 sysroot with python3 is built with `debootstrap --foreign` plus dpkg-deb. No guest
#      code runs, so neither a chroot nor binfmt is needed for this step.
#   4. The HOST pip downloads aarch64 manylinux wheels and installs them with --target: no emulation.
#   5. A /proc/cpuinfo matching the CPU model is written into the sysroot (see below) and the command runs.
#
# Settings (environment):
#   ARM64_QEMU_CPU        qemu CPU model: cortex-a72 (default, Pi 4), cortex-a76 (Pi 5, RK3588 big),
#                         cortex-a53 (Pi 3 / Zero 2 W), cortex-a57 (Jetson Nano), cortex-a55, max.
#                         Runs with different models must not overlap on one cache: the sysroot holds
#                         the one fake /proc/cpuinfo.
#   ARM64_CACHE           cache directory (default: <project>/.arm64-cache, gitignored by the file this
#                         script puts inside it). About 700 MB. Delete it to start from scratch.
#   ARM64_PIP_SPEC        what to install, as pip arguments (default: "<project>[ARM64_EXTRAS]").
#                         A local project directory is expanded from its pyproject.toml so that
#                         ARM64_SKIP_PACKAGES can drop single dependencies. pytest is always added.
#   ARM64_EXTRAS          extras of the project for the default spec (default: test)
#   ARM64_SKIP_PACKAGES   packages left out because they have no usable aarch64 wheel for this Python;
#                         space or comma separated (default: none). Tests needing them must skip.
#                         Requirements whose environment marker excludes aarch64 are left out anyway.
#   ARM64_SUITE           Debian suite of the sysroot (default: bookworm = Python 3.11, glibc 2.36, as
#                         on Raspberry Pi OS bookworm)
#   ARM64_MIRROR          Debian mirror (default: the .../debian URI from this host's apt sources)
#   ARM64_EXTRA_DEBS      more arm64 Debian packages for the sysroot, comma separated
#   ARM64_AOT             1: make `edgert warm`'s ahead-of-time library buildable in the emulated Python:
#                         host cross compilers (gcc/g++-aarch64-linux-gnu, installed by apt when missing)
#                         become CC/CXX, and python3-dev joins the sysroot. A compiler run inside qemu-user
#                         cannot find its own helpers (paths are redirected to the sysroot only for the
#                         emulated process), so the cross compiler is the working way; on a board, use gcc.
#   ARM64_BINFMT          auto (default) or 0 to leave binfmt_misc alone
#   ARM64_HOST_PYTHON     host interpreter whose pip installs the wheels (default: python3)
#   ARM64_PYTHONPATH      put ahead of the wheels on PYTHONPATH (default: the project root)
#   ARM64_PROJECT         project root (default: the parent of this script's directory)
#
# Emulated timings say nothing about speed on a board: use this for correctness only.
set -euo pipefail

# ------------------------------------------------------------------------------------------ helpers
say() { printf '[arm64] %s\n' "$*" >&2; }
fail() { say "error: $*"; exit 125; }
clock() { date +%s.%N; }
seconds_since() { awk -v t0="$1" -v t1="$(clock)" 'BEGIN { printf "%.1f", t1 - t0 }'; }

STEP_SUMMARY=""
step_begin() { STEP_NAME=$1; STEP_T0=$(clock); say "$STEP_NAME: $2"; }
step_end() {
  local took
  took=$(seconds_since "$STEP_T0")
  STEP_SUMMARY+="${STEP_SUMMARY:+, }$STEP_NAME ${took}s"
  say "$STEP_NAME: done in ${took}s${1:+ ($1)}"
}

# Runs a command as root: directly when we are root (CI), else through passwordless sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

# apt-get that never asks (CI has no stdin); `env` carries the setting through sudo, which resets the environment.
# shellcheck disable=SC2317  # called through logged
apt_get() { as_root env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 "$@"; }

# The host's pip, with its own cache inside ARM64_CACHE so a fresh machine can keep it between runs.
# shellcheck disable=SC2317  # called through logged
pip_host() { PIP_CACHE_DIR="$CACHE/pip" "$HOST_PYTHON" -m pip --no-input --disable-pip-version-check "$@"; }

# Runs a noisy command with its output appended to a log file; on failure shows the tail and stops.
# Usage: logged LOG "what it does" command...
logged() {
  local log=$1 what=$2
  shift 2
  if ! "$@" >>"$log" 2>&1; then
    grep -v '^WARNING: Location' "$log" | tail -n 25 >&2
    fail "$what failed; full log: $log"
  fi
}

T_START=$(clock)

# ----------------------------------------------------------------------------------------- settings
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT=$(cd "${ARM64_PROJECT:-$SCRIPT_DIR/..}" && pwd)
CACHE=${ARM64_CACHE:-$PROJECT/.arm64-cache}
QEMU_MODEL=${ARM64_QEMU_CPU:-cortex-a72}
SUITE=${ARM64_SUITE:-bookworm}
EXTRAS=${ARM64_EXTRAS:-test}
SKIP_PACKAGES=${ARM64_SKIP_PACKAGES-}
HOST_PYTHON=${ARM64_HOST_PYTHON:-python3}
DEB_PACKAGES="python3${ARM64_EXTRA_DEBS:+,$ARM64_EXTRA_DEBS}"
[ "${ARM64_AOT:-0}" = 1 ] && DEB_PACKAGES="$DEB_PACKAGES,python3-dev"

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
# The cache holds hundreds of MB: keep git from ever picking it up, even before .gitignore lists it.
[ -f "$CACHE/.gitignore" ] || echo '*' >"$CACHE/.gitignore"

MIRROR=${ARM64_MIRROR:-}
if [ -z "$MIRROR" ]; then
  # Reuse the Debian mirror apt already reaches from this machine (deb822 or one-line format).
  MIRROR=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i } /^deb / { print $2 }' |
    grep -m1 -E '^https?://.*/debian/?$' || true)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}

# One set-up at a time per cache; the lock is dropped before the command runs.
exec 9>"$CACHE/.lock"
flock 9

[ "$(uname -m)" = aarch64 ] && say "note: the host is aarch64 already; emulating anyway"

# ------------------------------------------------------------------------------- 1. host packages
missing=()
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${ARM64_BINFMT:-auto}" != 0 ]; then
  command -v update-binfmts >/dev/null 2>&1 || missing+=(binfmt-support)
fi
if [ ${#missing[@]} -gt 0 ]; then
  step_begin apt "installing ${missing[*]}"
  command -v apt-get >/dev/null 2>&1 || fail "need ${missing[*]} and this host has no apt-get"
  as_root true || fail "need ${missing[*]}: run as root, with passwordless sudo, or install them first"
  : >"$CACHE/apt.log"
  logged "$CACHE/apt.log" "apt-get update" apt_get update
  logged "$CACHE/apt.log" "apt-get install ${missing[*]}" apt_get install -y --no-install-recommends "${missing[@]}"
  step_end
fi
if [ "${ARM64_AOT:-0}" = 1 ]; then
  cross=()
  command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || cross+=(gcc-aarch64-linux-gnu)
  command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || cross+=(g++-aarch64-linux-gnu)
  if [ ${#cross[@]} -gt 0 ]; then
    # Optional: without them the AOT tests skip, the rest of the command still runs.
    step_begin cross "installing ${cross[*]} (ARM64_AOT=1)"
    if as_root true && apt_get install -y --no-install-recommends "${cross[@]}" >>"$CACHE/apt.log" 2>&1 ||
       { apt_get update >>"$CACHE/apt.log" 2>&1 && apt_get install -y --no-install-recommends "${cross[@]}" >>"$CACHE/apt.log" 2>&1; }; then
      step_end
    else
      say "cross compilers not installed (see $CACHE/apt.log): AOT library builds will be skipped"
      ARM64_AOT=0
    fi
  fi
fi
QEMU_BIN=$(command -v qemu-aarch64-static)
# `-cpu help` exits 1 after printing the list, hence the `|| true`.
qemu_models=$("$QEMU_BIN" -cpu help || true)
awk -v model="$QEMU_MODEL" '$1 == model { found = 1 } END { exit !found }' <<<"$qemu_models" ||
  fail "qemu does not know CPU model '$QEMU_MODEL'; see: qemu-aarch64-static -cpu help"

# --------------------------------------------------------------------------------- 2. binfmt_misc
BINFMT_DIR=/proc/sys/fs/binfmt_misc
binfmt_ready() { grep -qs '^enabled$' "$BINFMT_DIR/qemu-aarch64"; }
if [ "${ARM64_BINFMT:-auto}" != 0 ] && ! binfmt_ready; then
  # binfmt_misc is often not mounted in containers; the registration dies with the mount.
  [ -e "$BINFMT_DIR/register" ] || as_root mount -t binfmt_misc binfmt_misc "$BINFMT_DIR" 2>/dev/null || true
  if [ -e "$BINFMT_DIR/register" ]; then
    as_root update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
    as_root update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    if ! binfmt_ready; then
      # Fallback without binfmt-support: the aarch64 ELF header (machine 0xb7) and its mask, in the
      # kernel's \x notation; flag F opens qemu now so the entry works whatever the mount namespace.
      magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
      mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
      printf ':qemu-aarch64:M::%s:%s:%s:F' "$magic" "$mask" "$QEMU_BIN" |
        as_root tee "$BINFMT_DIR/register" >/dev/null 2>&1 || true
    fi
  fi
fi
if binfmt_ready; then
  say "binfmt_misc: aarch64 executables run through qemu (subprocesses of the interpreter work)"
else
  say "binfmt_misc: unavailable; tests that start sys.executable in a subprocess will fail"
fi

# ------------------------------------------------------------------------------------ 3. sysroot
SYSROOT=$CACHE/sysroot-$SUITE
SYSROOT_RECIPE="suite=$SUITE mirror=$MIRROR debs=$DEB_PACKAGES layout=2"
if [ "$(cat "$SYSROOT/.recipe" 2>/dev/null)" != "$SYSROOT_RECIPE" ]; then
  step_begin sysroot "debootstrap --foreign $SUITE arm64 from $MIRROR, unpacked with dpkg-deb"
  as_root true || fail "building the sysroot needs root (debootstrap): run as root or with passwordless sudo"
  staging=$SYSROOT.partial
  as_root rm -rf "$SYSROOT" "$staging"
  mkdir -p "$CACHE/debs"
  : >"$CACHE/debootstrap.log"
  logged "$CACHE/debootstrap.log" "debootstrap" as_root debootstrap --arch=arm64 --variant=minbase --foreign \
    --include="$DEB_PACKAGES" --cache-dir="$CACHE/debs" "$SUITE" "$staging" "$MIRROR"
  # The first stage unpacks only the base set; unpack everything it chose. tar (not `dpkg -x`) keeps the
  # merged-/usr symlinks such as lib -> usr/lib instead of replacing them with directories.
  # shellcheck disable=SC2016  # $1/$2 belong to the inner shell
  awk '{ print $2 }' "$staging/debootstrap/debpaths" |
    as_root xargs -P "$(nproc)" -I{} sh -c 'dpkg-deb --fsys-tarfile "$1$2" | tar -x --keep-directory-symlink -C "$1"' _ "$staging" {} ||
    fail "unpacking the arm64 packages into $staging failed"
  # qemu resolves every absolute path that exists under the sysroot to the sysroot's copy. Remove the
  # run-time directories so that /tmp, /dev, /proc, HOME and the rest stay the host's.
  as_root rm -rf "$staging"/{debootstrap,dev,proc,sys,run,tmp,var/tmp,home,root,mnt,media,usr/share/doc,usr/share/man}
  as_root rm -f "$staging"/var/cache/apt/archives/*.deb
  [ "$(id -u)" = 0 ] || as_root chown -R "$(id -u):$(id -g)" "$staging"
  [ -x "$staging/usr/bin/python3" ] || fail "the sysroot has no python3"
  guest_python=$(basename "$(readlink -f "$staging/usr/bin/python3")")
  # Debian's postinst would byte-compile the stdlib; it never ran. A host CPython of the same minor
  # version writes identical .pyc files, which spares the emulated interpreter that work.
  if [ "$("$HOST_PYTHON" -c 'import sys; print("python%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$guest_python" ]; then
    "$HOST_PYTHON" -m compileall -q -j 0 "$staging/usr/lib/$guest_python" >/dev/null 2>&1 || true
  fi
  echo "$SYSROOT_RECIPE" >"$staging/.recipe"
  mv "$staging" "$SYSROOT"
  step_end "$(du -sh "$SYSROOT" | cut -f1)"
fi
GUEST_PYTHON=$(basename "$(readlink -f "$SYSROOT/usr/bin/python3")") # e.g. python3.11
GUEST_PYVER=${GUEST_PYTHON#python}                                   # e.g. 3.11
# The newest glibc symbol version bounds the manylinux tags the sysroot can load.
GLIBC_MINOR=$(grep -aoE 'GLIBC_2\.[0-9]+' "$SYSROOT/usr/lib/aarch64-linux-gnu/libc.so.6" | cut -d. -f2 | sort -n | tail -n1)
[ -n "$GLIBC_MINOR" ] || fail "cannot read the glibc version of $SYSROOT"

# ------------------------------------------------------------------------------------- 4. wheels
"$HOST_PYTHON" -m pip --version >/dev/null 2>&1 ||
  fail "$HOST_PYTHON has no pip; install python3-pip or set ARM64_HOST_PYTHON"

# Prints the requirements of a local project (its dependencies plus the given extras, following
# self-references such as "edgert[convert]"), without the skipped packages. Environment markers are
# decided here for the aarch64 target and dropped: pip would judge them by the x86 host. Exit 3: the
# dependencies cannot be read from pyproject.toml.
expand_project() {
  "$HOST_PYTHON" - "$@" <<'PYTHON'
import re
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        sys.exit(3)
try:  # the packaging copy inside pip: the host python is known to have pip
    from pip._vendor.packaging.requirements import Requirement
except ImportError:
    Requirement = None

project_dir, extras, skipped, guest_version = sys.argv[1:5]
guest = {"platform_machine": "aarch64", "platform_system": "Linux", "sys_platform": "linux",
         "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython",
         "python_version": guest_version, "python_full_version": guest_version + ".0"}


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


try:
    with open(f"{project_dir}/pyproject.toml", "rb") as fh:
        meta = tomllib.load(fh)["project"]
except (OSError, KeyError):
    sys.exit(3)
if {"dependencies", "optional-dependencies"} & set(meta.get("dynamic", [])):
    sys.exit(3)

own_name = normalize(meta["name"])
optional = {normalize(k): v for k, v in meta.get("optional-dependencies", {}).items()}
skip = {normalize(n) for n in skipped.replace(",", " ").split()}
seen_extras, wanted = set(), []


def add(requirements):
    for text in requirements:
        if Requirement is None:
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", text)
            name, req_extras, for_guest = match.group(1), (match.group(2) or "").split(","), text
        else:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({**guest, "extra": ""}):
                print(f"[arm64] wheels: {text!r} does not apply to aarch64 / Python {guest_version}", file=sys.stderr)
                continue
            req.marker = None
            name, req_extras, for_guest = req.name, sorted(req.extras), str(req)
        if normalize(name) == own_name:
            for extra in req_extras:
                add_extra(extra)
        elif normalize(name) in skip:
            print(f"[arm64] wheels: leaving out {text!r} (ARM64_SKIP_PACKAGES)", file=sys.stderr)
        else:
            wanted.append(for_guest)


def add_extra(extra):
    extra = normalize(extra.strip())
    if not extra or extra in seen_extras:
        return
    seen_extras.add(extra)
    if extra not in optional:
        sys.exit(f"[arm64] error: {project_dir}/pyproject.toml has no extra {extra!r}")
    add(optional[extra])


add(meta.get("dependencies", []))
for extra in extras.split(","):
    add_extra(extra)
print("\n".join(wanted))
PYTHON
}

# PEP 503 name of a requirement ("Ai_Edge.LiteRT>=1" -> ai-edge-litert), to compare with the skip list.
requirement_name() {
  local name=${1%%[<>=!~;[ @]*}
  name=${name,,}
  echo "${name//[_.]/-}"
}
is_skipped() {
  local wanted skip
  wanted=$(requirement_name "$1")
  for skip in ${SKIP_PACKAGES//,/ }; do
    [ "$(requirement_name "$skip")" != "$wanted" ] || return 0
  done
  return 1
}

if [ -n "${ARM64_PIP_SPEC:-}" ]; then
  read -r -a spec_words <<<"$ARM64_PIP_SPEC"
else
  spec_words=("${PROJECT}[$EXTRAS]")
fi
requirements=()  # what pip resolves
project_dirs=()  # local projects, installed without dependencies for their metadata only
for word in "${spec_words[@]}"; do
  base=${word%%\[*}
  if [ -d "$base" ]; then
    extras=${word#"$base"}
    extras=${extras#\[}
    extras=${extras%\]}
    rc=0
    expanded=$(expand_project "$base" "$extras" "$SKIP_PACKAGES" "$GUEST_PYVER") || rc=$?
    if [ $rc = 0 ]; then
      mapfile -t lines <<<"$expanded"
      for line in "${lines[@]}"; do [ -z "$line" ] || requirements+=("$line"); done
      project_dirs+=("$(cd "$base" && pwd)")
    elif [ $rc = 3 ]; then
      say "wheels: cannot read the dependencies of $base from pyproject.toml; letting pip resolve it (no skipping)"
      requirements+=("$word")
    else
      fail "reading $base/pyproject.toml failed"
    fi
  elif [[ $word != -* ]] && is_skipped "$word"; then
    say "wheels: leaving out $word (ARM64_SKIP_PACKAGES)"
  else
    requirements+=("$word")
  fi
done
has_pytest=0
for requirement in "${requirements[@]}"; do
  [ "$(requirement_name "$requirement")" != pytest ] || has_pytest=1
done
[ $has_pytest = 1 ] || requirements+=(pytest) # the default command needs it

# The installed set is keyed by what decides its content; project paths are left out so that clones
# in other directories share it.
site_key=$({
  echo "$GUEST_PYVER glibc2.$GLIBC_MINOR"
  printf '%s\n' "${requirements[@]}"
  for dir in "${project_dirs[@]}"; do cat "$dir/pyproject.toml"; done
  cat "$PROJECT"/requirements*.txt 2>/dev/null || true
} | sha256sum | cut -c1-16)
SITE=$CACHE/site-$GUEST_PYVER-$site_key
if [ ! -f "$SITE/.complete" ]; then
  step_begin wheels "aarch64 wheels for ${requirements[*]}"
  target_flags=(--only-binary=:all: --implementation cp --python-version "$GUEST_PYVER" --platform manylinux2014_aarch64)
  # pip accepts only the tags it is given, so list every glibc the sysroot can run.
  for minor in $(seq 17 "$GLIBC_MINOR"); do target_flags+=(--platform "manylinux_2_${minor}_aarch64"); done
  mkdir -p "$CACHE/wheels"
  rm -rf "$SITE.partial"
  : >"$CACHE/pip.log"
  # Download what the wheel cache lacks, then install from the cache alone.
  logged "$CACHE/pip.log" "pip download (is there an aarch64 wheel for each package?)" pip_host download -d "$CACHE/wheels" --find-links "$CACHE/wheels" "${target_flags[@]}" "${requirements[@]}"
  logged "$CACHE/pip.log" "pip install" pip_host install --no-index --find-links "$CACHE/wheels" --target "$SITE.partial" \
    "${target_flags[@]}" "${requirements[@]}"
  for dir in "${project_dirs[@]}"; do
    # The work tree is imported through PYTHONPATH; the installed copy only supplies the metadata
    # (importlib.metadata.version). It must be pure Python, since it is built on the host.
    rm -rf "$CACHE/project-wheel"
    logged "$CACHE/pip.log" "building a wheel of $dir" pip_host wheel --no-deps -w "$CACHE/project-wheel" "$dir"
    project_wheel=$(ls "$CACHE"/project-wheel/*.whl)
    [[ $project_wheel == *-none-any.whl ]] || fail "$project_wheel is not pure Python and cannot be built on the host"
    logged "$CACHE/pip.log" "pip install $project_wheel" pip_host install --no-deps --target "$SITE.partial" "$project_wheel"
  done
  # Byte-compiled on the host (same format) so the first emulated import does not pay for it, ~8x slower.
  if [ "$("$HOST_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$GUEST_PYVER" ]; then
    "$HOST_PYTHON" -m compileall -q -j 0 "$SITE.partial" >/dev/null 2>&1 || true
  fi
  touch "$SITE.partial/.complete"
  mv "$SITE.partial" "$SITE"
  # Each set weighs a few hundred MB: keep the two most recent.
  find "$CACHE" -maxdepth 1 -type d -name 'site-*' -printf '%T@ %p\n' | sort -rn | tail -n +3 | cut -d' ' -f2- |
    while IFS= read -r old; do rm -rf -- "$old"; done
  step_end "$(du -sh "$SITE" | cut -f1)"
fi

# ---------------------------------------------------------------------------------------- 5. run
# qemu 7.2 shows the guest the host's x86 /proc/cpuinfo. LLVM then detects a "generic" CPU, so numba
# would not compile for the model, and onnxruntime's cpuinfo parser crashes on import. qemu maps
# /proc/cpuinfo to <sysroot>/proc/cpuinfo when that exists, so write what the emulated core would
# print on its board. HWCAPs (getauxval) still come from the qemu model itself.
case $QEMU_MODEL in
  cortex-a53) part=0xd03 variant=0x0 revision=4 features="fp asimd evtstrm crc32 cpuid" ;;   # BCM2837: no crypto
  cortex-a72) part=0xd08 variant=0x0 revision=3 features="fp asimd evtstrm crc32 cpuid" ;;   # BCM2711: no crypto
  cortex-a57) part=0xd07 variant=0x1 revision=1 features="fp asimd evtstrm aes pmull sha1 sha2 crc32" ;;
  cortex-a55) part=0xd05 variant=0x2 revision=0
    features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" ;;
  cortex-a76) part=0xd0b variant=0x4 revision=1
    features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" ;;
  *) part=0xd0c variant=0x3 revision=1 # an ARMv8.2 Neoverse-N1 line for max and anything else
    features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs" ;;
esac
mkdir -p "$SYSROOT/proc"
for ((cpu = 0; cpu < $(nproc); cpu++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$cpu" "$features"
  printf 'CPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$variant" "$part" "$revision"
done >"$SYSROOT/proc/cpuinfo.tmp"
mv "$SYSROOT/proc/cpuinfo.tmp" "$SYSROOT/proc/cpuinfo"

# Wrappers so the command's `python`, `pytest` ... are the emulated interpreter.
WRAPPERS=$CACHE/bin
mkdir -p "$WRAPPERS"
printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$QEMU_BIN" "$SYSROOT/usr/bin/$GUEST_PYTHON" >"$WRAPPERS/python3"
printf '#!/bin/sh\nexec "%s" "%s" -m pytest "$@"\n' "$QEMU_BIN" "$SYSROOT/usr/bin/$GUEST_PYTHON" >"$WRAPPERS/pytest"
chmod +x "$WRAPPERS/python3" "$WRAPPERS/pytest"
ln -sf python3 "$WRAPPERS/python"
ln -sf python3 "$WRAPPERS/$GUEST_PYTHON"
if [ "${ARM64_AOT:-0}" = 1 ]; then
  # The emulated Python names the guest's /usr/include/python3.N; the host cross compiler finds it,
  # and the arch-specific pyconfig.h it includes, in the sysroot.
  for tool in gcc g++; do
    cat >"$WRAPPERS/cross-$tool" <<EOF
#!/bin/bash
args=()
for a in "\$@"; do
  case "\$a" in -I/usr/include/*) args+=("-I$SYSROOT\${a#-I}") ;; *) args+=("\$a") ;; esac
done
exec "$(command -v aarch64-linux-gnu-$tool)" "\${args[@]}" -idirafter "$SYSROOT/usr/include"
EOF
    chmod +x "$WRAPPERS/cross-$tool"
  done
  export CC=cross-gcc CXX=cross-g++
fi

code_path=${ARM64_PYTHONPATH-$PROJECT}
export PATH="$WRAPPERS:$PATH"
export QEMU_LD_PREFIX="$SYSROOT" QEMU_CPU="$QEMU_MODEL"
export PYTHONPATH="${code_path:+$code_path:}$SITE"
export PYTHONNOUSERSITE=1
# numba caches are per CPU; keep the emulated ones out of the work tree's __pycache__.
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$CACHE/numba-$QEMU_MODEL}"
unset PYTHONHOME VIRTUAL_ENV

machine=$(python3 -c 'import platform, struct; print(platform.machine(), struct.calcsize("P") * 8)') ||
  fail "the emulated interpreter does not start"
[ "$machine" = "aarch64 64" ] || fail "the emulated interpreter reports '$machine', expected 'aarch64 64'"
SETUP_SECONDS=$(seconds_since "$T_START")
say "ready in ${SETUP_SECONDS}s${STEP_SUMMARY:+ ($STEP_SUMMARY)}: $GUEST_PYTHON aarch64, qemu $("$QEMU_BIN" --version | awk 'NR == 1 { print $3 }') -cpu $QEMU_MODEL"
flock -u 9
exec 9>&-

[ $# -gt 0 ] || set -- python -m pytest -q -m arm
cd "$PROJECT"
say "running: $*"
T_COMMAND=$(clock)
status=0
"$@" || status=$?
say "command exited $status after $(seconds_since "$T_COMMAND")s; total $(seconds_since "$T_START")s (set-up ${SETUP_SECONDS}s)"
exit $status
