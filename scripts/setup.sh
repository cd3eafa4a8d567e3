#!/usr/bin/env bash
# Prepares a fresh Debian machine for VitSharp: installs the Debian packages it uses (as root, or through
# passwordless sudo), then restores the NuGet packages. Idempotent and quiet: apt is skipped when every
# package is present, and `apt-get update` runs only when a package cannot be installed from the current
# lists. Without root it prints exactly what is missing and exits 1.
set -euo pipefail

root="$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages VitSharp uses at run time, and the browser its tests drive.
packages=(
    libopenblas0-pthread     # BLAS path for GEMM (OpenBLAS, pthreads)
    gcc                      # builds libvitsharp_kernels.so (int8/bf16 kernels; without it the managed fallbacks run)
    dataset-fashion-mnist    # Fashion-MNIST (IDX files in /usr/share/datasets/fashion-mnist) for training
    libspng0                 # PNG decoding and encoding (image folders, predict, attention maps)
    libturbojpeg0            # JPEG decoding (image folders, predict)
    chromium                 # the browser test of `vit serve`'s page (headless, driven by Selenium)
    chromium-driver          # chromedriver for it (/usr/bin/chromedriver; Selenium Manager never downloads one)
    openmpi-bin              # mpirun and Open MPI's libmpi.so.40 (libopenmpi3): distributed training (docs/distributed.md)
)

say() { echo "setup: $*" >&2; }

missing=()
for p in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} > 0)); then
    if [[ $(id -u) == 0 ]]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        say "missing Debian packages: ${missing[*]}"
        say "install them as root with: apt-get install -y ${missing[*]}   (then run this script again)"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    apt_install() { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; }
    say "installing ${missing[*]}"
    if ! apt_install; then
        # Package lists missing or stale: refresh them once and retry.
        if ! "${as_root[@]}" apt-get update -qq >"$log" 2>&1 || ! apt_install; then
            cat "$log" >&2
            say "apt-get could not install: ${missing[*]}"
            exit 1
        fi
    fi
fi

if ! command -v dotnet >/dev/null 2>&1; then
    say "the .NET SDK (dotnet, version 10) is not installed; install it and run this script again"
    exit 1
fi

export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
log="$(mktemp)"
if ! dotnet restore "$root/VitSharp.slnx" -v quiet --nologo >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    say "dotnet restore failed"
    exit 1
fi
rm -f "$log"
