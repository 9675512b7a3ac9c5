//! The run as a picture: one panel per limit, measured use against the
//! limit over time, with each load's window shaded. Plain SVG written by
//! hand (polylines, lines, text), so any browser shows it and no plotting
//! crate is needed.

use std::fmt::Write as _;

use serde::Serialize;

use super::{drive, Report, Sample};

/// The limits drawn as the panels' dashed lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Lines {
    pub cpu: Option<f64>,
    pub memory: Option<u64>,
    pub write_bps: Option<u64>,
    pub read_bps: Option<u64>,
}

const WIDTH: f64 = 960.0;
const PANEL: f64 = 170.0;
const GAP: f64 = 56.0;
const TOP: f64 = 56.0;
const LEFT: f64 = 96.0;
const RIGHT: f64 = 24.0;
const BOTTOM: f64 = 40.0;
/// Rates are averaged over this much time, so that one sample period's
/// worth of bios does not make the line jump.
const RATE_WINDOW: f64 = 0.5;

const LIMIT_COLOR: &str = "#d62728";
const COLORS: [&str; 2] = ["#1f77b4", "#2ca02c"];

#[derive(Clone, Copy)]
enum Unit {
    Cpus,
    Bytes,
    Rate,
}

impl Unit {
    fn format(self, v: f64) -> String {
        match self {
            Unit::Cpus => format!("{v:.2}"),
            Unit::Bytes => drive::bytes(v),
            Unit::Rate => drive::byte_rate(v),
        }
    }
}

struct Series {
    name: &'static str,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

struct Panel {
    title: String,
    unit: Unit,
    limit: f64,
    series: Vec<Series>,
}

/// The SVG document for `report`.
pub fn svg(report: &Report) -> String {
    let panels = panels(report);
    let end = report.samples.last().map_or(1.0, |s| s.t).max(1.0);
    let height = TOP + panels.len() as f64 * (PANEL + GAP) + BOTTOM - GAP + 20.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="28" font-size="16" font-weight="bold">islander verify: measured use against each limit</text>"#
    );
    if panels.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{}">no limit was measured</text>"#,
            TOP + 20.0
        );
    }
    for (i, panel) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP);
        draw_panel(&mut out, panel, report, top, end);
    }
    out.push_str("</svg>\n");
    out
}

fn panels(report: &Report) -> Vec<Panel> {
    let s = &report.samples;
    let mut panels = Vec::new();
    let ebpf = report.ebpf;
    if let Some(limit) = report.limits.cpu {
        panels.push(Panel {
            title: "CPU (cpuacct.usage)".into(),
            unit: Unit::Cpus,
            limit,
            series: vec![Series {
                name: "CPUs in use",
                points: rate(s, |x| x.cpu_ns as f64 / 1e9),
                dashed: false,
            }],
        });
    }
    if let Some(limit) = report.limits.memory {
        panels.push(Panel {
            title: "Memory (memory.usage_in_bytes)".into(),
            unit: Unit::Bytes,
            limit: limit as f64,
            series: vec![Series {
                name: "usage",
                points: s.iter().map(|x| (x.t, x.memory_bytes as f64)).collect(),
                dashed: false,
            }],
        });
    }
    let io = |title: &str, limit: u64, blkio: fn(&Sample) -> u64, ebpf_of: fn(&Sample) -> Option<u64>| {
        let mut series = vec![Series {
            name: "blkio cgroup",
            points: rate(s, |x| blkio(x) as f64),
            dashed: false,
        }];
        if ebpf {
            series.push(Series {
                name: "eBPF",
                points: rate(s, |x| ebpf_of(x).unwrap_or(0) as f64),
                dashed: true,
            });
        }
        Panel {
            title: title.to_string(),
            unit: Unit::Rate,
            limit: limit as f64,
            series,
        }
    };
    if let Some(limit) = report.limits.write_bps {
        panels.push(io("Disk writes", limit, |x| x.blkio_write, |x| x.ebpf_write));
    }
    if let Some(limit) = report.limits.read_bps {
        panels.push(io("Disk reads", limit, |x| x.blkio_read, |x| x.ebpf_read));
    }
    panels
}

/// A counter's rate of change at each sample, over the last RATE_WINDOW.
fn rate(samples: &[Sample], value: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    let mut j = 0;
    for (i, s) in samples.iter().enumerate() {
        while j + 1 < i && s.t - samples[j + 1].t >= RATE_WINDOW {
            j += 1;
        }
        let dt = s.t - samples[j].t;
        if i == 0 || dt < 0.05 {
            continue;
        }
        points.push((s.t, ((value(s) - value(&samples[j])) / dt).max(0.0)));
    }
    points
}

fn draw_panel(out: &mut String, panel: &Panel, report: &Report, top: f64, end: f64) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let peak = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(panel.limit, f64::max);
    let (step, y_max) = panel.unit.axis(peak * 1.15);
    let x = |t: f64| LEFT + t / end * plot_w;
    let y = |v: f64| top + PANEL - (v / y_max).min(1.05) * PANEL;

    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
        top - 10.0,
        escape(&panel.title)
    );
    // The loads' windows, shaded and named.
    for (i, span) in report.spans.iter().enumerate() {
        let (x0, x1) = (x(span.start), x(span.end));
        // Alternating shades keep back-to-back windows apart.
        let fill = if i % 2 == 0 { "#eef2f7" } else { "#f6f6f6" };
        let _ = writeln!(
            out,
            r#"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{PANEL}" fill="{fill}"/>"#,
            (x1 - x0).max(0.5)
        );
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" fill="#888" font-size="10">{}</text>"##,
            x0 + 3.0,
            top + 12.0,
            escape(span.load)
        );
    }
    // Axes, grid and tick labels.
    let mut v = 0.0;
    while v <= y_max * 1.0001 {
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            yy + 4.0,
            escape(&panel.unit.format(v))
        );
        v += step;
    }
    let t_step = nice_step(end / 10.0).max(1.0);
    let mut t = 0.0;
    while t <= end + 1e-9 {
        let xx = x(t);
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{}" x2="{xx:.1}" y2="{}" stroke="#999"/>"##,
            top + PANEL,
            top + PANEL + 4.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{xx:.1}" y="{}" text-anchor="middle">{t:.0} s</text>"#,
            top + PANEL + 16.0
        );
        t += t_step;
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#333"/>"##
    );
    // The limit, then the measured lines over it.
    let ly = y(panel.limit);
    let _ = writeln!(
        out,
        r#"<line x1="{LEFT}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{LIMIT_COLOR}" stroke-width="1.5" stroke-dasharray="6 4"/>"#,
        LEFT + plot_w
    );
    for (i, series) in panel.series.iter().enumerate() {
        let points: Vec<String> = series
            .points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let dash = if series.dashed {
            r#" stroke-dasharray="3 2""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5"{dash} points="{}"/>"#,
            COLORS[i % COLORS.len()],
            points.join(" ")
        );
    }
    // Legend, top right: the limit first.
    let mut entries = vec![(format!("limit {}", panel.unit.format(panel.limit)), LIMIT_COLOR, true)];
    for (i, s) in panel.series.iter().enumerate() {
        entries.push((s.name.to_string(), COLORS[i % COLORS.len()], s.dashed));
    }
    let mut lx = LEFT + plot_w - 10.0;
    for (name, color, dashed) in entries.iter().rev() {
        let width = 7.0 * name.chars().count() as f64 + 34.0;
        lx -= width;
        let dash = if *dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"{dash}/>"#,
            top - 14.0,
            lx + 22.0,
            top - 14.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 26.0,
            top - 10.0,
            escape(name)
        );
    }
}

impl Unit {
    /// A tick step giving about five ticks up to `max`, and the axis top (a
    /// whole number of steps). Byte axes step in whole KiB, MiB or GiB, so
    /// their labels come out round.
    fn axis(self, max: f64) -> (f64, f64) {
        let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
        let scale = match self {
            Unit::Cpus => 1.0,
            Unit::Bytes | Unit::Rate => {
                let mut scale = 1.0;
                while max / scale >= 1024.0 {
                    scale *= 1024.0;
                }
                scale
            }
        };
        let step = nice_step(max / scale / 5.0) * scale;
        (step, (max / step).ceil() * step)
    }
}

/// The smallest of 1, 2 or 5 times a power of ten that is at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 { raw } else { 1.0 };
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * 0.999_999)
        .unwrap_or(10.0 * magnitude)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
