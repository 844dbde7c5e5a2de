//! Server-rendered SVG: p50 and p99 delivery latency per hour bucket, and deliveries per hour
//! or day as stacked bars (succeeded / failed / retrying).
//!
//! No script and no library: the chart is a few `<polyline>`s in a fixed `viewBox` that scales
//! to the container. Colours come from CSS classes, so light and dark schemes both read well.

use std::fmt::Write as _;

use blockhook_core::Timestamp;

use crate::manage::activity::quantile;

const HOUR_MS: i64 = 3_600_000;
const W: f64 = 720.0;
const H: f64 = 200.0;
const PAD_L: f64 = 48.0;
const PAD_B: f64 = 24.0;
const PAD_T: f64 = 10.0;

/// p50 and p99 of each of the `hours` hour buckets ending at `now` (oldest first).
pub fn hourly_percentiles(
    now: Timestamp,
    hours: usize,
    samples: &[(Timestamp, u32)],
) -> Vec<Option<(u32, u32)>> {
    let hours_i = i64::try_from(hours).unwrap_or(24);
    let start = now.ms() - hours_i * HOUR_MS;
    let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); hours];
    for (t, ms) in samples {
        let offset = t.ms() - start;
        if offset < 0 {
            continue;
        }
        let idx = usize::try_from(offset / HOUR_MS).unwrap_or(usize::MAX);
        if let Some(b) = buckets.get_mut(idx.min(hours.saturating_sub(1))) {
            b.push(*ms);
        }
    }
    buckets
        .into_iter()
        .map(|mut b| {
            b.sort_unstable();
            Some((quantile(&b, 0.5)?, quantile(&b, 0.99)?))
        })
        .collect()
}

/// The chart of `buckets` (from [`hourly_percentiles`]), labelled for screen readers.
pub fn latency_chart(buckets: &[Option<(u32, u32)>], label: &str) -> String {
    let max = buckets
        .iter()
        .flatten()
        .map(|(_, p99)| *p99)
        .max()
        .unwrap_or(0)
        .max(10);
    let n = buckets.len().max(2);
    #[allow(clippy::cast_precision_loss)]
    let x = |i: usize| PAD_L + (W - PAD_L - 8.0) * i as f64 / (n - 1) as f64;
    let y = |v: u32| PAD_T + (H - PAD_T - PAD_B) * (1.0 - f64::from(v) / f64::from(max));
    let line = |pick: fn(&(u32, u32)) -> u32| {
        let mut pts = String::new();
        for (i, b) in buckets.iter().enumerate() {
            if let Some(v) = b {
                let _ = write!(pts, "{:.1},{:.1} ", x(i), y(pick(v)));
            }
        }
        pts
    };
    let mut dots = String::new();
    for (i, b) in buckets.iter().enumerate() {
        if let Some((p50, p99)) = b {
            let _ = write!(
                dots,
                r#"<circle class="p50" cx="{:.1}" cy="{:.1}" r="2.5"><title>p50 {p50} ms</title></circle><circle class="p99" cx="{:.1}" cy="{:.1}" r="2.5"><title>p99 {p99} ms</title></circle>"#,
                x(i),
                y(*p50),
                x(i),
                y(*p99)
            );
        }
    }
    let samples = buckets.iter().flatten().count();
    let summary = if samples == 0 {
        format!("{label}: no attempts in this window")
    } else {
        format!("{label}: p50 and p99 latency per hour, up to {max} ms")
    };
    let hours = buckets.len();
    format!(
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{summary}" preserveAspectRatio="xMidYMid meet">
<title>{summary}</title>
<line class="axis" x1="{PAD_L}" y1="{base:.1}" x2="{right:.1}" y2="{base:.1}"/><line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{base:.1}"/>
<text class="tick" x="{lx:.1}" y="{ty:.1}" text-anchor="end">{max} ms</text><text class="tick" x="{lx:.1}" y="{base:.1}" text-anchor="end">0</text>
<text class="tick" x="{PAD_L}" y="{H}" >-{hours} h</text><text class="tick" x="{right:.1}" y="{H}" text-anchor="end">now</text>
<polyline class="p99" points="{p99}"/><polyline class="p50" points="{p50}"/>{dots}</svg>"#,
        base = H - PAD_B,
        right = W - 8.0,
        lx = PAD_L - 4.0,
        ty = PAD_T + 8.0,
        p99 = line(|v| v.1),
        p50 = line(|v| v.0),
        summary = super::html::Esc(&summary),
    )
}

/// One bar of [`stacked_bars`]: its axis label, its tooltip title, and its three parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stack {
    /// Under the bar (empty: none).
    pub label: String,
    /// The bar's period, for its tooltip.
    pub title: String,
    /// Succeeded, failed, retrying.
    pub parts: [u64; 3],
}

const PARTS: [(&str, &str); 3] = [("ok", "succeeded"), ("bad", "failed"), ("wait", "retrying")];

/// Deliveries per period as stacked bars, labelled for screen readers (`what`: "per hour, last
/// 24 h"). Each segment has a `<title>` with its count, so hovering reads the figures.
pub fn stacked_bars(bars: &[Stack], what: &str) -> String {
    let max = bars
        .iter()
        .map(|b| b.parts.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    let total: u64 = bars.iter().flat_map(|b| b.parts).sum();
    let summary = if total == 0 {
        format!("Deliveries {what}: none")
    } else {
        let [ok, bad, wait] = bars.iter().fold([0u64; 3], |mut acc, b| {
            for (a, p) in acc.iter_mut().zip(b.parts) {
                *a += p;
            }
            acc
        });
        format!("Deliveries {what}: {ok} succeeded, {bad} failed, {wait} retrying")
    };
    let n = bars.len().max(1);
    #[allow(clippy::cast_precision_loss)]
    let slot = (W - PAD_L - 8.0) / n as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let plot_h = H - PAD_T - PAD_B;
    #[allow(clippy::cast_precision_loss)]
    let height = |v: u64| plot_h * v as f64 / max.max(1) as f64;
    let mut shapes = String::new();
    for (i, b) in bars.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let x = PAD_L + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut top = H - PAD_B;
        for (v, (class, name)) in b.parts.iter().zip(PARTS) {
            if *v == 0 {
                continue;
            }
            let h = height(*v);
            top -= h;
            let _ = write!(
                shapes,
                r#"<rect class="seg {class}" x="{x:.1}" y="{top:.1}" width="{bar_w:.1}" height="{h:.1}"><title>{}: {v} {name}</title></rect>"#,
                super::html::Esc(&b.title),
            );
        }
        if !b.label.is_empty() {
            let _ = write!(
                shapes,
                r#"<text class="tick" x="{:.1}" y="{H}" text-anchor="middle">{}</text>"#,
                x + bar_w / 2.0,
                super::html::Esc(&b.label),
            );
        }
    }
    format!(
        r#"<svg class="chart bars" viewBox="0 0 {W} {H}" role="img" aria-label="{summary}" preserveAspectRatio="xMidYMid meet">
<title>{summary}</title>
<line class="axis" x1="{PAD_L}" y1="{base:.1}" x2="{right:.1}" y2="{base:.1}"/>
<text class="tick" x="{lx:.1}" y="{ty:.1}" text-anchor="end">{max}</text><text class="tick" x="{lx:.1}" y="{base:.1}" text-anchor="end">0</text>
{shapes}</svg>"#,
        base = H - PAD_B,
        right = W - 8.0,
        lx = PAD_L - 4.0,
        ty = PAD_T + 8.0,
        summary = super::html::Esc(&summary),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_hour_with_nearest_rank_percentiles() {
        let now = Timestamp::from_ms(10 * HOUR_MS);
        let mut samples: Vec<(Timestamp, u32)> = (1..=100)
            .map(|v| (Timestamp::from_ms(9 * HOUR_MS + 1000), v))
            .collect();
        samples.push((Timestamp::from_ms(0), 5)); // older than the window: ignored
        let b = hourly_percentiles(now, 3, &samples);
        assert_eq!(b, vec![None, None, Some((50, 99))]);
        let svg = latency_chart(&b, "ep");
        assert!(svg.starts_with("<svg") && svg.contains("p99 99 ms"));
        assert!(latency_chart(&[None, None], "x").contains("no attempts"));
    }

    #[test]
    fn stacked_bars_draw_one_segment_per_non_zero_part_with_its_count() {
        let bars = [
            Stack {
                label: "Mon".into(),
                title: "Mon 1 Dec".into(),
                parts: [3, 1, 0],
            },
            Stack::default(),
        ];
        let svg = stacked_bars(&bars, "per day");
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert!(svg.contains("Mon 1 Dec: 3 succeeded"));
        assert!(svg.contains("Mon 1 Dec: 1 failed"));
        assert!(svg.contains("3 succeeded, 1 failed, 0 retrying"));
        assert!(stacked_bars(&[Stack::default()], "per hour").contains("per hour: none"));
    }
}
