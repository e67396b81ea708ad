"""The Flink side: PyFlink's local mini-cluster in streaming mode.

Each event kind is a bounded filesystem/CSV table over the same files
Sluice loads, with the same watermark (date_time - 4 s), so windows fire on
watermarks as in a real stream; at the end of its input Flink advances the
watermark to +inf and fires every window, which the harness accounts for.

A query is timed as one job: planning, submission, reading its CSV files,
running, and the job's end, into a `blackhole` sink (so no result is
written anywhere). Its result is then produced by a second, untimed job
collected to pandas, which folds an updating result's changelog into its
final rows.
"""

import os
import time

from pyflink.table import EnvironmentSettings, TableDescriptor, TableEnvironment

from queries import COLUMNS, columns_ddl


# Settings of the Nexmark suite's Flink configuration that apply to a local
# run: object reuse, and mini-batches for (updating) aggregates, which
# Sluice's epochs resemble. State stays on the heap (Flink's default), as
# Sluice's is in memory; no checkpoints, as the input is bounded.
NEXMARK_SETTINGS = {
    "pipeline.object-reuse": "true",
    "table.exec.mini-batch.enabled": "true",
    "table.exec.mini-batch.allow-latency": "2s",
    "table.exec.mini-batch.size": "50000",
}


class FlinkRunner:
    def __init__(self, data_dir: str, parallelism: int):
        self.env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
        config = self.env.get_config()
        config.set("parallelism.default", str(parallelism))
        for key, value in NEXMARK_SETTINGS.items():
            config.set(key, value)
        for table in COLUMNS:
            self._csv_table(table, table, os.path.join(data_dir, f"{table}.csv"))
        self.data_dir = data_dir

    def _csv_table(self, name: str, kind: str, path: str):
        self.env.execute_sql(
            f"CREATE TEMPORARY TABLE {name} ({columns_ddl(kind, 'flink')}) "
            f"WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'csv')"
        )

    def warm_up(self, sample_csv: str, runs: int = 2) -> float:
        """Runs a small job a few times so that the first timed query does
        not pay for class loading and JIT; returns the last run's seconds,
        about what any job costs regardless of its input."""
        self._csv_table("bid_warmup", "bid", sample_csv)
        seconds = 0.0
        for _ in range(runs):
            seconds = self.time_query(
                "SELECT auction, bidder, 0.908 * price, date_time, extra FROM bid_warmup "
                "WHERE MOD(auction, 123) = 0"
            )
        return seconds

    def time_query(self, sql: str) -> float:
        start = time.perf_counter()
        result = self.env.sql_query(sql).execute_insert(
            TableDescriptor.for_connector("blackhole").build()
        )
        result.wait()
        return time.perf_counter() - start

    def result(self, sql: str):
        """The query's final result as a pandas DataFrame."""
        return self.env.sql_query(sql).to_pandas()
