//! Figures for the JSON lines: rounding and nearest-rank quantiles (latency percentiles).

/// `value` rounded to `digits` decimal places.
pub(crate) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// The `q` quantile (nearest rank) of sorted nanoseconds, in milliseconds.
pub(crate) fn quantile_ms(sorted_ns: &[u64], q: f64) -> Option<f64> {
    let n = sorted_ns.len();
    if n == 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    Some(sorted_ns[rank - 1] as f64 / 1e6)
}
