"""A probe's closed windows: kept in memory (``History.rows``, thinned past ``keep_windows``), and
written into a run store as long tables when the probe is flushed into a run (``write``)."""

from __future__ import annotations

import warnings

from ..thinning import every_second_older


class History:
    def __init__(self, keep_windows: int):
        self.keep_windows = keep_windows
        self.rows: list[dict] = []  # every closed window, thinned
        self.unstored: list[dict] = []  # closed windows not yet written to a run store
        self.thinned = 0  # windows thinned out of ``rows``
        self.thinned_stored = 0  # histogram windows thinned out of the run store
        self._stored_hist_windows = 0

    def add(self, rows: list[dict]) -> None:
        """A closed window's rows. Past ``keep_windows`` windows, the older half is thinned; ``thinned``
        counts the windows gone, and a warning says so the first time."""
        self.unstored.extend(rows)
        self.rows.extend(rows)
        unstored = {r["last_step"] for r in self.unstored}
        if len(unstored) > self.keep_windows:  # never flushed into a run: bounded the same way
            gone = every_second_older(list(unstored))
            self.unstored = [r for r in self.unstored if r["last_step"] not in gone]
        ends = {r["last_step"] for r in self.rows}
        if len(ends) <= self.keep_windows:
            return
        gone = every_second_older(list(ends))
        self.rows = [r for r in self.rows if r["last_step"] not in gone]
        if not self.thinned:
            warnings.warn(f"probe history over keep_windows={self.keep_windows} windows: thinning the older "
                          "half (probe.thinned counts the windows gone; a run flushed into as it goes keeps "
                          "every window's statistics)", stacklevel=5)
        self.thinned += len(gone)

    def last_window(self) -> list[dict]:
        if not self.rows:
            return []
        last = self.rows[-1]["last_step"]
        return [r for r in self.rows if r["last_step"] == last]

    def write(self, run, step: int, bins: int) -> None:
        """The unstored windows as long tables (pandas melt and explode): ``probes`` (step, layer, name,
        value), ``histograms`` (step, layer, bin, lo, hi, count), ``probe_layers`` (the text columns)
        and, for recurrent layers, ``time_gradients`` (step, layer, t, norm)."""
        import pandas as pd
        import pyarrow as pa

        if not self.unstored:
            return
        rows = pd.DataFrame(self.unstored).assign(step=lambda f: f["last_step"])
        numbers = [c for c in rows if c not in ("step", "hist_lo", "hist_hi") and pd.api.types.is_numeric_dtype(rows[c])
                   and not pd.api.types.is_bool_dtype(rows[c])]
        long = rows.melt(id_vars=["step", "layer"], value_vars=numbers, var_name="name").astype({"value": float})
        tables = [("probes", long)]
        if "hist" in rows:  # not when the histogram statistic is off
            hist = rows.loc[rows["hist"].map(lambda h: isinstance(h, list)), ["step", "layer", "hist", "hist_lo", "hist_hi"]]
            hist = hist.explode("hist", ignore_index=True)  # attention heads have no histogram
            hist["bin"] = hist.groupby(["step", "layer"], sort=False).cumcount()
            width = (hist["hist_hi"] - hist["hist_lo"]) / bins
            hist = hist.assign(lo=hist["hist_lo"] + hist["bin"] * width, hi=hist["hist_lo"] + (hist["bin"] + 1) * width,
                               count=hist["hist"].astype(float))[["step", "layer", "bin", "lo", "hi", "count"]]
            tables.append(("histograms", hist))
        text = rows[["step", "layer", "type", "activation"]].fillna({"activation": ""})
        tables.append(("probe_layers", text))
        if "time_grad" in rows:  # recurrent layers: ||dL_T/dh_t|| per time step
            time = rows.loc[rows["time_grad"].map(lambda g: isinstance(g, list)), ["step", "layer", "time_grad"]]
            time = time.explode("time_grad", ignore_index=True)
            time["t"] = time.groupby(["step", "layer"], sort=False).cumcount() + 1
            tables.append(("time_gradients", time.assign(norm=time["time_grad"].astype(float))[["step", "layer", "t", "norm"]]))
        for name, table in tables:
            run.append_table(name, step, pa.Table.from_pandas(table, preserve_index=False))
        self.unstored = []
        if "hist" in rows:
            self._thin_stored(run, rows["step"].nunique())

    def _thin_stored(self, run, windows: int) -> None:
        """The stored histograms thinned like the history, past ``keep_windows`` windows."""
        self._stored_hist_windows += windows
        if self._stored_hist_windows <= self.keep_windows:
            return
        if not self.thinned_stored:
            warnings.warn(f"stored histograms over keep_windows={self.keep_windows} windows: thinning the older half "
                          "in the run (probe.thinned_stored counts the windows gone; the per-layer statistics keep "
                          "every window)", stacklevel=4)
        run.thin_table("histograms", self.keep_windows)
        gone = (self._stored_hist_windows // 2) // 2  # every second window of the older half
        self.thinned_stored += gone
        self._stored_hist_windows -= gone
