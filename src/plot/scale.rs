//! Axis ranges (data bounds, padding, log decades) and the text of ticks, values and
//! labels shared by the plots.

use std::ops::Range;

/// Minimum and maximum of finite values, `None` when there are none.
pub(super) fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Half-width used to widen a degenerate (constant) range around `v`.
fn flat_pad(v: f64) -> f64 {
    if v == 0.0 {
        1.0
    } else {
        (v.abs() * 0.1).max(f64::MIN_POSITIVE)
    }
}

fn is_flat(lo: f64, hi: f64) -> bool {
    hi - lo <= 1e-12 * lo.abs().max(hi.abs())
}

/// x range: exact data extent, widened only when degenerate.
pub(super) fn pad_x(lo: f64, hi: f64) -> Range<f64> {
    if is_flat(lo, hi) {
        let d = flat_pad(lo);
        clamp_range(lo - d, hi + d)
    } else {
        clamp_range(lo, hi)
    }
}

/// Linear y range: 5% margins, widened when degenerate.
pub(super) fn pad_linear(lo: f64, hi: f64) -> Range<f64> {
    if is_flat(lo, hi) {
        let d = flat_pad(lo);
        clamp_range(lo - d, hi + d)
    } else {
        let m = (hi / 2.0 - lo / 2.0) * 0.1;
        clamp_range(lo - m, hi + m)
    }
}

/// Log y range (`0 < lo <= hi`): snapped outwards to powers of ten so that the
/// axis always has labelled decades.
pub(super) fn pad_log(lo: f64, hi: f64) -> Range<f64> {
    let mut a = 10f64.powf(lo.log10().floor());
    let mut b = 10f64.powf(hi.log10().ceil());
    if a.is_nan() || a <= 0.0 {
        a = lo;
    }
    if !b.is_finite() {
        b = hi;
    }
    if is_flat(a, b) {
        a /= 10.0;
        b *= 10.0;
    }
    // Nudge the ends outwards so that rounding in plotters' key-point search still
    // labels the end decades.
    (a * (1.0 - 1e-9)).max(f64::MIN_POSITIVE)..(b * (1.0 + 1e-9)).min(f64::MAX)
}

fn clamp_range(lo: f64, hi: f64) -> Range<f64> {
    lo.max(-f64::MAX)..hi.min(f64::MAX)
}

/// Tick formatter whose decimals follow the range's span, so that neighbouring
/// ticks stay distinct.
pub(super) fn linear_formatter(range: &Range<f64>) -> impl Fn(&f64) -> String {
    let span = (range.end - range.start).abs();
    let mag = range.start.abs().max(range.end.abs());
    let sci = mag >= 1e6 || (mag > 0.0 && mag < 1e-3);
    let decimals = if span > 0.0 && span.is_finite() {
        ((-(span / 10.0).log10()).ceil() + 1.0).clamp(0.0, 10.0) as usize
    } else {
        2
    };
    move |v: &f64| {
        if sci {
            fmt_sci(*v)
        } else {
            trim_zeros(format!("{v:.decimals$}"))
        }
    }
}

/// Log-axis ticks: powers of ten, plus 2x and 5x when the range spans at most two
/// decades; a few significant digits, scientific when very large or small.
pub(super) fn log_formatter(range: &Range<f64>) -> impl Fn(&f64) -> String {
    let show_125 = (range.end / range.start).log10() <= 2.0 + 1e-6;
    // plotters emits each decade twice (as 10 x the previous one and as the next
    // one), in ascending order; label it once.
    let last = std::cell::Cell::new(f64::NAN);
    move |v: &f64| {
        let a = v.abs();
        if a == 0.0 || !a.is_finite() || (a / last.get() - 1.0).abs() < 1e-6 {
            return String::new();
        }
        let mantissa = (a / 10f64.powf(a.log10().floor())).round() as u32;
        let wanted =
            mantissa == 1 || mantissa == 10 || (show_125 && (mantissa == 2 || mantissa == 5));
        if wanted {
            last.set(a);
            fmt_log_tick(*v)
        } else {
            String::new()
        }
    }
}

pub(super) fn fmt_log_tick(v: f64) -> String {
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        format!("{v:.0e}")
    } else {
        let decimals = (3.0 - a.log10().floor()).clamp(0.0, 8.0) as usize;
        trim_zeros(format!("{v:.decimals$}"))
    }
}

/// A value written on a bar: about three significant digits.
pub(super) fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&a) {
        fmt_sci(v)
    } else {
        let decimals = (2.0 - a.log10().floor()).clamp(0.0, 6.0) as usize;
        trim_zeros(format!("{v:.decimals$}"))
    }
}

/// Scientific notation with up to three significant digits: `1.25e7`, `2e-4`, `0`.
pub(super) fn fmt_sci(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let s = format!("{v:.2e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => format!("{}e{exp}", trim_zeros(mantissa.to_owned())),
        None => s,
    }
}

fn trim_zeros(s: String) -> String {
    if !s.contains('.') {
        return s;
    }
    let t = s.trim_end_matches('0').trim_end_matches('.');
    if t == "-0" {
        "0".into()
    } else {
        t.to_owned()
    }
}

/// The slot (bar, matrix cell) index a tick at `v` sits on, if it sits on one.
pub(super) fn slot_index(v: f64, n: usize) -> Option<usize> {
    let r = v.round();
    ((v - r).abs() < 1e-6 && r >= 0.0 && (r as usize) < n).then_some(r as usize)
}

/// `s` cut to `max` characters, with an ellipsis when cut.
pub(super) fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('\u{2026}');
        out
    }
}
