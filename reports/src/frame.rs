//! A neutral typed table: what the CSV and Parquet writers both consume, so that the two
//! copies of a table always agree on column names and types.
//!
//! Floats are written to CSV with a decimal point or an exponent (`0.0`, `2.5`, `1e-7`), so
//! pandas and polars infer a float for every float column whatever its first rows hold; a
//! missing value is an empty field (null), never `0`. A float column with no value at all is
//! written as `NaN` throughout: CSV readers cannot tell the type of an empty column (polars
//! makes it text), and the column must keep one type in every table.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

pub use crate::csv::float_text;
use crate::csv::{csv_text, split_csv};

/// The values of one column.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnData {
    /// Unsigned 32-bit integers (indices, counts).
    U32(Vec<u32>),
    /// Unsigned 64-bit integers (seeds: beyond what a float holds exactly).
    U64(Vec<u64>),
    /// Floats; `None` is a missing value.
    F64(Vec<Option<f64>>),
    /// Text.
    Text(Vec<String>),
}

impl ColumnData {
    /// Rows in the column.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::U32(v) => v.len(),
            ColumnData::U64(v) => v.len(),
            ColumnData::F64(v) => v.len(),
            ColumnData::Text(v) => v.len(),
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn csv(&self, row: usize, all_missing: bool) -> String {
        match self {
            ColumnData::U32(v) => v[row].to_string(),
            ColumnData::U64(v) => v[row].to_string(),
            ColumnData::F64(_) if all_missing => "NaN".into(),
            ColumnData::F64(v) => v[row].map(float_text).unwrap_or_default(),
            ColumnData::Text(v) => csv_text(&v[row]),
        }
    }

    /// A float column without a single value.
    fn all_missing(&self) -> bool {
        matches!(self, ColumnData::F64(v) if v.iter().all(|x| x.is_none_or(|x| !x.is_finite())))
    }
}

/// A named, typed column.
#[derive(Clone, Debug, PartialEq)]
pub struct TypedColumn {
    /// Column name.
    pub name: String,
    /// Its values.
    pub data: ColumnData,
}

impl TypedColumn {
    /// A column named `name` holding `data`.
    pub fn new(name: impl Into<String>, data: ColumnData) -> Self {
        TypedColumn { name: name.into(), data }
    }
}

/// Columns of equal length.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frame {
    /// The columns, in order.
    pub columns: Vec<TypedColumn>,
}

impl Frame {
    /// Rows in the table.
    pub fn height(&self) -> usize {
        self.columns.first().map_or(0, |c| c.data.len())
    }

    /// Appends a column; it must have as many rows as the others.
    pub fn push(&mut self, c: TypedColumn) {
        debug_assert!(self.columns.is_empty() || c.data.len() == self.height(), "column `{}` has another length", c.name);
        self.columns.push(c);
    }

    /// Writes the table as CSV with a header row.
    pub fn write_csv(&self, path: &Path) -> io::Result<()> {
        let mut w = BufWriter::new(File::create(path)?);
        let header: Vec<String> = self.columns.iter().map(|c| csv_text(&c.name)).collect();
        writeln!(w, "{}", header.join(","))?;
        let empty: Vec<bool> = self.columns.iter().map(|c| c.data.all_missing()).collect();
        for r in 0..self.height() {
            let row: Vec<String> = self.columns.iter().zip(&empty).map(|(c, &e)| c.data.csv(r, e)).collect();
            writeln!(w, "{}", row.join(","))?;
        }
        w.flush()
    }
}

/// Rewrites the CSV file `src` into `dst` with every field of `columns` (float columns that
/// hold no value at all) set to `NaN`, so readers infer a float as they do for the same
/// column of other runs.
pub fn fill_empty_columns(src: &Path, dst: &Path, columns: &[&str]) -> io::Result<()> {
    use std::io::BufRead;
    let r = io::BufReader::new(File::open(src)?);
    let mut w = BufWriter::new(File::create(dst)?);
    let mut lines = r.lines();
    let Some(header) = lines.next().transpose()? else { return Ok(()) };
    let fields = split_csv(&header);
    let targets: Vec<usize> = fields.iter().enumerate().filter(|(_, f)| columns.contains(&f.as_str())).map(|(k, _)| k).collect();
    writeln!(w, "{header}")?;
    for line in lines {
        let mut row: Vec<String> = split_csv(&line?).iter().map(|f| csv_text(f)).collect();
        for &k in &targets {
            if let Some(f) = row.get_mut(k) {
                *f = "NaN".into();
            }
        }
        writeln!(w, "{}", row.join(","))?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_always_read_back_as_floats_and_missing_is_empty() {
        assert_eq!(float_text(0.0), "0.0");
        assert_eq!(float_text(3.0), "3.0");
        assert_eq!(float_text(0.8641), "0.8641");
        assert_eq!(float_text(1e-7), "1e-7");
        assert_eq!(float_text(f64::NAN), "");
        let dir = std::env::temp_dir().join(format!("simctl-frame-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut f = Frame::default();
        f.push(TypedColumn::new("point", ColumnData::U32(vec![0, 1])));
        f.push(TypedColumn::new("x", ColumnData::F64(vec![Some(0.0), None])));
        f.push(TypedColumn::new("name,odd", ColumnData::Text(vec!["a".into(), "b,c".into()])));
        f.push(TypedColumn::new("none", ColumnData::F64(vec![None, None])));
        f.write_csv(&dir.join("t.csv")).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("t.csv")).unwrap(), "point,x,\"name,odd\",none\n0,0.0,a,NaN\n1,,\"b,c\",NaN\n");
    }
}
