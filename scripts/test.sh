#!/usr/bin/env bash
# Sets the machine up (scripts/setup.sh) and runs every test project in Release.
# Extra arguments go to `dotnet test` (e.g. --filter FullyQualifiedName~Cli, or a --logger).
set -euo pipefail
root="$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
exec dotnet test "$root/VitSharp.slnx" -c Release --nologo "$@"
