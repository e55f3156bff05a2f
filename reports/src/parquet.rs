//! Parquet copies of the CSV results, through polars (the `parquet` feature).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::flatten::Cell;
use crate::sweep::{LEAD_COLUMNS, PointStats, SweepResults};

fn pe(e: PolarsError) -> io::Error {
    io::Error::other(e.to_string())
}

fn write(path: &Path, height: usize, columns: Vec<Column>) -> io::Result<PathBuf> {
    let mut df = DataFrame::new(height, columns).map_err(pe)?;
    ParquetWriter::new(File::create(path)?).finish(&mut df).map_err(pe)?;
    Ok(path.to_path_buf())
}

/// A column of cells: numbers when every cell is one, text otherwise.
fn cells(name: &str, cs: &[&Cell]) -> Column {
    if cs.iter().all(|c| matches!(c, Cell::Num(_))) {
        let v: Vec<f64> = cs.iter().map(|c| if let Cell::Num(x) = c { *x } else { f64::NAN }).collect();
        Column::new(name.into(), v)
    } else {
        let v: Vec<String> = cs
            .iter()
            .map(|c| match c {
                Cell::Num(x) => format!("{x}"),
                Cell::Text(t) => t.clone(),
            })
            .collect();
        Column::new(name.into(), v)
    }
}

/// Writes `results.parquet` and `points.parquet` next to their CSV twins.
pub(crate) fn write_sweep(dir: &Path, r: &SweepResults, point_cols: &[String], stats: &[PointStats]) -> io::Result<Vec<PathBuf>> {
    let n = r.rows.len();
    let mut cols = Vec::with_capacity(r.header.len());
    for (i, h) in r.header.iter().enumerate() {
        let col: Vec<&Cell> = r.rows.iter().map(|row| &row[i]).collect();
        let c = match i {
            0 | 1 => Column::new(h.into(), col.iter().map(|c| if let Cell::Num(x) = c { *x as u32 } else { 0 }).collect::<Vec<u32>>()),
            2 => Column::new(
                h.into(),
                col.iter().map(|c| if let Cell::Text(t) = c { t.parse::<u64>().unwrap_or(0) } else { 0 }).collect::<Vec<u64>>(),
            ),
            i if i < LEAD_COLUMNS.len() + r.manifest.grid.len() => Column::new(
                h.into(),
                col.iter().map(|c| if let Cell::Text(t) = c { t.clone() } else { String::new() }).collect::<Vec<String>>(),
            ),
            _ => cells(h, &col),
        };
        cols.push(c);
    }
    let results = write(&dir.join("results.parquet"), n, cols)?;

    let axes = r.manifest.grid.len();
    let mut cols = vec![
        Column::new(point_cols[0].as_str().into(), stats.iter().map(|s| s.point as u32).collect::<Vec<u32>>()),
        Column::new(point_cols[1].as_str().into(), stats.iter().map(|s| s.seeds as u32).collect::<Vec<u32>>()),
    ];
    for a in 0..axes {
        cols.push(Column::new(point_cols[2 + a].as_str().into(), stats.iter().map(|s| s.values[a].clone()).collect::<Vec<String>>()));
    }
    for (m, pair) in point_cols[2 + axes..].chunks(2).enumerate() {
        cols.push(Column::new(pair[0].as_str().into(), stats.iter().map(|s| s.metrics[m].0).collect::<Vec<f64>>()));
        cols.push(Column::new(pair[1].as_str().into(), stats.iter().map(|s| s.metrics[m].1).collect::<Vec<f64>>()));
    }
    let points = write(&dir.join("points.parquet"), stats.len(), cols)?;
    Ok(vec![results, points])
}

/// Converts a CSV file (with a header) to Parquet, inferring column types from every row.
pub fn csv_to_parquet(csv: &Path, parquet: &Path) -> io::Result<()> {
    let mut df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(None)
        .try_into_reader_with_file_path(Some(csv.to_path_buf()))
        .map_err(pe)?
        .finish()
        .map_err(pe)?;
    ParquetWriter::new(File::create(parquet)?).finish(&mut df).map_err(pe)?;
    Ok(())
}
