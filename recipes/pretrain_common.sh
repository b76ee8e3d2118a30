# Shared argument handling for recipes/pretrain_{aalbert,mockingjay,tera}.sh (sourced by them, not a recipe itself).
#   recipes/pretrain_X.sh [DATA] [OUT] [key=value ...] [--budget 60m] [--resume] [--overwrite]
# DATA: bundled corpus name (default: synth), a corpus folder, a .jsonl manifest or a LibriSpeech root.
# OUT:  run folder (default: $EXP/<config name>-<date>-<time>, EXP defaulting to exp/ under the repository;
#       a finished default run is then also reachable as $EXP/<config name>, a symbolic link to the newest
#       finished one, e.g. exp/aalbert-small/final).
# Config: the small-corpus variant for the bundled corpus, the published LibriSpeech one for anything
# else; --budget 60m picks the small variant's longer configuration (configs/pretrain/<small>-60m.yaml);
# CONFIG=path/to.yaml picks another.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package, whichever one is installed

run_pretrain() {  # run_pretrain SMALL_CONFIG BASE_CONFIG "$@"
  local small=$1 base=$2
  shift 2
  local data="" out="" pos=0 budget="" want_budget=0
  local -a extra=()
  for a in "$@"; do
    if (( want_budget )); then budget=$a; want_budget=0
    elif [[ $a == --budget ]]; then want_budget=1
    elif [[ $a == --budget=* ]]; then budget=${a#--budget=}
    elif [[ $a == --* || $a == *=* ]]; then
      extra+=("$a")  # flags and key=value overrides, in any order (audiorep takes both anywhere)
    elif (( pos == 0 )); then data=$a; pos=1
    elif (( pos == 1 )); then out=$a; pos=2
    else echo "unexpected argument: $a (usage: $0 [DATA] [OUT] [key=value ...] [--resume])" >&2; exit 2
    fi
  done
  if (( want_budget )); then echo "--budget needs a value, e.g. --budget 60m" >&2; exit 2; fi
  data=${data:-synth}
  if [[ -n $budget ]]; then
    if [[ ! -f $HERE/configs/pretrain/$small-$budget.yaml ]]; then
      local have
      have=$(cd "$HERE/configs/pretrain" && ls "$small"-*.yaml 2>/dev/null | sed "s/^$small-//; s/\.yaml$//" | tr '\n' ' ' || true)
      echo "--budget $budget: no configuration $HERE/configs/pretrain/$small-$budget.yaml (budgets for $small: ${have:-none})" >&2
      exit 2
    fi
    small=$small-$budget
  fi
  # torch uses every core by default (2 threads here: 0.19 s/step for the small variant vs 0.23 s with one).
  # On a box shared with other jobs, OMP_NUM_THREADS=1 avoids threads spin-waiting against them.
  local config
  if [[ -n ${CONFIG:-} ]]; then config=$CONFIG
  elif [[ $data == synth ]]; then config=$HERE/configs/pretrain/$small.yaml
  else config=$HERE/configs/pretrain/$base.yaml
  fi
  local name
  name=$(basename "$config" .yaml)
  local exp=${EXP:-$ROOT/exp} stable=""
  if [[ -z $out ]]; then
    out=$exp/$name-$(date +%Y%m%d-%H%M%S)
    stable=$exp/$name  # the stable name the README and the downstream recipes use
  fi
  echo "config: $config" >&2
  echo "data:   $data" >&2
  echo "out:    $out" >&2
  if [[ -z $stable ]]; then
    exec audiorep pretrain --config "$config" --data "$data" --out "$out" ${extra[@]+"${extra[@]}"}
  fi
  local status=0
  audiorep pretrain --config "$config" --data "$data" --out "$out" ${extra[@]+"${extra[@]}"} || status=$?
  if (( status == 0 )) && [[ -f $out/final/config.json ]]; then
    if [[ -L $stable || ! -e $stable ]]; then  # a real folder of that name is the user's: never replaced
      ln -sfn "$(basename "$out")" "$stable"
      echo "stable path: $stable -> $(basename "$out")" >&2
    else
      echo "$stable exists and is not a link made by this recipe: left alone (the run is in $out)" >&2
    fi
  fi
  exit $status
}
