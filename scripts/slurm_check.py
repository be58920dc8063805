"""The README's SLURM promises against a real SLURM on this machine: one node, two partitions, jobs of ``low``
preempted (requeued) by jobs of ``high``. Each check stops a running job (a job on ``high`` that needs every CPU
preempts it, or its time limit comes), lets it be requeued, and compares its final figures with the same run never
stopped:

  launcher       gan-train -m hydra/launcher=slurm ...: SLURM's SIGTERM, then SIGKILL after the partition's
                 GraceTime; the requeued job continues from checkpoints/last.pt in its own directory
  launcher_usr2  the same with SlurmctldParameters=preempt_send_user_signal: submitit's signal (SIGUSR2) comes
                 instead; the job checkpoints at the iteration it is at and submitit requeues it
  timelimit      hydra/launcher=slurm with a 2-minute time limit: submitit's signal 90 s before it checkpoints the
                 job and submitit requeues it, as often as the limit comes
  population     a population inside one ``sbatch --requeue`` job: SIGTERM checkpoints every member, the requeued job
                 continues each one

It needs root and Debian's slurm-wlm and munge (``apt-get install slurm-wlm munge``; installed here when missing
and apt works). It starts its own slurmctld and slurmd (configuration and state under --work) and stops them at the
end; nothing else of the machine's is changed. About 25 minutes on 2 cores:

    python scripts/slurm_check.py [--only launcher,population] [--work /tmp/gan_cli_slurm]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GAN_TRAIN = str(Path(sys.executable).with_name("gan-train"))
STEPS = 30000
# a small ring run: about a minute on 2 cores; checkpoints every 2,000 iterations
RUN = ["dataset=ring", "arch=mlp", "arch.g_hidden=32", "arch.d_hidden=32", "optimizer=adam", "optimizer.lr=0.001",
       "batch_size=64", f"steps={STEPS}", "log_every=500", "ckpt_every=2000", "sample_every=100000",
       "eval_every=100000", "eval.n_samples=300", "eval.classifier_steps=30", "eval.theory_samples=2000",
       "eval.mode_samples=500"]
FIGURES = ("game/loss_D", "game/loss_G", "game/D_real", "game/D_fake", "grad/D", "grad/G", "eval/jsd",
           "eval/reverse_kl", "eval/modes_covered")
CHECKS = ("launcher", "launcher_usr2", "timelimit", "population")
GRACE_S = 10


def conf(work: Path, user_signal: bool) -> str:
    host, cpus = socket.gethostname().split(".")[0], os.cpu_count()
    memory_mb = int(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 * 0.8)
    low = f"MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime={GRACE_S}"  # preempted by high
    return f"""ClusterName=gan_cli_check
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={work}/state
SlurmdSpoolDir={work}/spool
SlurmctldPidFile={work}/slurmctld.pid
SlurmdPidFile={work}/slurmd.pid
SlurmctldLogFile={work}/slurmctld.log
SlurmdLogFile={work}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
{"SlurmctldParameters=preempt_send_user_signal" if user_signal else ""}
KillWait=10
InactiveLimit=0
NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=low Nodes={host} Default=YES {low}
PartitionName=high Nodes={host} MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
"""


class Cluster:
    """slurmctld and slurmd of a one-node cluster configured under ``work`` (SLURM_CONF points there)."""

    def __init__(self, work: Path):
        self.work, self.munged = work, False  # munged: whether it was started here (and is stopped at the end)

    def start(self, user_signal: bool) -> None:
        self.stop()
        for sub in ("state", "spool"):
            shutil.rmtree(self.work / sub, ignore_errors=True)
            (self.work / sub).mkdir(parents=True)
        (self.work / "slurm.conf").write_text(conf(self.work, user_signal))
        os.environ["SLURM_CONF"] = str(self.work / "slurm.conf")
        if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode != 0:
            Path("/run/munge").mkdir(exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
            self.munged = True
        subprocess.run(["slurmctld"], check=True)
        subprocess.run(["slurmd"], check=True)
        wait(lambda: "idle" in sh("sinfo -h -o %T"), 60, "the node to come up")

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld"):
            pid_file = self.work / f"{name}.pid"
            try:
                pid = int(pid_file.read_text())
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):  # not running
                continue
            wait(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 30, f"{name} to stop")

    def close(self) -> None:
        self.stop()
        if self.munged:
            subprocess.run(["pkill", "-x", "munged"], check=False)


def sh(command: str) -> str:
    return subprocess.run(command, shell=True, capture_output=True, text=True).stdout


def wait(ready, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while not ready():
        if time.time() > deadline:
            raise SystemExit(f"slurm_check: gave up waiting for {what} after {seconds:.0f} s")
        time.sleep(1)


def step_of(log: Path) -> int:
    steps = re.findall(rf"step (\d+)/{STEPS}", log.read_text()) if log.is_file() else []
    return int(steps[-1]) if steps else 0


def preempt(after_logs, step: int) -> int:
    """Once every log in ``after_logs()`` is past ``step``: a job on the high partition that needs every CPU."""
    wait(lambda: (logs := after_logs()) and all(step_of(p) >= step for p in logs), 600, f"iteration {step}")
    out = sh(f"sbatch --parsable -p high -c {os.cpu_count()} -o /dev/null --wrap 'sleep 5'")
    print(f"  preempting at iteration {max(step_of(p) for p in after_logs())} (high job {out.strip()})", flush=True)
    return int(out.strip())


def figures(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def compare(run_dir: Path, reference: Path) -> list:
    got, want = figures(run_dir), figures(reference)
    problems = [] if got.get("status") == "ok" and got.get("steps") == STEPS else [f"{run_dir}: {got.get('status')}"]
    return problems + [f"{run_dir.name}: {k} {got.get(k)} != {want.get(k)} never preempted"
                       for k in FIGURES if got.get(k) != want.get(k)]


def reference(work: Path, extra=(), population: bool = False) -> Path:
    out = work / ("reference_population" if population else "reference")
    if not out.is_dir():
        mode = ["-m", "hydra/launcher=population", f"hydra.sweep.dir={out}"] if population else \
            [f"hydra.run.dir={out}"]
        subprocess.run([GAN_TRAIN, *mode, *RUN, *extra], cwd=REPO, check=True, capture_output=True)
    return out


def check_launcher(work: Path, name: str) -> list:
    """A sweep of one job through hydra/launcher=slurm: preempted once, or (timelimit) run under a 2-minute time
    limit with submitit's signal 90 s before it, so that it meets the limit at least once."""
    sweep = work / name
    shutil.rmtree(sweep, ignore_errors=True)
    limit = ["hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=90"] if name == "timelimit" else \
        ["hydra.launcher.timeout_min=60"]
    proc = subprocess.Popen([GAN_TRAIN, "-m", "hydra/launcher=slurm", "hydra.launcher.partition=low",
                             "hydra.launcher.gpus_per_node=0", f"hydra.launcher.cpus_per_task={os.cpu_count()}",
                             "hydra.launcher.mem_gb=4", *limit, *RUN, f"hydra.sweep.dir={sweep}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if name != "timelimit":
        preempt(lambda: list(sweep.glob("0/train.log")), 3000)
    out, _ = proc.communicate(timeout=1800)
    log = (sweep / "0" / "train.log").read_text()
    problems = [] if proc.returncode == 0 else [f"gan-train exited {proc.returncode}: {out[-2000:]}"]
    resumed = re.findall(r"resumed from \S+ at iteration (\d+)", log)
    stopped = re.findall(r"interrupted \((\w+)\) at iteration (\d+)", log)
    print(f"  stopped by signal: {stopped or 'none (killed)'}; resumed at: {resumed}", flush=True)
    if not resumed:
        problems.append("the job did not resume from a checkpoint")
    if name != "launcher" and not (stopped and {s for s, _ in stopped} == {"SIGUSR2"}
                                   and resumed == [it for _, it in stopped]):
        problems.append("submitit's signal did not checkpoint the iteration the job was at, or it did not resume there")
    dirs = [p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if dirs != ["0"]:
        problems.append(f"the sweep has job directories {dirs} (one expected)")
    return problems + compare(sweep / "0", reference(work))


def check_population(work: Path) -> list:
    """A population of two inside one sbatch --requeue job, preempted once."""
    base = work / "population"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    command = " ".join([GAN_TRAIN, "-m", "hydra/launcher=population", *RUN, "seed=0,1",
                        f"hydra.sweep.dir={base}/$SLURM_JOB_ID"])
    job = sh(f"sbatch --parsable --requeue -p low -c {os.cpu_count()} -o {base}/slurm-%j.out -D {REPO} "
             f"--wrap '{command}'").strip()
    sweep = base / job
    preempt(lambda: list(sweep.glob("*/train.log")), 3000)
    wait(lambda: job not in sh("squeue -h -o %i").split(), 1800, f"job {job} to end")
    problems = []
    ref = reference(work, ["seed=0,1"], population=True)
    for member, ref_member in zip(sorted(p for p in sweep.iterdir() if (p / "train.log").is_file()),
                                  sorted(p for p in ref.iterdir() if (p / "train.log").is_file())):
        log = (member / "train.log").read_text()
        stopped = re.findall(r"interrupted \((\w+)\) at iteration (\d+)", log)
        resumed = re.findall(r"resumed from \S+ at iteration (\d+)", log)
        print(f"  {member.name}: stopped {stopped}; resumed at {resumed}", flush=True)
        if not (stopped and stopped[0][0] == "SIGTERM" and resumed[:1] == [stopped[0][1]]):
            problems.append(f"{member.name}: SIGTERM did not checkpoint it where it was, or it did not resume there")
        problems += compare(member, ref_member)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(CHECKS), help=f"a comma-separated subset of {', '.join(CHECKS)}")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gan_cli_slurm"))
    args = parser.parse_args()
    only = args.only.split(",")
    if set(only) - set(CHECKS):
        parser.error(f"--only {args.only}: choose from {', '.join(CHECKS)}")
    if shutil.which("slurmctld") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise SystemExit("slurm_check: needs slurm-wlm and munge (apt-get install slurm-wlm munge, as root)")
        subprocess.run(["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, capture_output=True)
    args.work.mkdir(parents=True, exist_ok=True)
    cluster, failures = Cluster(args.work.resolve()), {}
    try:
        for name in only:
            start = time.time()
            print(f"{name}:", flush=True)
            cluster.start(user_signal=name == "launcher_usr2")
            found = check_population(cluster.work) if name == "population" else check_launcher(cluster.work, name)
            failures[name] = found
            print(f"  {'ok' if not found else 'FAILED: ' + '; '.join(found)} ({time.time() - start:.0f} s)",
                  flush=True)
    finally:
        cluster.close()
    return 1 if any(failures.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
