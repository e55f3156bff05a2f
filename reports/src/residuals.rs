//! The residual plot of a calibration: each sample's relative error against its measured
//! value, one colour per probe class, held-out samples hollow.

use std::path::Path;

use plotters::prelude::*;

use crate::plot::{FONT, PlotError, colour, err, fmt_tick, fonts, span};

/// One sample of the plot.
#[derive(Clone, Debug, PartialEq)]
pub struct ResidualPoint {
    /// Probe class (one colour each).
    pub class: String,
    /// Measured, milliseconds.
    pub measured_ms: f64,
    /// Predicted by the fit, milliseconds.
    pub predicted_ms: f64,
    /// Held out of the fit (drawn hollow).
    pub held_out: bool,
}

/// Writes the residual plot as a PNG: x the measured time (log scale), y the error of the
/// prediction in percent.
pub fn residual_plot(path: &Path, title: &str, points: &[ResidualPoint]) -> Result<(), PlotError> {
    fonts();
    let mut classes: Vec<&str> = Vec::new();
    for p in points {
        if !classes.contains(&p.class.as_str()) {
            classes.push(&p.class);
        }
    }
    let usable: Vec<&ResidualPoint> =
        points.iter().filter(|p| p.measured_ms > 0.0 && p.measured_ms.is_finite() && p.predicted_ms.is_finite()).collect();
    let pct = |p: &ResidualPoint| 100.0 * (p.predicted_ms - p.measured_ms) / p.measured_ms;
    let (x0, x1) =
        usable.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.measured_ms.log10()), b.max(p.measured_ms.log10())));
    let lim = usable.iter().map(|p| pct(p).abs()).fold(1.0, f64::max);
    let (x0, x1) = span(x0, x1, false);
    let root = BitMapBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24).into_font().style(FontStyle::Bold))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(84)
        .build_cartesian_2d(x0..x1, -lim * 1.1..lim * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("measured (ms, log scale)")
        .y_desc("fit error (predicted - measured, %)")
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .x_label_formatter(&|v| fmt_tick(10f64.powf(*v)))
        .y_label_formatter(&|v| fmt_tick(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    chart.draw_series(std::iter::once(PathElement::new(vec![(x0, 0.0), (x1, 0.0)], BLACK.stroke_width(1)))).map_err(err)?;
    for (i, c) in classes.iter().enumerate() {
        let col = colour(i);
        let mine: Vec<&&ResidualPoint> = usable.iter().filter(|p| p.class == *c).collect();
        chart
            .draw_series(mine.iter().map(|p| {
                let style = if p.held_out { col.stroke_width(2) } else { col.filled() };
                Circle::new((p.measured_ms.log10(), pct(p)), 5, style)
            }))
            .map_err(err)?
            .label(c.to_string())
            .legend(move |(x, y)| Circle::new((x + 8, y), 5, col.filled()));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(|e| PlotError(format!("cannot write `{}`: {e:?}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png() {
        let path = std::env::temp_dir().join(format!("simctl-residuals-{}.png", std::process::id()));
        let pts = vec![
            ResidualPoint { class: "prefill".into(), measured_ms: 20.0, predicted_ms: 21.0, held_out: false },
            ResidualPoint { class: "decode".into(), measured_ms: 2.0, predicted_ms: 1.9, held_out: true },
        ];
        residual_plot(&path, "fit", &pts).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let _ = std::fs::remove_file(&path);
    }
}
