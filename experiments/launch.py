"""Runs of `experiments.run` as subprocesses (sweeps, reproductions)."""

import os
import subprocess
import sys
import time


def command(spec: str, workdir: str, overrides: dict) -> list[str]:
  """The `experiments.run` command line of one run."""
  return [sys.executable, '-m', 'experiments.run', f'--config={spec}',
          f'--workdir={workdir}'] + [
              f'--config.{k}={v}' for k, v in sorted(overrides.items())]


def launch(jobs, parallel: int) -> list[str]:
  """Runs `(command, workdir)` jobs, `parallel` at a time, each logging to
  `workdir/log.txt`; returns the workdirs of the failed ones."""
  todo, running, failed = list(jobs), [], []
  while todo or running:
    while todo and len(running) < parallel:
      cmd, wd = todo.pop(0)
      os.makedirs(wd, exist_ok=True)
      log = open(os.path.join(wd, 'log.txt'), 'a')
      running.append((subprocess.Popen(cmd, stdout=log, stderr=log), wd, log,
                      time.time()))
      print(f'started {wd}', flush=True)
    for item in list(running):
      proc, wd, log, t0 = item
      if proc.poll() is not None:
        log.close()
        running.remove(item)
        print(f'{"finished" if proc.returncode == 0 else "FAILED"} {wd} in '
              f'{time.time() - t0:.0f}s', flush=True)
        if proc.returncode:
          failed.append(wd)
    time.sleep(0.5)
  return failed
