//! Parquet copies of the CSV results, through polars (the `parquet` feature).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::frame::{ColumnData, Frame};

fn pe(e: PolarsError) -> io::Error {
    io::Error::other(e.to_string())
}

/// Writes a typed table as Parquet, with the same column names and types as its CSV twin.
pub fn write_frame(frame: &Frame, path: &Path) -> io::Result<PathBuf> {
    let columns: Vec<Column> = frame
        .columns
        .iter()
        .map(|c| {
            let name = c.name.as_str().into();
            match &c.data {
                ColumnData::U32(v) => Column::new(name, v.clone()),
                ColumnData::U64(v) => Column::new(name, v.clone()),
                ColumnData::F64(v) => Column::new(name, v.clone()),
                ColumnData::Text(v) => Column::new(name, v.clone()),
            }
        })
        .collect();
    let mut df = DataFrame::new(frame.height(), columns).map_err(pe)?;
    ParquetWriter::new(File::create(path)?).finish(&mut df).map_err(pe)?;
    Ok(path.to_path_buf())
}

/// The column types polars infers for a CSV file with its default inference (the first 100
/// rows), as `(name, dtype)`: what a user reading our files with `pl.read_csv` gets.
pub fn csv_schema(csv: &Path) -> io::Result<Vec<(String, String)>> {
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(csv.to_path_buf()))
        .map_err(pe)?
        .finish()
        .map_err(pe)?;
    Ok(df.columns().iter().map(|c| (c.name().to_string(), c.dtype().to_string())).collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flatten::Cell;
    use crate::sweep::{Axis, Manifest, SweepResults};

    #[test]
    fn sweep_results_and_csv_copies_read_back_from_parquet() {
        let dir = std::env::temp_dir().join(format!("simctl-parquet-{}", std::process::id()));
        let header: Vec<String> = ["point", "replicate", "seed", "router.policy", "scenario", "ttft_ms.p95"].map(String::from).to_vec();
        let row = |p: f64, r: f64, pol: &str, v: f64| {
            vec![Cell::Num(p), Cell::Num(r), Cell::Text("42".into()), Cell::Text(pol.into()), Cell::Text("s".into()), Cell::Num(v)]
        };
        let r = SweepResults {
            manifest: Manifest {
                simctl_version: "0".into(),
                scenario: "s".into(),
                scenario_source: "s.scn".into(),
                scenario_fnv1a64: "00".into(),
                grid: vec![Axis { name: "router.policy".into(), values: vec!["a".into(), "b".into()] }],
                set: vec![],
                seeds: 2,
                base_seed: 42,
                seeding: "common".into(),
                points: 2,
                runs: 4,
                shard: None,
                incomplete_reason: None,
            },
            header,
            rows: vec![row(0.0, 0.0, "a", 1.0), row(0.0, 1.0, "a", 3.0), row(1.0, 0.0, "b", 5.0), row(1.0, 1.0, "b", 7.0)],
        };
        let files = r.write(&dir).unwrap();
        assert!(files.iter().any(|f| f.ends_with("results.parquet")) && files.iter().any(|f| f.ends_with("points.parquet")));
        let read = |name: &str| ParquetReader::new(File::open(dir.join(name)).unwrap()).finish().unwrap();
        let df = read("results.parquet");
        assert_eq!(df.shape(), (4, 6));
        assert_eq!(df.column("seed").unwrap().u64().unwrap().get(0), Some(42));
        assert_eq!(df.column("ttft_ms.p95").unwrap().f64().unwrap().get(3), Some(7.0));
        assert_eq!(df.column("router.policy").unwrap().str().unwrap().get(2), Some("b"));
        let pts = read("points.parquet");
        assert_eq!(pts.shape(), (2, 5));
        assert_eq!(pts.column("ttft_ms.p95").unwrap().f64().unwrap().get(1), Some(6.0));

        std::fs::write(dir.join("x.csv"), "a,b,c\n1,x,0.5\n2,y,\n").unwrap();
        csv_to_parquet(&dir.join("x.csv"), &dir.join("x.parquet")).unwrap();
        let x = read("x.parquet");
        assert_eq!(x.shape(), (2, 3));
        assert_eq!(x.column("a").unwrap().i64().unwrap().get(1), Some(2));
        assert_eq!(x.column("c").unwrap().f64().unwrap().get(1), None, "empty cells are nulls");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
