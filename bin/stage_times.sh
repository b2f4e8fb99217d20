#!/usr/bin/env bash
# Stage wall times for recipes, appended to $exp/stage_times.txt as "NAME took N s" and
# printed. Source it after parse_options.sh:  . ../../bin/stage_times.sh
#   stage_done NAME         at the end of an inline stage: the seconds since the last
#                           stage_done or timed (or since this file was sourced)
#   timed NAME COMMAND...   run COMMAND (a shell function too), then its own seconds,
#                           also left in $stage_seconds for the caller

__stage_start=$SECONDS

__stage_took() {  # __stage_took NAME SECONDS
  mkdir -p "$exp"
  echo "$1 took $2 s" | tee -a "$exp/stage_times.txt"
}

stage_done() {
  __stage_took "$1" $(( SECONDS - __stage_start ))
  __stage_start=$SECONDS
}

timed() {
  local start=$SECONDS
  "${@:2}"
  stage_seconds=$(( SECONDS - start ))
  __stage_took "$1" "$stage_seconds"
  __stage_start=$SECONDS
}
