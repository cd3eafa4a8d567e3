#!/usr/bin/env bash
# Fuzzes one parser entry point with AFL++ and SharpFuzz for SECONDS (default 600):
#   scripts/fuzz.sh TARGET [SECONDS]
# TARGET: safetensors checkpoint pth npz idx cifar png jpeg hfconfig (see fuzz/VitSharp.Fuzz/FuzzTargets.cs).
# Builds fuzz/VitSharp.Fuzz, instruments VitSharp.dll with the sharpfuzz tool, seeds the corpus from the fixtures
# ($VITSHARP_FIXTURES, default /work/shared/fixtures) plus tiny inputs the harness writes, runs afl-fuzz and prints
# the execution count and the crashes and hangs found. Findings stay in fuzz/findings/TARGET/ (crashes/, hangs/, queue/).
# Needs afl++ (apt-get install afl++). Environment: FUZZ_TIMEOUT_MS (afl -t, default 5000), FUZZ_NICE (default 10),
# FUZZ_RESUME=1 to continue an earlier run's findings instead of starting over.
set -euo pipefail
root="$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:?usage: scripts/fuzz.sh TARGET [SECONDS]}"
seconds="${2:-600}"
fixtures="${VITSHARP_FIXTURES:-/work/shared/fixtures}"
timeout_ms="${FUZZ_TIMEOUT_MS:-5000}"
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

case "$target" in
    safetensors|checkpoint|pth|npz|idx|cifar|png|jpeg|hfconfig) ;;
    *) echo "fuzz.sh: unknown target '$target'" >&2; exit 2 ;;
esac
command -v afl-fuzz >/dev/null || { echo "fuzz.sh: afl-fuzz not found (apt-get install -y afl++)" >&2; exit 1; }

work="$root/fuzz/.work"
tools="$work/tools"
if [[ ! -x "$tools/sharpfuzz" ]]; then
    dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path "$tools" >/dev/null
fi

# Build, then instrument a fresh copy (sharpfuzz rewrites the dll in place and refuses an instrumented one).
build="$work/build"
out="$work/bin-$target"
dotnet build "$root/fuzz/VitSharp.Fuzz/VitSharp.Fuzz.csproj" -c Release -o "$build" --nologo -v q >/dev/null
rm -rf "$out"; cp -r "$build" "$out"
"$tools/sharpfuzz" "$out/VitSharp.dll" >/dev/null

# Seeds: the harness's tiny inputs plus fixtures under 1 MB (afl-fuzz's limit).
corpus="$work/corpus-$target"
rm -rf "$corpus"; mkdir -p "$corpus"
dotnet "$build/VitSharp.Fuzz.dll" "$target" --seeds "$corpus"  # uninstrumented: instrumented code needs AFL's shared memory
add() { for f in "$@"; do [[ -f "$f" && $(stat -c %s "$f") -lt 1000000 ]] && cp "$f" "$corpus/$(basename "$f")"; done; return 0; }
shopt -s nullglob
case "$target" in
    safetensors) add "$fixtures"/vit.weights.safetensors "$fixtures"/simple_vit.io.safetensors "$fixtures"/pretrained/timm_vit.safetensors ;;
    checkpoint) add "$fixtures"/vit.weights.safetensors ;;
    pth) add "$fixtures"/pretrained/*.pth ;;
    npz) ;;  # --seeds writes google_vit.npz's smallest entries as small archives: the 208 kB fixture slowed AFL to ~340 exec/s
    png) add "$fixtures"/pretrained/*.png ;;
    jpeg) add "$fixtures"/pretrained/*.jpg ;;
    hfconfig) add "$fixtures"/pretrained/hf_vit/config.json ;;
esac
[[ -n "$(ls -A "$corpus")" ]] || { echo "fuzz.sh: no seeds for $target (fixtures in $fixtures?)" >&2; exit 1; }

findings="$root/fuzz/findings/$target"
input=("-i" "$corpus")
if [[ "${FUZZ_RESUME:-0}" == 1 && -d "$findings/default/queue" ]]; then input=("-i" "-"); else rm -rf "$findings"; fi
mkdir -p "$findings"

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_FORKSRV_INIT_TMOUT=60000 \
    AFL_SKIP_BIN_CHECK=1 AFL_NO_AFFINITY=1
echo "fuzz.sh: afl-fuzz ${input[*]} -o $findings -m none -t $timeout_ms -V $seconds -- dotnet $out/VitSharp.Fuzz.dll $target"
nice -n "${FUZZ_NICE:-10}" afl-fuzz "${input[@]}" -o "$findings" -m none -t "$timeout_ms" -V "$seconds" \
    -- dotnet "$out/VitSharp.Fuzz.dll" "$target" >"$findings/afl.log" 2>&1 || {
    echo "fuzz.sh: afl-fuzz failed; last lines of $findings/afl.log:" >&2; tail -n 20 "$findings/afl.log" >&2; exit 1; }

stats="$findings/default/fuzzer_stats"
get() { sed -n "s/^$1 *: *//p" "$stats"; }
crashes="$(get saved_crashes)"; [[ -n "$crashes" ]] || crashes="$(get unique_crashes)"
hangs="$(get saved_hangs)"; [[ -n "$hangs" ]] || hangs="$(get unique_hangs)"
echo "fuzz.sh: $target: $(get execs_done) executions in $(get run_time)s ($(get execs_per_sec) exec/s), $(get corpus_count) corpus entries, $crashes crashes, $hangs hangs"
echo "fuzz.sh: findings in $findings/default/{crashes,hangs}; replay with: dotnet $out/VitSharp.Fuzz.dll $target --replay FILE"
