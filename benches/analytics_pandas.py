"""The analytics benchmark's two jobs in pandas, on the same data (a Parquet copy of the
events table that benches/analytics_load.rs wrote): the raw events as a CSV file for Excel
(UTF-8 with BOM, the same labelled headers, the same date format), and the per-format
aggregate, the latter twice: reading the whole table, as a pandas user writes it (what the ≥ 5×
goal is measured against), and reading only the five columns it uses (what postflow's scan
reads; a harder reference). Prints the best and median of RUNS runs, each including the read.
With --serve it runs one job per line read from stdin (export, aggregate, aggregate_columns) and
answers each with its time in seconds, so that benches/analytics_load.rs can run pandas' jobs in
the same rounds as postflow's and compare times taken under the same load on the host.

python3 benches/analytics_pandas.py DIR RUNS      (needs: pip install pandas pyarrow)
python3 benches/analytics_pandas.py DIR --serve
"""
import statistics
import sys
import time

import pandas as pd
import pyarrow  # noqa: F401  (read_parquet needs it; fail before answering "ready" without it)

HEADERS = {"at": "Ժամանակ", "kind": "Տեսակ", "user": "Օգտատեր", "post": "Գրառում", "format": "Ձևաչափ"}


def export(folder):
    events = pd.read_parquet(f"{folder}/events.parquet")
    period = (events["at"] >= pd.Timestamp("1970-01-01")) & (events["at"] < pd.Timestamp("2999-12-31"))
    events = events[period].rename(columns=HEADERS)
    events.to_csv(f"{folder}/events_pandas.csv", index=False, encoding="utf-8-sig", date_format="%Y-%m-%d %H:%M")
    return len(events)


AGGREGATE_COLUMNS = ["kind", "format", "post", "prompt_tokens", "completion_tokens"]


def aggregate(folder, columns=None):
    events = pd.read_parquet(f"{folder}/events.parquet", columns=columns)
    events["is_ai"] = (events["kind"] == "ai_call").astype("int64")
    events["tokens"] = events["prompt_tokens"].fillna(0) + events["completion_tokens"].fillna(0)
    result = (
        events.groupby("format", dropna=False)
        .agg(events=("kind", "size"), ai_calls=("is_ai", "sum"), tokens=("tokens", "sum"), posts=("post", "nunique"))
        .reset_index()
        .sort_values("format")
    )
    return len(result)


def timed(job, runs):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        job()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def jobs(folder):
    return {
        "export": lambda: export(folder),
        "aggregate": lambda: aggregate(folder),
        "aggregate_columns": lambda: aggregate(folder, AGGREGATE_COLUMNS),
    }


def serve(folder):
    named = jobs(folder)
    print(f"ready pandas {pd.__version__}", flush=True)
    for line in sys.stdin:
        name = line.strip()
        if name not in named:
            print(f"error unknown job {name!r}", flush=True)
            continue
        started = time.perf_counter()
        named[name]()
        print(f"{time.perf_counter() - started:.6f}", flush=True)


def main():
    if len(sys.argv) > 2 and sys.argv[2] == "--serve":
        serve(sys.argv[1])
        return
    folder, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
    named = jobs(folder)
    best, median = timed(named["export"], runs)
    print(f"pandas_export_total_s={median:.3f} (best {best:.3f}, pandas {pd.__version__})")
    best, median = timed(named["aggregate"], runs)
    print(f"pandas_aggregate_total_s={median:.3f} (best {best:.3f}, the whole table read)")
    best, median = timed(named["aggregate_columns"], runs)
    print(f"pandas_aggregate_columns_s={median:.3f} (best {best:.3f}, only the five columns read)")


if __name__ == "__main__":
    main()
