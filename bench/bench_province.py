"""Benchmark: a synthetic province end to end — ingest + analyse + indicators — on PostGIS.

    .venv/bin/python bench/bench_province.py --counties 30 --patches 330000    # the 10 M-patch province
    .venv/bin/python bench/bench_province.py --counties 6 --patches 100000     # what fits a quick session

Three ways over the same files, each into fresh schemas of one throw-away PostGIS cluster (tests.pgcluster):

1. **single**: the single-county path, county after county (services.jobs.ingest.load, run_analysis with its
   default 2 threads, run_indicators) in this process — what a bureau does today with `yzt` in a loop;
2. **1 worker**: `yzt ingest region.yaml / analyse / indicators` through services.jobs.region on a LocalCluster
   of one worker process (one thread), then the roll-up;
3. **2 workers**: the same on two worker processes.

Printed: wall seconds per stage and in all, seconds per county and per 100 000 patches, the peak RSS of every
dask worker process (resource.getrusage in the worker: its maximum since it started) and of this process, the
scaling efficiency T(1 worker) / (2 × T(2 workers)), and the load average before and after each run (the
machine is shared: figures taken under load are slower).

Then one large county (--large patches, default 1 000 000; cached in bench/out/county-N): ingested and
analysed by the single-county path; ingested again with each layer a dask task of its own on 1 and on 2
workers (checked equal: every stored row, record and finding); its analysis and its indicator run whole in
this process and in spatial partitions of --partition-rows patches (whole 乡镇, services/jobs/partitions.py, the
DLTB a dask-geopandas frame read by the workers) on 1 and on 2 workers — with the check that every value and
drill-down id is identical.

The province files are cached in --dir (generation costs ~1 min of one core per 330 000-patch county; two are
written at a time).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def vm_hwm_gb() -> float:
    """Peak RSS of this process since its program started (VmHWM; ru_maxrss would include the parent's
    footprint a spawned worker inherited at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def worker_stats(client) -> dict[str, tuple[float, float]]:
    """(peak RSS GB, CPU seconds) of every dask worker process."""
    def stats():
        import resource

        u = resource.getrusage(resource.RUSAGE_SELF)
        return vm_hwm_gb(), u.ru_utime + u.ru_stime

    return {addr: (round(v[0], 2), round(v[1], 1)) for addr, v in client.run(stats).items()}


class CpuTimeline:
    """Cores busy over time, from /proc/stat sampled every ``every`` seconds in a thread of this process:
    where a run leaves a core idle (a stage's tail, the roll-up, a wait) shows as buckets under 2."""

    def __init__(self, every: float = 0.5):
        import threading

        self.every, self.samples, self.marks = every, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _read() -> tuple[float, float]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return float(sum(fields)), float(idle)

    def _run(self) -> None:
        total0, idle0 = self._read()
        while not self._stop.wait(self.every):
            total, idle = self._read()
            if total > total0:
                busy = (os.cpu_count() or 1) * (1 - (idle - idle0) / (total - total0))
                self.samples.append((time.perf_counter(), busy))
            total0, idle0 = total, idle

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def mark(self, name: str) -> None:
        self.marks.append((time.perf_counter(), name))

    def report(self, end: float) -> str:
        """Per stage: mean cores busy, idle core-seconds, and of those the ones in the stage's last 60 s."""
        cores = os.cpu_count() or 1
        lines = []
        bounds = [*self.marks, (end, "")]
        for (t0, name), (t1, _) in itertools.pairwise(bounds):
            inside = [(t, c) for t, c in self.samples if t0 < t <= t1]
            if not inside:
                continue
            busy = sum(c for _, c in inside) / len(inside)
            idle = sum(cores - c for _, c in inside) * self.every
            tail = sum(cores - c for t, c in inside if t > t1 - 60) * self.every
            lines.append(f"{name} {busy:.2f} cores busy, {idle:.0f} core-s idle ({tail:.0f} in its last 60 s)")
        return "; ".join(lines)


def schema_sizes(url: str) -> dict[str, float]:
    """MB per county schema of the last province run (tables, TOAST and indexes)."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT n.nspname, sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON "
            "n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname ~ '^prov[0-9]_[0-9]{6}$' "
            "GROUP BY 1 ORDER BY 1").fetchall()
    last = max((r[0].split("_")[0] for r in rows), default=None)
    return {name: float(size) / 1e6 for name, size in rows if name.startswith(f"{last}_")}


def postgres_cpu(cluster) -> float:
    """CPU seconds of the PostGIS cluster so far: the postmaster and its reaped backends (utime, stime, cutime,
    cstime of /proc/<postmaster>/stat) plus the backends still running."""
    data = Path(cluster.data_dir) if hasattr(cluster, "data_dir") else None
    pid_file = (data / "postmaster.pid") if data else None
    if pid_file is None or not pid_file.exists():
        return float("nan")
    pid = int(pid_file.read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")

    def times(p: int, children: bool) -> float:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        ut, st, cut, cst = (int(fields[i]) for i in (11, 12, 13, 14))
        return (ut + st + (cut + cst if children else 0)) / tick

    total = times(pid, True)
    for stat in Path("/proc").glob("[0-9]*/stat"):  # the backends still running
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += times(int(stat.parent.name), False)
        except (OSError, ValueError, IndexError):
            pass
    return total


def generate(folder: Path, counties: int, patches: int) -> Path:
    region = folder / "region.yaml"
    if region.is_file():
        print(f"province cached in {folder}")
        return region
    from data.province import write_province

    t0 = time.perf_counter()
    write_province(folder, counties, patches, progress=lambda line: print("  " + line, flush=True), jobs=2)
    print(f"generated {counties} counties in {time.perf_counter() - t0:.0f} s")
    return region


def run_single(region_path: Path, base_url: str) -> dict:
    from layers.region import load_region
    from layers.store.province import with_schema
    from services.jobs.analyse import run_analysis
    from services.jobs.indicators import run_indicators
    from services.jobs.ingest import load as ingest

    times = {"ingest": 0.0, "analyse": 0.0, "indicators": 0.0}
    for county in load_region(region_path).counties:
        url = with_schema(base_url, f"single_{county.code}")
        t = time.perf_counter()
        ingest(county.manifest_path, url, progress=False)
        times["ingest"] += time.perf_counter() - t
        t = time.perf_counter()
        run_analysis(url)
        times["analyse"] += time.perf_counter() - t
        t = time.perf_counter()
        run_indicators(url)
        times["indicators"] += time.perf_counter() - t
    return times


def run_province(region_path: Path, url: str, workers: int) -> tuple[dict, dict]:
    """The three stages on a LocalCluster of ``workers``; (seconds per stage, {worker: (peak GB, CPU s)})."""
    from services.jobs import region as jobs

    times = {}
    timeline = CpuTimeline()
    with timeline, jobs.region_cluster(workers=workers, memory_limit="6GiB") as client:
        print(f"  dashboard {client.dashboard_link}", flush=True)
        t = time.perf_counter()
        timeline.mark("ingest")
        r = jobs.ingest_region(region_path, url, client, progress=False)
        times["ingest"] = time.perf_counter() - t
        assert not r.failed, r.to_text()
        done = [o.summary for o in r.outcomes if o.summary]
        if done:
            load_s = sum(d["seconds"] - d["write_seconds"] for d in done) / len(done)
            write_s = sum(d["write_seconds"] for d in done) / len(done)
            print(f"  ingest per county: load {load_s:.1f} s + PostGIS write {write_s:.1f} s (mean)", flush=True)
        t = time.perf_counter()
        timeline.mark("analyse")
        r = jobs.analyse_region(url, client, progress=False)
        times["analyse"] = time.perf_counter() - t
        assert not r.failed, r.to_text()
        stages: dict[str, float] = {}
        for o in r.outcomes:
            for k, v in (o.summary.get("timings") or {}).items():
                stages[k] = stages.get(k, 0.0) + v / len(r.outcomes)
        print(f"  analyse per county (mean, s): { {k: round(v, 1) for k, v in stages.items()} }", flush=True)
        t = time.perf_counter()
        timeline.mark("indicators")
        r, rollup = jobs.indicators_region(url, client, progress=False)
        times["indicators"] = time.perf_counter() - t
        assert rollup is not None, r.to_text()
        print(f"  indicators: county tasks {r.seconds:.1f} s, then the roll-up to 市 and 省 "
              f"{times['indicators'] - r.seconds:.1f} s", flush=True)
        peaks = worker_stats(client)
        end = time.perf_counter()
    print(f"  CPU timeline: {timeline.report(end)}", flush=True)
    return times, peaks


def _child(args: list[str]) -> tuple[float, float]:
    """Run ``python -m services.cli ARGS`` in a process of its own: (wall seconds, its peak RSS in GB)."""
    import subprocess

    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(p.stderr[-2000:] if p.returncode else ''); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "services.cli", *args],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if proc.returncode != 0:
        raise SystemExit(f"failed: yzt {' '.join(args)}\n{proc.stderr}")
    return time.perf_counter() - t, int(proc.stdout.split()[-1]) / 1024 / 1024


def large_county(folder: Path, patches: int, base_url: str, rows_per_partition: int,
                 manifest: Path | None = None, partitions: bool = True, layer_tasks: bool = True) -> None:
    """One county of ``patches`` DLTB patches: ingest, analyse and indicators by the single-county path, each in
    a process of its own (wall time, peak RSS); then its analysis and its indicator run in spatial partitions
    (services/jobs/analyse_partitions.py, services/jobs/partitions.py) on a LocalCluster of 1 and of 2 workers,
    checked equal to the whole run."""
    import json

    import numpy as np
    import pandas as pd

    from layers.region import load_region
    from layers.store import open_store
    from layers.store.province import with_schema
    from services.jobs.indicators import load_run

    if manifest is None:
        manifest = load_region(generate(folder, 1, patches)).counties[0].manifest_path
    code = manifest.parent.name.lstrip("c")
    url = with_schema(base_url, f"big_{code}")
    print(f"\n[one large county] {code} ({manifest}), load before {load()}", flush=True)
    t_ingest, m_ingest = _child(["ingest", str(manifest), "--store", url])
    t_analyse, m_analyse = _child(["analyse", "--store", url])
    t_whole, m_whole = _child(["indicators", "--store", url, "--format", "json", "--out", os.devnull])
    with open_store(url) as store:
        flagged, conflicts = store.read_layer("flagged_patches"), store.read_layer("planning_conflicts")
        runs = store.read_table("indicator_runs", columns=["run_id"])
    whole = load_run(url, str(runs["run_id"].iloc[-1]))
    n = int(json.loads(whole.meta["input_loads"])["dltb"]["rows_written"])
    print(f"  {n:,} DLTB patches, whole (one process each): ingest {t_ingest:.1f} s ({m_ingest:.2f} GB), analyse "
          f"{t_analyse:.1f} s ({m_analyse:.2f} GB), indicators {t_whole:.1f} s ({m_whole:.2f} GB)", flush=True)
    if layer_tasks:
        ingest_in_layer_tasks(manifest, url, with_schema(base_url, f"big_{code}_t"), t_ingest, rows_per_partition)
    if not partitions:
        return
    key = ["indicator", "unit_code"]
    base = whole.values.sort_values(key).reset_index(drop=True)
    seconds: dict[str, dict[int, float]] = {"analyse": {}, "indicators": {}}
    for workers in (1, 2):
        for stage in ("analyse", "indicators"):
            out = _partitioned_child(stage, url, rows_per_partition, workers)
            seconds[stage][workers] = out["seconds"]
            whole_s = t_analyse if stage == "analyse" else t_whole
            if stage == "analyse":
                same = (out["jcbh"] == flagged["JCBH"].tolist() and out["verdict"] == flagged["verdict"].tolist()
                        and out["flagged_area"] == flagged["area_m2"].astype(float).tolist()
                        and out["conflict_id"] == conflicts["conflict_id"].tolist()
                        and out["conflict_area"] == conflicts["area_m2"].astype(float).tolist())
                detail = f"stages {out['timings']}; records identical {same}"
            else:
                got = pd.read_pickle(out["values"]).sort_values(key).reset_index(drop=True)
                same = all(np.array_equal(base[c].to_numpy(float), got[c].to_numpy(float), equal_nan=True)
                           for c in ("value", "value_m2", "value_ha", "value_mu", "value_rounded", "record_count"))
                same_ids = [json.dumps(v, sort_keys=True) for v in base["record_ids"]] == \
                    [json.dumps(v, sort_keys=True) for v in got["record_ids"]]
                detail = f"values identical {same}, drill-down ids identical {same_ids}"
            print(f"  {stage} partitioned on {workers} worker(s): {out['why']}; {out['seconds']:.1f} s "
                  f"(× {whole_s / out['seconds']:.2f} of whole); peak RSS per worker {out['workers_gb']} GB, the "
                  f"county task {out['county_gb']:.2f} GB; {detail}; load {load()}", flush=True)
    for stage, by in seconds.items():
        print(f"  {stage} partitions: 1 → 2 workers × {by[1] / by[2]:.2f} (efficiency {by[1] / (2 * by[2]):.2f})",
              flush=True)


def _table_digest(url: str) -> dict[str, str]:
    """Per layer of the last load: md5 of its rows as text in yzt_fid order (attributes and EWKB), by PostGIS."""
    from layers.store import open_store

    with open_store(url) as store:
        records = store.load_records()
        names = sorted(set(records.loc[records["load_id"] == store.meta()["last_load_id"], "layer"]))
        conn = store._connection()
        schema = store.schema_name
        return {n: conn.execute(f'SELECT md5(string_agg(md5(t::text), \'\' ORDER BY yzt_fid)) FROM "{schema}"."{n}" t'
                                ).fetchone()[0] for n in names}


def ingest_in_layer_tasks(manifest: Path, whole_url: str, url: str, t_whole: float, rows_per_partition: int
                          ) -> None:
    """The county ingested with each layer a dask task of its own (services.jobs.ingest.load with a client) on 1
    and on 2 workers, into another schema, each survey layer's areas and coverage validation in spatial
    partitions of ``rows_per_partition`` rows; checked equal to the one-process ingest: every stored row (an
    md5 per layer), the load records and the 入库质检 findings."""
    import pandas as pd

    from layers.store import open_store

    def facts(u: str):
        with open_store(u) as store:
            records = store.load_records()
            records = records[records["load_id"] == store.meta()["last_load_id"]]
            findings = store.findings(load_id=store.meta()["last_load_id"])
        cols = ["layer", "sha256", "code_set", "rows_read", "rows_written", "repaired", "dropped_empty", "duplicates",
                "area_mismatches", "transformation"]
        return (records[cols].astype(str).values.tolist(),
                pd.DataFrame(findings).drop(columns="load_id").astype(str).values.tolist())

    base_digest, base_facts = _table_digest(whole_url), facts(whole_url)
    seconds = {}
    for workers in (1, 2):
        out = _partitioned_child("ingest", url, rows_per_partition, workers, str(manifest))
        seconds[workers] = out["seconds"]
        same_rows = _table_digest(url) == base_digest
        same_facts = facts(url) == base_facts
        ratio = t_whole / out["seconds"]
        print(f"  ingest in layer tasks on {workers} worker(s): {out['seconds']:.1f} s (× {ratio:.2f} of whole);"
              f" coverage partitions {out['partitions']}; peak RSS per worker {out['workers_gb']} GB, the county "
              f"task {out['county_gb']:.2f} GB; "
              f"stored rows identical {same_rows}, records and findings identical {same_facts}; load {load()}",
              flush=True)
    print(f"  ingest layer tasks: 1 → 2 workers × {seconds[1] / seconds[2]:.2f} (efficiency "
          f"{seconds[1] / (2 * seconds[2]):.2f})", flush=True)
    # the yearly 年度变更 delivery replaces dltb alone: one survey layer, where only its spatial partitions can
    # bring the second worker in
    t_alone, m_alone = _child(["ingest", str(manifest), "--store", whole_url, "--role", "dltb", "--no-progress"])
    print(f"  dltb alone (--role dltb): in one process {t_alone:.1f} s ({m_alone:.2f} GB)", flush=True)
    for stage, what in (("ingest-dltb-whole", "checked whole (workers without the yzt-survey slot)"),
                        ("ingest-dltb", "in coverage partitions")) * 2:  # twice, alternating: the runs vary
        out = _partitioned_child(stage, url, rows_per_partition, 2, str(manifest))
        print(f"  dltb alone as a layer task on 2 workers, {what} {out['partitions']}: {out['seconds']:.1f} s; "
              f"peak RSS per worker {out['workers_gb']} GB; load {load()}", flush=True)


def _partitioned_child(stage: str, url: str, rows: int, workers: int, manifest: str = "") -> dict:
    """Run one stage of the county in partitions in a process of its own (its peak RSS is the county task's)."""
    import json
    import subprocess

    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--partition-child", stage, url, str(rows),
                           str(workers), manifest], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"the partitioned {stage} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def partition_child(stage: str, url: str, rows: int, workers: int, manifest: str = "") -> None:
    """(In the child) one stage in partitions (ingest: in layer tasks) on a fresh LocalCluster; its figures as
    one JSON line."""
    import json

    from services.jobs import region as jobs
    from services.jobs.analyse import run_analysis
    from services.jobs.indicators import run_indicators
    from services.jobs.ingest import load as ingest

    if stage == "ingest-dltb-whole":  # workers without the yzt-survey resource: survey layers checked whole
        from distributed import Client, LocalCluster

        cluster = contextlib.ExitStack()
        clients = Client(cluster.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1,
                                                            memory_limit="8GiB", dashboard_address=":0")))
    else:
        cluster, clients = contextlib.ExitStack(), jobs.region_cluster(workers=workers, memory_limit="8GiB")
    with cluster, clients as client:
        t = time.perf_counter()
        if stage.startswith("ingest"):
            loaded = ingest(manifest, url, progress=False, client=client, rows_per_partition=rows,
                            roles=["dltb"] if stage.startswith("ingest-dltb") else None)
        elif stage == "analyse":
            result = run_analysis(url, write=False, client=client, rows_per_partition=rows)
        else:
            run = run_indicators(url, save=False, client=client, rows_per_partition=rows)
        seconds = time.perf_counter() - t
        peaks = worker_stats(client)
    out: dict = {"seconds": seconds, "workers_gb": [v[0] for v in peaks.values()], "county_gb": vm_hwm_gb()}
    if stage.startswith("ingest"):
        out.update(layer_tasks=loaded.layer_tasks, partitions={s.role: s.partitions for s in loaded.layers
                                                               if s.partitions})
    elif stage == "analyse":
        out.update(why=result.partitions["why"], timings=result.timings, jcbh=result.flagged["JCBH"].tolist(),
                   verdict=result.flagged["verdict"].tolist(), flagged_area=result.flagged["area_m2"].tolist(),
                   conflict_id=result.conflicts["conflict_id"].tolist(),
                   conflict_area=result.conflicts["area_m2"].astype(float).tolist())
    else:
        path = ROOT / "bench" / "out" / f".partition-values-{workers}.pkl"  # exact floats, ids as they are
        run.values.to_pickle(path)
        out.update(why=json.loads(run.meta["partitions"])["why"], values=str(path))
    print(json.dumps(out, ensure_ascii=False, default=str))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counties", type=int, default=30)
    ap.add_argument("--patches", type=int, default=330_000, help="DLTB patches per county")
    ap.add_argument("--dir", type=Path, default=None, help="province files (default bench/out/province-N-P)")
    ap.add_argument("--skip", default="",
                    help="comma list of runs to skip: single,1,2,large, partitions (the large county's analysis "
                         "and indicators), tasks (its ingest in layer tasks)")
    ap.add_argument("--large", type=int, default=1_000_000, help="DLTB patches of the one large county")
    ap.add_argument("--partition-rows", type=int, default=250_000, help="the large county's partition size")
    ap.add_argument("--large-from", type=Path, default=None, metavar="MANIFEST",
                    help="measure the partitions on this county instead of generating --large patches")
    ap.add_argument("--partition-child", nargs=5, metavar=("STAGE", "URL", "ROWS", "WORKERS", "MANIFEST"),
                    default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.partition_child:
        stage, url, rows, workers, manifest = args.partition_child
        partition_child(stage, url, int(rows), int(workers), manifest)
        return 0
    folder = (args.dir or ROOT / "bench" / "out" / f"province-{args.counties}-{args.patches}").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    region_path = generate(folder, args.counties, args.patches)
    from layers.region import load_region

    region = load_region(region_path)
    import pyarrow.parquet as pq

    patches = sum(pq.read_metadata(c.manifest_path.parent / "dltb_2024.parquet").num_rows for c in region.counties)
    print(f"province: {len(region.counties)} counties, {patches:,} DLTB patches (and as many in dltb_prev), "
          f"cities {sorted(region.cities)}")
    from tests.pgcluster import start_cluster

    base = Path(tempfile.mkdtemp(prefix="yzt-bench-province-"))
    cluster = start_cluster(base)
    skip = set(filter(None, args.skip.split(",")))
    results = {}
    try:
        if "single" not in skip:
            print(f"\n[single-county path, county after county] load before {load()}", flush=True)
            t = time.perf_counter()
            times = run_single(region_path, cluster.url)
            total = time.perf_counter() - t
            results["single"] = total
            print(f"  {({k: round(v, 1) for k, v in times.items()})} total {total:.1f} s "
                  f"({total / len(region.counties):.1f} s per county); peak RSS {vm_hwm_gb():.2f} GB "
                  f"(this process, all counties); load after {load()}", flush=True)
        for workers in (1, 2):
            if str(workers) in skip:
                continue
            print(f"\n[province path, {workers} worker(s)] load before {load()}", flush=True)
            pg0 = postgres_cpu(cluster)
            t = time.perf_counter()
            times, peaks = run_province(region_path, f"{cluster.url}?schema=prov{workers}", workers)
            total = time.perf_counter() - t
            pg = postgres_cpu(cluster) - pg0
            results[workers] = total
            worker_cpu = sum(v[1] for v in peaks.values())
            print(f"  {({k: round(v, 1) for k, v in times.items()})} total {total:.1f} s "
                  f"({total / len(region.counties):.1f} s per county, {total / patches * 1e5:.1f} s per 100 000 "
                  f"patches); peak RSS per worker {[v[0] for v in peaks.values()]} GB; CPU: workers "
                  f"{worker_cpu:.0f} s, PostGIS {pg:.0f} s, = {(worker_cpu + pg) / total:.2f} cores busy on "
                  f"average; load after {load()}", flush=True)
        sizes = schema_sizes(cluster.url)
        if sizes:
            mb = sorted(sizes.values())
            print(f"\nPostGIS size per county schema (tables + indexes): {mb[0]:.0f}–{mb[-1]:.0f} MB "
                  f"(mean {sum(mb) / len(mb):.0f} MB, {sum(mb) / len(mb) / (patches / len(mb)) * 1e5:.0f} MB per "
                  "100 000 patches)")
        if 1 in results and 2 in results:
            print(f"\nscaling efficiency T1 / (2 × T2) = {results[1]:.1f} / (2 × {results[2]:.1f}) = "
                  f"{results[1] / (2 * results[2]):.2f} (target ≥ 0.85)")
        if "single" in results and 2 in results:
            print(f"single-county path / province on 2 workers = {results['single'] / results[2]:.2f}×")
        if "large" not in skip:
            large_county(ROOT / "bench" / "out" / f"county-{args.large}", args.large, cluster.url,
                         args.partition_rows, args.large_from, partitions="partitions" not in skip,
                         layer_tasks="tasks" not in skip)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
