//! Charts with plotters, as PNG and SVG.
//!
//! Text is drawn with DejaVu Sans from the `dejavu` crate, registered with plotters'
//! `ab_glyph` backend, so no system fonts (fontconfig, freetype) are needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

pub(crate) const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (960, 600);

// Tableau 10: readable, distinguishable lines and bars.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub(crate) fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

pub(crate) fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The fonts are compiled in and known to parse; a failure would only lose text.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// A plotting failure (a file that cannot be written, a backend error).
#[derive(Debug)]
pub struct PlotError(pub String);

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for PlotError {}

type Res<T> = Result<T, PlotError>;

pub(crate) fn err<E: std::fmt::Debug>(e: E) -> PlotError {
    PlotError(format!("{e:?}"))
}

/// One line of a line chart: points `(x, y, half-width of the interval on y)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// `(x, y, ci)` with `ci` ≥ 0 (0: no interval drawn).
    pub points: Vec<(f64, f64, f64)>,
}

/// A line chart of a metric against a swept axis.
#[derive(Clone, Debug)]
pub struct LineChart {
    /// Title.
    pub title: String,
    /// X axis label, with units.
    pub x_label: String,
    /// Y axis label, with units.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Draw each point's interval as an error bar.
    pub intervals: bool,
    /// Start the y axis at zero.
    pub y_from_zero: bool,
    /// Logarithmic x axis (every x must be positive).
    pub x_log: bool,
}

/// Bars: one panel per metric, one bar per category.
#[derive(Clone, Debug)]
pub struct BarPanel {
    /// Panel title.
    pub title: String,
    /// Y axis label, with units.
    pub y_label: String,
    /// `(category, value, ci)`.
    pub bars: Vec<(String, f64, f64)>,
}

/// Where a chart was written: `stem.png` and `stem.svg`.
fn targets(stem: &Path) -> (PathBuf, PathBuf) {
    (stem.with_extension("png"), stem.with_extension("svg"))
}

enum Figure<'a> {
    Lines(&'a LineChart),
    Bars(&'a str, &'a [BarPanel]),
    Panels(&'a [LineChart]),
}

fn render<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure<'_>) -> Res<()> {
    root.fill(&WHITE).map_err(err)?;
    match fig {
        Figure::Lines(c) => draw_lines(root, c),
        Figure::Bars(title, panels) => {
            let root = root.titled(title, (FONT, 24).into_font().style(FontStyle::Bold)).map_err(err)?;
            for (area, p) in root.split_evenly((1, panels.len().max(1))).iter().zip(panels.iter()) {
                draw_bars(area, p)?;
            }
            Ok(())
        }
        Figure::Panels(charts) => {
            for (area, c) in root.split_evenly((1, charts.len().max(1))).iter().zip(charts.iter()) {
                draw_lines(area, c)?;
            }
            Ok(())
        }
    }
}

fn both(stem: &Path, size: (u32, u32), fig: Figure<'_>) -> Res<Vec<PathBuf>> {
    fonts();
    let (png, svg) = targets(stem);
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        render(&root, &fig)?;
        root.present().map_err(|e| PlotError(format!("cannot write `{}`: {e:?}", png.display())))?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        render(&root, &fig)?;
        root.present().map_err(|e| PlotError(format!("cannot write `{}`: {e:?}", svg.display())))?;
    }
    Ok(vec![png, svg])
}

pub(crate) fn span(lo: f64, hi: f64, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    if from_zero {
        lo = lo.min(0.0);
    }
    if hi - lo < 1e-12 {
        hi = lo + lo.abs().max(1.0) * 0.1;
    }
    let pad = (hi - lo) * 0.06;
    (if from_zero && lo >= 0.0 { 0.0 } else { lo - pad }, hi + pad)
}

pub(crate) fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn draw_lines<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &LineChart) -> Res<()> {
    if c.x_log {
        // Plot log10(x) on a linear axis and label the ticks with x itself.
        let mut lin = c.clone();
        lin.x_log = false;
        for s in &mut lin.series {
            for p in &mut s.points {
                p.0 = p.0.log10();
            }
        }
        return draw_lines_with(root, &lin, &|v| fmt_tick(10f64.powf(v)));
    }
    draw_lines_with(root, c, &fmt_tick)
}

fn draw_lines_with<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &LineChart, x_tick: &dyn Fn(f64) -> String) -> Res<()> {
    let pts = c.series.iter().flat_map(|s| s.points.iter()).filter(|p| p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y, h) in pts {
        let h = if c.intervals && h.is_finite() { h } else { 0.0 };
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y - h);
        y1 = y1.max(y + h);
    }
    let (x0, x1) = span(x0, x1, false);
    let (y0, y1) = span(y0, y1, c.y_from_zero);
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, (FONT, 24).into_font().style(FontStyle::Bold))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(84)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(&c.x_label)
        .y_desc(&c.y_label)
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .x_label_formatter(&|v| x_tick(*v))
        .y_label_formatter(&|v| fmt_tick(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    for (i, s) in c.series.iter().enumerate() {
        let col = colour(i);
        let line: Vec<(f64, f64)> = s.points.iter().filter(|p| p.1.is_finite()).map(|p| (p.0, p.1)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), col.stroke_width(2)))
            .map_err(err)?
            .label(&s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], col.stroke_width(3)));
        // Markers only where they help: sweeps have few points, time series and CDFs many.
        if line.len() <= 60 {
            chart.draw_series(line.iter().map(|&(x, y)| Circle::new((x, y), 4, col.filled()))).map_err(err)?;
        }
        if c.intervals {
            let w = (x1 - x0) * 0.006;
            for &(x, y, h) in s.points.iter().filter(|p| p.1.is_finite() && p.2.is_finite() && p.2 > 0.0) {
                let st = col.stroke_width(2);
                chart.draw_series(std::iter::once(PathElement::new(vec![(x, y - h), (x, y + h)], st))).map_err(err)?;
                for e in [y - h, y + h] {
                    chart.draw_series(std::iter::once(PathElement::new(vec![(x - w, e), (x + w, e)], st))).map_err(err)?;
                }
            }
        }
    }
    if c.series.len() > 1 || c.series.iter().any(|s| !s.name.is_empty()) {
        chart
            .configure_series_labels()
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// Writes a line chart as `stem.png` and `stem.svg`.
pub fn line_chart(stem: &Path, c: &LineChart) -> Res<Vec<PathBuf>> {
    both(stem, SIZE, Figure::Lines(c))
}

// Horizontal bars: category names sit on the y axis as plain horizontal text, readable
// at any length (plotters anchors rotated tick labels across the axis line).
fn draw_bars<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &BarPanel) -> Res<()> {
    let n = p.bars.len().max(1) as i32;
    let top = p.bars.iter().map(|b| b.1 + if b.2.is_finite() { b.2 } else { 0.0 }).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let (_, x1) = span(0.0, top, true);
    let names: Vec<String> = p.bars.iter().map(|b| b.0.clone()).collect();
    let label_area = 24 + 8 * names.iter().map(|s| s.chars().count()).max().unwrap_or(4).min(40) as u32;
    // First bar at the top.
    let row = |i: usize| n - 1 - i as i32;
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FONT, 20).into_font().style(FontStyle::Bold))
        .margin(14)
        .x_label_area_size(56)
        .y_label_area_size(label_area)
        .build_cartesian_2d(0.0..x1, (0..n - 1).into_segmented())
        .map_err(err)?;
    let fmt_y = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(r) => names.get((n - 1 - r) as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(&p.y_label)
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .y_labels(n as usize)
        .y_label_formatter(&fmt_y)
        .x_label_formatter(&|v| fmt_tick(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    for (i, (_, v, h)) in p.bars.iter().enumerate() {
        if !v.is_finite() {
            continue;
        }
        let col = colour(i);
        let r = row(i);
        let mut bar = Rectangle::new([(0.0, SegmentValue::Exact(r)), (*v, SegmentValue::Exact(r + 1))], col.filled());
        bar.set_margin(6, 6, 0, 0);
        chart.draw_series(std::iter::once(bar)).map_err(err)?;
        if h.is_finite() && *h > 0.0 {
            let mid = SegmentValue::CenterOf(r);
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(v - h, mid.clone()), (v + h, mid)], BLACK.stroke_width(2))))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Writes bar panels side by side as `stem.png` and `stem.svg`.
pub fn bar_chart(stem: &Path, title: &str, panels: &[BarPanel]) -> Res<Vec<PathBuf>> {
    let width = (520 * panels.len().max(1) as u32).max(SIZE.0);
    both(stem, (width, SIZE.1 + 60), Figure::Bars(title, panels))
}

/// Empirical CDF points of `samples` (sorted ascending), at most `max_points` of them.
pub fn cdf_points(sorted: &[f64], max_points: usize) -> Vec<(f64, f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(max_points.max(2)).max(1);
    let mut out: Vec<(f64, f64, f64)> = (0..n).step_by(step).map(|i| (sorted[i], (i + 1) as f64 / n as f64, 0.0)).collect();
    if out.last().map(|p| p.1) != Some(1.0) {
        out.push((sorted[n - 1], 1.0, 0.0));
    }
    out
}

/// Several line charts side by side (CDF panels) as `stem.png` and `stem.svg`.
pub fn panels(stem: &Path, charts: &[LineChart]) -> Res<Vec<PathBuf>> {
    let width = (620 * charts.len().max(1) as u32).max(SIZE.0);
    both(stem, (width, SIZE.1), Figure::Panels(charts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_ends_at_one_and_is_bounded() {
        let xs: Vec<f64> = (0..10_000).map(f64::from).collect();
        let c = cdf_points(&xs, 500);
        assert!(c.len() <= 502);
        assert_eq!(c.last().unwrap().1, 1.0);
        assert!(c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
    }

    #[test]
    fn charts_are_written_as_png_and_svg_with_text() {
        let dir = std::env::temp_dir().join(format!("simctl-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = LineChart {
            title: "TTFT p95 vs arrival rate".into(),
            x_label: "arrival_rate (req/s)".into(),
            y_label: "TTFT p95 (ms)".into(),
            series: vec![Series { name: "round_robin".into(), points: vec![(1.0, 10.0, 1.0), (2.0, 20.0, 2.0)] }],
            intervals: true,
            y_from_zero: true,
            x_log: false,
        };
        let files = line_chart(&dir.join("ttft"), &c).unwrap();
        assert_eq!(files.len(), 2);
        let png = std::fs::read(&files[0]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        assert!(svg.contains("TTFT p95 vs arrival rate") && svg.contains("round_robin"), "labels are in the SVG");
        let b = BarPanel {
            title: "goodput per dollar".into(),
            y_label: "tok/$".into(),
            bars: vec![("a".into(), 1.0, 0.1), ("b".into(), 2.0, 0.0)],
        };
        bar_chart(&dir.join("bars"), "fleets", &[b.clone(), b]).unwrap();
        let wide = LineChart {
            x_log: true,
            series: vec![Series { name: String::new(), points: vec![(1.0, 1.0, 0.0), (10.0, 2.0, 0.0), (1000.0, 3.0, 0.0)] }],
            ..c
        };
        let svg = std::fs::read_to_string(&line_chart(&dir.join("log"), &wide).unwrap()[1]).unwrap();
        assert!(svg.contains("\n100\n") && svg.contains("\n1000\n"), "ticks are labelled with x, not log10(x)");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
