#!/usr/bin/env bash
# The paper's Table 2 and Table 4 jobs on a lent GPU in under 8 minutes, one JSON report.
#
#   bash benchmarks/gpu.sh [REPORT.json]          # default: $OUT/bench.json when $OUT is set
#   SMALL=1 bash benchmarks/gpu.sh /tmp/x.json    # a CPU try: reduced presets and sizes, 2 steps, 1 repeat, no compile
#
# Each job runs as its own `bench --json` command under its own `timeout`, most important first, so a
# slow or failing job costs only its own slot; a job is skipped when its slot would pass BUDGET_S
# (default 470 s). The report lists every command with its exit code, seconds, its bench JSON (or
# null) and the tail of its stderr.
set -u
cd "$(dirname "$0")/.."

report=${1:-${OUT:+$OUT/bench.json}}
if [ -z "$report" ]; then
  echo "usage: bash benchmarks/gpu.sh REPORT.json (or set \$OUT)" >&2
  exit 2
fi
budget=${BUDGET_S:-470}
parts=$(mktemp -d)
trap 'rm -rf "$parts"' EXIT

if [ "${SMALL:-0}" = 1 ]; then
  common=(--device cpu --reduced --steps 2 --repeats 1 --threads 1)
else
  common=(--repeats 3)
fi

n=0
job() {  # job NAME LIMIT_S ARGS... : one bench command under its own time limit
  local name=$1 limit=$2
  shift 2
  n=$((n + 1))
  local part="$parts/$(printf %02d "$n")-$name"
  if [ $((SECONDS + limit)) -gt "$budget" ]; then
    echo "skipped: $name (its ${limit} s slot would pass the ${budget} s budget)" >"$part.err"
    echo skipped >"$part.rc"
    return
  fi
  local start=$SECONDS
  timeout --kill-after=10 "$limit" python -m mardini_core bench --json "${common[@]}" "$@" >"$part.json" 2>"$part.err"
  echo $? >"$part.rc"
  echo $((SECONDS - start)) >"$part.s"
  echo "$name: exit $(cat "$part.rc") after $((SECONDS - start)) s" >&2
}

job table2-L-T-13 100 --preset L/T --size 512 --frames 13
job table4-L-T-512 70 --preset L/T --size 512 --frames 17
job table4-L-T-1024 110 --preset L/T --size 1024 --frames 17
job table4-L-T-768 80 --preset L/T --size 768 --frames 17
job table2-L-ST-9 60 --preset L/ST --size 512 --frames 9
[ "${SMALL:-0}" = 1 ] || job compile-L-T-13 90 --suite compile  # a CPU compile takes minutes
job backends-identity 60 --suite backends identity
job anchor 40 --suite anchor  # the anchor interpolators per generated frame (448x256, 9 frames)
job efficiency 60 --suite efficiency  # the generator's FLOP-floor share: interpolation, i2v with guidance, expansion

python - "$parts" "$report" "${SMALL:-0}" <<'EOF'
import datetime, json, pathlib, sys

parts, report, small = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3] == "1"
commands = []
for rc_file in sorted(parts.glob("*.rc")):
    stem = rc_file.with_suffix("")
    rc = rc_file.read_text().strip()
    out = stem.with_suffix(".json")
    try:
        bench = json.loads(out.read_text()) if out.exists() and out.stat().st_size else None
    except json.JSONDecodeError:
        bench = None
    seconds = stem.with_suffix(".s")
    commands.append({
        "name": stem.name.split("-", 1)[1],
        "exit": None if rc == "skipped" else int(rc),
        "timed_out": rc in ("124", "137"),
        "seconds": int(seconds.read_text()) if seconds.exists() else None,
        "bench": bench,
        "stderr_tail": stem.with_suffix(".err").read_text()[-2000:],
    })
report.parent.mkdir(parents=True, exist_ok=True)
report.write_text(json.dumps({"written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                              "small": small, "commands": commands}, indent=1))
print(f"wrote {report}: {sum(c['exit'] == 0 for c in commands)} of {len(commands)} commands succeeded", file=sys.stderr)
EOF
