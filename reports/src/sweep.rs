//! Sweep results: one row per point × seed, per-point aggregates, the manifest, and
//! reading them back (to merge shards, regenerate plots, compare).
//!
//! A results folder holds `results.csv` (the rows), `points.csv` (mean and 95% interval of
//! every numeric metric over seeds), `manifest.json`, Parquet copies when built with the
//! `parquet` feature, and `plots/`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use simctl_engine::units::{self, Dim};

use crate::flatten::{Cell, mean_ci95};
use crate::frame::{ColumnData, Frame, TypedColumn};

/// Columns before the axes in `results.csv`.
pub const LEAD_COLUMNS: [&str; 3] = ["point", "replicate", "seed"];

/// The headline metrics shown in tables and plotted against axes: (column, label with unit).
pub const HEADLINE: [(&str, &str); 5] = [
    ("ttft_ms.p95", "TTFT p95 (ms)"),
    ("tpot_ms.p95", "TPOT p95 (ms)"),
    ("goodput_rps", "goodput (req/s)"),
    ("slo_attainment", "SLO attainment (share of requests)"),
    ("goodput_tok_per_usd", "goodput per dollar (good output tokens/$)"),
];

/// One swept axis: what it overrides and its values as scenario text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Axis {
    /// A `param` or a dotted setting path.
    pub name: String,
    /// The values, as scenario-language text (`24/s`, `telemetry`).
    pub values: Vec<String>,
}

impl Axis {
    /// When every value is a quantity of one dimension (`10/s`, `600/min`): the column name
    /// with its unit (`arrival_rate_per_s`) and each value in that unit, so tables sort
    /// numerically and equal quantities are equal numbers. `None` for names (policies,
    /// fleets) and mixed units.
    pub fn numeric(&self) -> Option<(String, Vec<f64>)> {
        let qs: Vec<(f64, Dim)> = self.values.iter().map(|v| units::quantity(v)).collect::<Option<_>>()?;
        let dim = qs.first()?.1;
        if qs.iter().any(|q| q.1 != dim) {
            return None;
        }
        let suffix = match dim {
            Dim::NONE => "",
            Dim::TIME => "_s",
            Dim::PER_TIME => "_per_s",
            Dim::TOKENS => "_tok",
            Dim::TOKEN_RATE => "_tok_per_s",
            Dim::BYTES => "_bytes",
            Dim::BANDWIDTH => "_bytes_per_s",
            Dim::MONEY_RATE => "_usd_per_h",
            _ => return None,
        };
        Some((format!("{}{suffix}", self.name), qs.into_iter().map(|q| q.0).collect()))
    }

    /// The value text whose quantity is `x` (a numeric column read back), if any.
    fn value_for(&self, x: f64) -> Option<&String> {
        let (_, nums) = self.numeric()?;
        let k = nums.iter().position(|&n| (n - x).abs() <= 1e-9 * n.abs().max(1e-300))?;
        self.values.get(k)
    }
}

/// A slice of a sweep: runs whose index `k` (point-major, then replicate) has
/// `k % count == index - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// 1-based shard number.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl Shard {
    /// Whether run `k` belongs to this shard.
    pub fn owns(&self, k: usize) -> bool {
        k % self.count as usize == (self.index - 1) as usize
    }
}

/// What a sweep ran: enough to check that shards belong together and to rerun it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// simctl version that wrote it.
    pub simctl_version: String,
    /// Scenario name.
    pub scenario: String,
    /// File the scenario came from (`<embedded default>` for the built-in one).
    pub scenario_source: String,
    /// FNV-1a 64 of the scenario text.
    pub scenario_fnv1a64: String,
    /// The axes, first slowest.
    pub grid: Vec<Axis>,
    /// Fixed `--set` overrides.
    pub set: Vec<String>,
    /// Replicates per point.
    pub seeds: u32,
    /// The base seed (every run's seed derives from it).
    pub base_seed: u64,
    /// `common` (replicate k has one seed at every point) or `independent` (a seed per point).
    #[serde(default = "common")]
    pub seeding: String,
    /// Points in the whole grid.
    pub points: usize,
    /// Runs in the whole sweep (points × seeds).
    pub runs: usize,
    /// The slice this folder holds, if sharded (absent after a merge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Why the sweep stopped before every run finished (Ctrl-C, SIGTERM); absent when it
    /// ran to its end. The folder holds the runs that finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_reason: Option<String>,
}

impl Manifest {
    fn same_sweep(&self, o: &Manifest) -> Result<(), String> {
        let mut diffs = Vec::new();
        if self.scenario_fnv1a64 != o.scenario_fnv1a64 {
            diffs.push(format!("scenario text differs ({} vs {})", self.scenario_fnv1a64, o.scenario_fnv1a64));
        }
        if self.grid != o.grid {
            diffs.push("grids differ".to_string());
        }
        if self.set != o.set {
            diffs.push(format!("--set differs ({:?} vs {:?})", self.set, o.set));
        }
        if self.seeds != o.seeds || self.base_seed != o.base_seed || self.seeding != o.seeding {
            diffs.push(format!(
                "seeds differ ({} {} from {} vs {} {} from {})",
                self.seeds, self.seeding, self.base_seed, o.seeds, o.seeding, o.base_seed
            ));
        }
        if diffs.is_empty() { Ok(()) } else { Err(diffs.join("; ")) }
    }
}

fn common() -> String {
    "common".into()
}

/// Mean and 95% interval of each numeric metric at one point.
#[derive(Clone, Debug, PartialEq)]
pub struct PointStats {
    /// Point index in the grid.
    pub point: usize,
    /// Replicates found.
    pub seeds: usize,
    /// The point's axis values, in axis order.
    pub values: Vec<String>,
    /// `(mean, ci95 half-width)` per numeric metric column (see [`SweepResults::numeric_columns`]).
    pub metrics: Vec<(f64, f64)>,
}

/// A sweep's rows and manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepResults {
    /// What ran.
    pub manifest: Manifest,
    /// Column names: [`LEAD_COLUMNS`], the axes, then the flattened summary.
    pub header: Vec<String>,
    /// One row per run, sorted by point then replicate.
    pub rows: Vec<Vec<Cell>>,
}

fn num(c: &Cell) -> Option<f64> {
    if let Cell::Num(v) = c { Some(*v) } else { None }
}

/// The columns of a sweep's `results.csv`: [`LEAD_COLUMNS`], the axes, then the union of
/// the summary's columns over the grid's points (a point may change the pools, instances or
/// classes, hence the columns), each once; the summary's own `seed` duplicates a lead column
/// and is left out. A summary's columns follow from its scenario alone (every pool, instance
/// and class has its columns whether it served a request or not), so they are read off the
/// summary of a run stopped before its first event — nothing is simulated. The breakdowns of
/// rejections and failures by reason (`rejected_reasons.*`, `failed_reasons.*`) depend on
/// what happened and are not columns: `rejected` and `failed` count them.
pub fn result_columns(axes: &[String], specs: &[simctl_engine::spec::ValidSpec]) -> Vec<String> {
    let mut h: Vec<String> = LEAD_COLUMNS.iter().map(|s| s.to_string()).collect();
    h.extend(axes.iter().cloned());
    let mut seen: std::collections::HashSet<String> = h.iter().cloned().collect();
    for spec in specs {
        for k in summary_columns(spec) {
            if seen.insert(k.clone()) {
                h.push(k);
            }
        }
    }
    h
}

/// The columns of the summary of `spec`'s runs, in the summary's order (see
/// [`result_columns`]).
pub fn summary_columns(spec: &simctl_engine::spec::ValidSpec) -> Vec<String> {
    let mut rec = crate::RunRecorder::for_spec(spec);
    let sim = simctl_engine::Simulation::new(spec).expect("a validated scenario builds");
    let totals = sim.finish(&mut rec);
    let summary = crate::Summary::build(spec, spec.seed, &mut rec, &totals);
    crate::flatten_summary(&summary).into_iter().map(|(k, _)| k).filter(|k| !is_reason_count(k)).collect()
}

/// Whether a summary column counts requests by their rejection or failure reason.
fn is_reason_count(column: &str) -> bool {
    column.starts_with("rejected_reasons.") || column.starts_with("failed_reasons.")
}

/// Whether a metric is a share in [0, 1] (its confidence interval is clipped to that range).
pub fn is_share(metric: &str) -> bool {
    ["slo_attainment", "prefix_hit_rate", "utilization", "kv_peak_usage"].iter().any(|s| metric.ends_with(s))
}

/// A numeric axis as a float column named with its unit; `None` for text axes.
fn axis_column(axis: &Axis, texts: &[String]) -> Option<(String, ColumnData)> {
    let (name, nums) = axis.numeric()?;
    let data = texts.iter().map(|t| axis.values.iter().position(|v| v == t).map(|k| nums[k])).collect();
    Some((name, ColumnData::F64(data)))
}

fn cell_text(c: &Cell) -> String {
    match c {
        Cell::Text(s) => s.clone(),
        Cell::Num(v) => format!("{v}"),
    }
}

/// A metric column: floats when every cell is a number (a missing one, NaN, is null),
/// text otherwise.
fn cells(cs: &[&Cell]) -> ColumnData {
    if cs.iter().all(|c| matches!(c, Cell::Num(_))) {
        ColumnData::F64(cs.iter().map(|c| num(c).filter(|x| x.is_finite())).collect())
    } else {
        ColumnData::Text(cs.iter().map(|c| cell_text(c)).collect())
    }
}

impl SweepResults {
    /// Index of the first metric column.
    pub fn first_metric(&self) -> usize {
        LEAD_COLUMNS.len() + self.manifest.grid.len()
    }

    /// Position of a column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// Metric columns that are numbers in every row.
    pub fn numeric_columns(&self) -> Vec<usize> {
        (self.first_metric()..self.header.len()).filter(|&c| self.rows.iter().all(|r| matches!(r.get(c), Some(Cell::Num(_))))).collect()
    }

    fn point_of(r: &[Cell]) -> usize {
        num(&r[0]).unwrap_or(f64::NAN) as usize
    }

    fn key(r: &[Cell]) -> (usize, u64) {
        (Self::point_of(r), num(&r[1]).unwrap_or(0.0) as u64)
    }

    /// Sorts rows by point, then replicate.
    pub fn sort(&mut self) {
        self.rows.sort_by_key(|r| Self::key(r));
    }

    /// Runs of the grid that no row holds, as `(point, replicate)`.
    pub fn missing(&self) -> Vec<(usize, u32)> {
        let have: std::collections::HashSet<(usize, u64)> = self.rows.iter().map(|r| Self::key(r)).collect();
        (0..self.manifest.points)
            .flat_map(|p| (0..self.manifest.seeds).map(move |r| (p, r)))
            .filter(|&(p, r)| !have.contains(&(p, u64::from(r))))
            .collect()
    }

    /// Per-point means and 95% intervals over seeds, in point order.
    pub fn point_stats(&self) -> Vec<PointStats> {
        let numeric = self.numeric_columns();
        let mut by_point: BTreeMap<usize, Vec<&Vec<Cell>>> = BTreeMap::new();
        for r in &self.rows {
            by_point.entry(Self::point_of(r)).or_default().push(r);
        }
        let first = self.first_metric();
        by_point
            .into_iter()
            .map(|(p, rs)| PointStats {
                point: p,
                seeds: rs.len(),
                values: rs[0][LEAD_COLUMNS.len()..first]
                    .iter()
                    .map(|c| match c {
                        Cell::Text(s) => s.clone(),
                        Cell::Num(v) => format!("{v}"),
                    })
                    .collect(),
                metrics: numeric
                    .iter()
                    .map(|&c| {
                        let xs: Vec<f64> = rs.iter().filter_map(|r| num(&r[c])).collect();
                        let (m, h) = mean_ci95(&xs);
                        // A share's interval stays within [0, 1]: mean ± h, clipped symmetrically.
                        if is_share(&self.header[c]) { (m, h.min(m).min(1.0 - m).max(0.0)) } else { (m, h) }
                    })
                    .collect(),
            })
            .collect()
    }

    /// The rows as a typed table: point and replicate as integers, the seed as a 64-bit
    /// integer, axes as text, each metric a float column when every row holds a number
    /// there, text otherwise.
    pub fn results_frame(&self) -> Frame {
        let mut f = Frame::default();
        let first = self.first_metric();
        for (i, h) in self.header.iter().enumerate() {
            let col: Vec<&Cell> = self.rows.iter().map(|r| &r[i]).collect();
            let data = match i {
                0 | 1 => ColumnData::U32(col.iter().map(|c| num(c).unwrap_or(0.0) as u32).collect()),
                2 => ColumnData::U64(
                    col.iter()
                        .map(|c| match c {
                            Cell::Text(t) => t.parse().unwrap_or(0),
                            Cell::Num(x) => *x as u64,
                        })
                        .collect(),
                ),
                i if i < first => {
                    let axis = &self.manifest.grid[i - LEAD_COLUMNS.len()];
                    let texts: Vec<String> = col.iter().map(|c| cell_text(c)).collect();
                    match axis_column(axis, &texts) {
                        Some((name, data)) => {
                            f.push(TypedColumn::new(name, data));
                            continue;
                        }
                        None => ColumnData::Text(texts),
                    }
                }
                _ => cells(&col),
            };
            f.push(TypedColumn::new(h.clone(), data));
        }
        f
    }

    /// Per-point means and 95% intervals as a typed table.
    pub fn points_frame(&self) -> Frame {
        let numeric = self.numeric_columns();
        let stats = self.point_stats();
        let mut f = Frame::default();
        f.push(TypedColumn::new("point", ColumnData::U32(stats.iter().map(|s| s.point as u32).collect())));
        f.push(TypedColumn::new("seeds", ColumnData::U32(stats.iter().map(|s| s.seeds as u32).collect())));
        for (a, axis) in self.manifest.grid.iter().enumerate() {
            let texts: Vec<String> = stats.iter().map(|s| s.values[a].clone()).collect();
            match axis_column(axis, &texts) {
                Some((name, data)) => f.push(TypedColumn::new(name, data)),
                None => f.push(TypedColumn::new(axis.name.clone(), ColumnData::Text(texts))),
            }
        }
        for (m, &c) in numeric.iter().enumerate() {
            f.push(TypedColumn::new(self.header[c].clone(), ColumnData::F64(stats.iter().map(|s| Some(s.metrics[m].0)).collect())));
            f.push(TypedColumn::new(
                format!("{}.ci95", self.header[c]),
                ColumnData::F64(stats.iter().map(|s| Some(s.metrics[m].1)).collect()),
            ));
        }
        f
    }

    /// Writes `results.csv`, `points.csv` and `manifest.json` (and Parquet copies when the
    /// `parquet` feature is on) into `dir`; returns the files written.
    pub fn write(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for (name, frame) in [("results", self.results_frame()), ("points", self.points_frame())] {
            let csv = dir.join(format!("{name}.csv"));
            frame.write_csv(&csv)?;
            files.push(csv);
            #[cfg(feature = "parquet")]
            files.push(crate::parquet::write_frame(&frame, &dir.join(format!("{name}.parquet")))?);
        }
        let manifest = dir.join("manifest.json");
        std::fs::write(&manifest, serde_json::to_string_pretty(&self.manifest).map_err(io::Error::other)? + "\n")?;
        files.push(manifest);
        Ok(files)
    }

    /// The per-point means and intervals as JSON: axis values and `{metric: {mean, ci95}}`.
    pub fn points_json(&self) -> serde_json::Value {
        let r = self;
        let numeric = r.numeric_columns();
        let finite = |x: f64| x.is_finite().then_some(x);
        r.point_stats()
            .iter()
            .map(|p| {
                let axes: serde_json::Map<String, serde_json::Value> =
                    r.manifest.grid.iter().zip(&p.values).map(|(a, v)| (a.name.clone(), serde_json::Value::from(v.clone()))).collect();
                let metrics: serde_json::Map<String, serde_json::Value> = numeric
                    .iter()
                    .zip(&p.metrics)
                    .map(|(&c, &(m, h))| (r.header[c].clone(), serde_json::json!({ "mean": finite(m), "ci95": finite(h) })))
                    .collect();
                serde_json::json!({ "point": p.point, "seeds": p.seeds, "axes": axes, "metrics": metrics })
            })
            .collect()
    }

    /// Reads a folder written by [`SweepResults::write`] (or by an interrupted sweep, whose
    /// `results.csv` may be unsorted).
    pub fn read(dir: &Path) -> Result<Self, String> {
        let mpath = dir.join("manifest.json");
        let text = std::fs::read_to_string(&mpath).map_err(|e| format!("cannot read `{}`: {e}", mpath.display()))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| format!("`{}` is not a sweep manifest: {e}", mpath.display()))?;
        let rpath = dir.join("results.csv");
        let text = std::fs::read_to_string(&rpath).map_err(|e| format!("cannot read `{}`: {e}", rpath.display()))?;
        let mut lines = text.lines();
        let header = crate::csv::split_csv(lines.next().ok_or_else(|| format!("`{}` is empty", rpath.display()))?);
        let first = LEAD_COLUMNS.len() + manifest.grid.len();
        if header.len() < first || header[..LEAD_COLUMNS.len()] != LEAD_COLUMNS {
            return Err(format!("`{}` does not start with point,replicate,seed and the axes", rpath.display()));
        }
        // Numeric axes are written with their unit in the name and in base units: back to
        // the axis name and the value as the grid wrote it.
        let mut header = header;
        for (a, axis) in manifest.grid.iter().enumerate() {
            let col = LEAD_COLUMNS.len() + a;
            if let Some((name, _)) = axis.numeric()
                && header[col] == name
            {
                header[col] = axis.name.clone();
            }
        }
        let mut rows = Vec::new();
        for (n, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            let fields = crate::csv::split_csv(line);
            if fields.len() != header.len() {
                // A line cut short by an interrupted sweep: keep the others.
                eprintln!("warning: {}:{}: {} fields, expected {}; line skipped", rpath.display(), n + 2, fields.len(), header.len());
                continue;
            }
            let row: Vec<Cell> = fields
                .into_iter()
                .enumerate()
                .map(|(i, f)| match i {
                    0 | 1 => f.parse().map(Cell::Num).unwrap_or(Cell::Text(f)),
                    2 => Cell::Text(f),
                    i if i < first => {
                        let axis = &manifest.grid[i - LEAD_COLUMNS.len()];
                        match f.parse::<f64>().ok().and_then(|x| axis.value_for(x)) {
                            Some(text) => Cell::Text(text.clone()),
                            None => Cell::Text(f),
                        }
                    }
                    // An empty metric is a missing number (a null), not text.
                    i if f.is_empty() && !crate::flatten::TEXT_FIELDS.contains(&header[i].as_str()) => Cell::Num(f64::NAN),
                    _ => f.parse().map(Cell::Num).unwrap_or(Cell::Text(f)),
                })
                .collect();
            rows.push(row);
        }
        let mut r = SweepResults { manifest, header, rows };
        r.sort();
        Ok(r)
    }

    /// Merges shards (or re-runs) of one sweep into one result, as an unsharded run would
    /// have written it. Duplicated runs must agree.
    pub fn merge(parts: Vec<SweepResults>) -> Result<Self, String> {
        let mut it = parts.into_iter();
        let mut acc = it.next().ok_or("nothing to merge")?;
        for p in it {
            acc.manifest.same_sweep(&p.manifest).map_err(|e| format!("these folders are not parts of one sweep: {e}"))?;
            if p.header != acc.header {
                return Err("these folders have different result columns (different simctl versions?)".into());
            }
            acc.rows.extend(p.rows);
        }
        acc.sort();
        acc.rows.dedup_by(|a, b| {
            if Self::key(a) == Self::key(b) {
                if a != b {
                    eprintln!("warning: run {:?} differs between folders; keeping the first", Self::key(a));
                }
                true
            } else {
                false
            }
        });
        acc.manifest.shard = None;
        if acc.missing().is_empty() {
            // Another folder ran what an interrupted one had left.
            acc.manifest.incomplete_reason = None;
        }
        Ok(acc)
    }
}

/// Reads numeric columns of a CSV file by name (empty or non-numeric cells become NaN).
pub fn read_csv_columns(path: &Path, names: &[&str]) -> Result<Vec<Vec<f64>>, String> {
    Ok(read_csv_text_columns(path, names)?.into_iter().map(|c| c.iter().map(|x| x.parse().unwrap_or(f64::NAN)).collect()).collect())
}

/// Reads text columns of a CSV file by name.
pub fn read_csv_text_columns(path: &Path, names: &[&str]) -> Result<Vec<Vec<String>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut lines = text.lines();
    let header = crate::csv::split_csv(lines.next().unwrap_or_default());
    let idx: Vec<usize> = names
        .iter()
        .map(|n| header.iter().position(|h| h == n).ok_or_else(|| format!("`{}` has no column `{n}`", path.display())))
        .collect::<Result<_, _>>()?;
    let mut out = vec![Vec::new(); names.len()];
    for line in lines.filter(|l| !l.is_empty()) {
        let f = crate::csv::split_csv(line);
        for (o, &i) in out.iter_mut().zip(&idx) {
            o.push(f.get(i).cloned().unwrap_or_default());
        }
    }
    Ok(out)
}

/// The per-point table for a terminal: axes, then the headline metrics (mean ± 95%
/// interval when there are several seeds).
pub fn render_points(r: &SweepResults) -> String {
    let stats = r.point_stats();
    let numeric = r.numeric_columns();
    let shown: Vec<(usize, &str)> =
        HEADLINE.iter().filter_map(|(c, _)| numeric.iter().position(|&n| r.header[n] == *c).map(|m| (m, *c))).collect();
    let several = r.manifest.seeds > 1;
    // Every cell as text first, then each column as wide as its widest cell.
    let mut head: Vec<String> = r.manifest.grid.iter().map(|a| a.name.clone()).collect();
    head.extend(shown.iter().map(|(_, c)| c.to_string()));
    let rows: Vec<Vec<String>> = stats
        .iter()
        .map(|s| {
            let mut row = s.values.clone();
            for (m, _) in &shown {
                let (mean, ci) = s.metrics[*m];
                row.push(if several { format!("{} ± {}", fmt_metric(mean), fmt_metric(ci)) } else { fmt_metric(mean) });
            }
            row
        })
        .collect();
    let widths: Vec<usize> =
        (0..head.len()).map(|c| rows.iter().map(|r| r[c].chars().count()).chain([head[c].len()]).max().unwrap_or(4)).collect();
    let axes = r.manifest.grid.len();
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (c, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - cell.chars().count();
            if c < axes {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            } else {
                out.push_str(&" ".repeat(pad + 2));
                out.push_str(cell);
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&head);
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

/// A metric for a table: 4 significant digits-ish, no exponent for usual magnitudes.
pub fn fmt_metric(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        format!("{v}")
    } else if a >= 1e7 {
        format!("{v:.3e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SweepResults {
        let manifest = Manifest {
            simctl_version: "0".into(),
            scenario: "s".into(),
            scenario_source: "s.scn".into(),
            scenario_fnv1a64: "00".into(),
            grid: vec![Axis { name: "router.policy".into(), values: vec!["a,b".into(), "c".into()] }],
            set: vec![],
            seeds: 2,
            base_seed: 1,
            seeding: "common".into(),
            points: 2,
            runs: 4,
            shard: None,
            incomplete_reason: None,
        };
        let header: Vec<String> =
            ["point", "replicate", "seed", "router.policy", "scenario", "ttft_ms.p95"].iter().map(|s| s.to_string()).collect();
        let row = |p: f64, r: f64, v: f64| {
            vec![
                Cell::Num(p),
                Cell::Num(r),
                Cell::Text("7".into()),
                Cell::Text(if p == 0.0 { "a,b" } else { "c" }.into()),
                Cell::Text("s".into()),
                Cell::Num(v),
            ]
        };
        SweepResults { manifest, header, rows: vec![row(0.0, 0.0, 1.5), row(0.0, 1.0, 2.5), row(1.0, 0.0, 0.1), row(1.0, 1.0, f64::NAN)] }
    }

    #[test]
    fn write_then_read_round_trips_and_shards_merge() {
        let dir = std::env::temp_dir().join(format!("simctl-sweep-{}", std::process::id()));
        let s = sample();
        s.write(&dir).unwrap();
        let back = SweepResults::read(&dir).unwrap();
        assert_eq!(back.header, s.header);
        assert_eq!(format!("{:?}", back.rows), format!("{:?}", s.rows), "NaN compares by text");
        assert_eq!(crate::csv::split_csv("1,\"a,\"\"b\",,x"), ["1", "a,\"b", "", "x"]);

        let mut a = s.clone();
        let mut b = s.clone();
        a.rows.retain(|r| r[1] == Cell::Num(0.0));
        b.rows.retain(|r| r[1] == Cell::Num(1.0));
        assert_eq!(a.missing(), vec![(0, 1), (1, 1)]);
        let m = SweepResults::merge(vec![b, a]).unwrap();
        assert_eq!(format!("{:?}", m.rows), format!("{:?}", s.rows));
        assert!(m.missing().is_empty());
        let mut other = s.clone();
        other.manifest.seeds = 3;
        assert!(SweepResults::merge(vec![s, other]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shards_partition_the_runs() {
        let shards: Vec<Shard> = (1..=3).map(|i| Shard { index: i, count: 3 }).collect();
        for k in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.owns(k)).count(), 1);
        }
    }
}
