#!/usr/bin/env bash
# Packs VitSharp (library), VitSharp.Serving (the HTTP server) and VitSharp.Cli (the `vit` .NET tool) into artifacts/packages, then builds and runs
# samples/QuickStart against that folder feed. The sample restores into its own package cache
# (artifacts/nuget-packages, VitSharp's entries wiped first), so it really uses the freshly packed .nupkg and not a
# project reference or a stale copy. Exits non-zero when packing, the sample's build or the sample fails (the sample
# fails when its training loss does not fall). Extra arguments: none.
set -euo pipefail
root="$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
packages="$root/artifacts/packages"
cache="$root/artifacts/nuget-packages"
say() { echo "pack: $*" >&2; }

rm -rf "$packages" "$cache/vitsharp" "$cache/vitsharp.serving" "$cache/vitsharp.cli"
mkdir -p "$packages" "$cache"
for project in src/VitSharp/VitSharp.csproj src/VitSharp.Serving/VitSharp.Serving.csproj src/VitSharp.Cli/VitSharp.Cli.csproj; do
    dotnet pack "$root/$project" -c Release -o "$packages" --nologo -v quiet -clp:NoSummary
done
say "$(cd "$packages" && ls *.nupkg | tr '\n' ' ')→ artifacts/packages"

sample="$root/samples/QuickStart/QuickStart.csproj"
export NUGET_PACKAGES="$cache"
dotnet restore "$sample" --nologo -v quiet --force-evaluate
dotnet build "$sample" -c Release --no-restore --nologo -v quiet -clp:NoSummary
# The sample must have been built from the package in the isolated cache.
ref="$(grep -o '"VitSharp/[^"]*"' "$root/samples/QuickStart/obj/project.assets.json" | head -1)"
[[ $ref == '"VitSharp/0.1.0"' && -f "$cache/vitsharp/0.1.0/lib/net10.0/VitSharp.dll" ]] \
    || { say "the sample did not restore VitSharp 0.1.0 from artifacts/packages (assets: ${ref:-none})"; exit 1; }
say "samples/QuickStart restored VitSharp 0.1.0 from artifacts/packages; running it"
dotnet "$root/samples/QuickStart/bin/Release/net10.0/QuickStart.dll"
