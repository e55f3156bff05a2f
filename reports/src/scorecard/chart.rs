//! The scorecard figure: 2×2 panels (accuracy, TTFT p95, decode p95, MoE drops and
//! imbalance), one bar per run, each limit drawn as a dashed line, bars green when they pass
//! and red when they fail, and missing values written as "missing" instead of a bar.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::card::Scorecard;
use super::verdict::{Check, Status};
use crate::plot::{FONT, PlotError, err, fmt_tick, fonts};

const SIZE: (u32, u32) = (1280, 860);
const PASS: RGBColor = RGBColor(44, 160, 44);
const FAIL: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(110, 110, 110);

/// One bar of a panel.
struct Bar {
    label: String,
    /// Plotted height (`None`: missing).
    height: Option<f64>,
    /// Plotted limit.
    limit: f64,
    /// Text over the bar.
    text: String,
    status: Status,
}

struct Panel {
    title: String,
    y_label: String,
    bars: Vec<Bar>,
    /// Upper end of the y axis, if fixed.
    y_max: Option<f64>,
}

fn bar(label: String, c: &Check, scale: f64, text: impl Fn(f64) -> String) -> Bar {
    Bar {
        label,
        height: c.value.map(|v| v / scale),
        limit: c.limit / scale,
        text: c.value.map_or_else(|| "missing".to_string(), text),
        status: c.status,
    }
}

fn check<'a>(card: &'a Scorecard, name: &str) -> Option<&'a Check> {
    card.verdict.checks.iter().find(|c| c.name == name)
}

fn panels(cards: &[Scorecard]) -> Vec<Panel> {
    let mut p = vec![
        Panel { title: "Quality accuracy".into(), y_label: "accuracy".into(), bars: vec![], y_max: Some(1.0) },
        Panel { title: "TTFT p95".into(), y_label: "ms".into(), bars: vec![], y_max: None },
        Panel { title: "Decode p95".into(), y_label: "ms".into(), bars: vec![], y_max: None },
        Panel { title: "MoE drops and imbalance".into(), y_label: "share of the limit (1 = limit)".into(), bars: vec![], y_max: None },
    ];
    let one = cards.len() == 1;
    for c in cards {
        let run = |what: &str| if one { what.to_string() } else { format!("{} {what}", c.run) };
        let name = c.run.clone();
        if let Some(k) = check(c, "accuracy") {
            p[0].bars.push(bar(name.clone(), k, 1.0, |v| format!("{v:.3}")));
        }
        if let Some(k) = check(c, "ttft_p95_ms") {
            p[1].bars.push(bar(name.clone(), k, 1.0, |v| format!("{v:.0} ms")));
        }
        if let Some(k) = check(c, "decode_p95_ms") {
            p[2].bars.push(bar(name.clone(), k, 1.0, |v| format!("{v:.0} ms")));
        }
        if let Some(k) = check(c, "drop_rate") {
            p[3].bars.push(bar(run("drop rate"), k, k.limit, |v| format!("{:.2}%", v * 100.0)));
        }
        if let Some(k) = check(c, "imbalance_cv") {
            p[3].bars.push(bar(run("imbalance cv"), k, k.limit, |v| format!("cv {v:.3}")));
        }
    }
    p
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> Result<(), PlotError> {
    let n = p.bars.len().max(1) as i32;
    let top = p.bars.iter().flat_map(|b| [b.height.unwrap_or(0.0), b.limit]).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let y1 = p.y_max.unwrap_or(if top > 0.0 { top * 1.18 } else { 1.0 });
    let labels: Vec<String> = p.bars.iter().map(|b| b.label.clone()).collect();
    // Bar i is centred on x = i; the mesh's ticks fall on the integers, labelled with names.
    let (x0, x1) = (-0.5, f64::from(n) - 0.5);
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FONT, 22).into_font().style(FontStyle::Bold))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, 0.0..y1)
        .map_err(err)?;
    let fmt_x = |v: &f64| {
        let i = v.round();
        if (v - i).abs() < 1e-6 && i >= 0.0 { labels.get(i as usize).cloned().unwrap_or_default() } else { String::new() }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(&p.y_label)
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14))
        .x_labels(n as usize)
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&|v| fmt_tick(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    let over = |y: f64| (y + y1 * 0.015).min(y1 * 0.97);
    // Bars take 60% of their slot; limits span 80% of it.
    let (bar_half, limit_half) = (0.3, 0.4);
    for (i, b) in p.bars.iter().enumerate() {
        let x = i as f64;
        let col = if b.status == Status::Pass { PASS } else { FAIL };
        let text_at = match b.height {
            Some(h) => {
                let r = Rectangle::new([(x - bar_half, 0.0), (x + bar_half, h.min(y1))], col.filled());
                chart.draw_series(std::iter::once(r)).map_err(err)?;
                over(h.min(y1))
            }
            None => y1 * 0.04,
        };
        // The value's text carries the outcome too: a zero-height failing bar has no area.
        let colour = match (b.height, b.status) {
            (None, _) => GREY,
            (Some(_), Status::Pass) => BLACK,
            (Some(_), _) => FAIL,
        };
        let style = (FONT, 15).into_font().color(&colour).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(std::iter::once(Text::new(b.text.clone(), (x, text_at), style))).map_err(err)?;
        if b.limit.is_finite() && b.limit <= y1 {
            let line = DashedPathElement::new(vec![(x - limit_half, b.limit), (x + limit_half, b.limit)], 8, 5, BLACK.stroke_width(2));
            chart.draw_series(std::iter::once(line)).map_err(err)?;
        }
    }
    Ok(())
}

fn render<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, cards: &[Scorecard]) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(err)?;
    let verdicts: Vec<String> = cards.iter().map(|c| format!("{} {}", c.run, c.verdict.label)).collect();
    let title = format!("scorecard: {}   (dashed: limit; green: pass, red: fail)", verdicts.join(", "));
    let root = root.titled(&title, (FONT, 24).into_font().style(FontStyle::Bold)).map_err(err)?;
    for (area, p) in root.split_evenly((2, 2)).iter().zip(panels(cards).iter()) {
        draw_panel(area, p)?;
    }
    Ok(())
}

/// Draws the scorecards of `cards` into `path`: SVG when it ends in `.svg`, PNG otherwise.
pub fn scorecard_chart(path: &Path, cards: &[Scorecard]) -> Result<PathBuf, PlotError> {
    fonts();
    let svg = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if svg {
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        render(&root, cards)?;
        root.present().map_err(|e| PlotError(format!("cannot write `{}`: {e:?}", path.display())))?;
    } else {
        let root = BitMapBackend::new(path, SIZE).into_drawing_area();
        render(&root, cards)?;
        root.present().map_err(|e| PlotError(format!("cannot write `{}`: {e:?}", path.display())))?;
    }
    Ok(path.to_path_buf())
}
