//! The rate–distortion plot: one line per encoder and setting, written as SVG by plotters
//! (its SVG backend writes text as `<text>` elements, so no fonts are read or needed).

use std::path::Path;

use plotters::prelude::*;

use crate::util::Res;

pub struct Line {
    pub label: String,
    /// (x, y), in ascending x.
    pub points: Vec<(f64, f64)>,
    /// imgfs's lines are solid and thick; the references' are thin.
    pub imgfs: bool,
    /// A reference's default point, circled.
    pub default: Option<(f64, f64)>,
    /// Index into the palette: an imgfs line and its reference share a colour.
    pub colour: usize,
}

/// Colours that stay apart on white (Okabe–Ito): HEIC, WebP, AVIF, JPEG, then imgfs's variants.
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(0, 0, 0),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(150, 150, 30),
];

pub fn write_svg(path: &Path, title: &str, x_label: &str, y_label: &str, lines: &[Line]) -> Res<()> {
    let fail = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    // The x axis ends at 2.5× the largest reference point (the highest qualities' bytes would
    // squeeze the region that matters); lines are cut there.
    let all_x = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)).fold(0.0, f64::max);
    let ref_x = lines.iter().filter_map(|l| l.default.map(|d| d.0)).fold(0.0, f64::max);
    let x_max = if ref_x > 0.0 { all_x.min(2.5 * ref_x) } else { all_x } * 1.04;
    let lines: Vec<Line> = lines.iter().map(|l| clip(l, x_max)).collect();
    let pts = || lines.iter().flat_map(|l| l.points.iter());
    let (y_lo, y_hi) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, c), p| (a.min(p.1), c.max(p.1)));
    if !x_max.is_finite() || !y_lo.is_finite() || x_max <= 0.0 {
        return Err(fail(&"no points"));
    }
    let pad = ((y_hi - y_lo) * 0.05).max(1e-6);
    let root = SVGBackend::new(path, (1000, 680)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, (y_lo - pad)..(y_hi + pad))
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| fail(&e))?;
    for l in &lines {
        let colour = COLOURS[l.colour % COLOURS.len()];
        let (width, dot) = if l.imgfs { (3, 3) } else { (1, 2) };
        let style = colour.stroke_width(width);
        chart
            .draw_series(LineSeries::new(l.points.iter().copied(), style).point_size(dot))
            .map_err(|e| fail(&e))?
            .label(&l.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(width)));
        if let Some(d) = l.default {
            chart
                .draw_series(std::iter::once(Circle::new(d, 7, colour.stroke_width(2))))
                .map_err(|e| fail(&e))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// `line` up to `x_max`, the segment that crosses it cut there.
fn clip(line: &Line, x_max: f64) -> Line {
    let mut points = vec![];
    for (k, &(x, y)) in line.points.iter().enumerate() {
        if x <= x_max {
            points.push((x, y));
            continue;
        }
        if let Some(&(x0, y0)) = k.checked_sub(1).map(|j| &line.points[j]) {
            points.push((x_max, y0 + (y - y0) * (x_max - x0) / (x - x0)));
        }
        break;
    }
    let default = line.default.filter(|d| d.0 <= x_max);
    Line { label: line.label.clone(), points, imgfs: line.imgfs, default, colour: line.colour }
}
