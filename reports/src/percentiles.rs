//! Percentiles with linear interpolation (numpy's default, as `vllm bench serve` uses).

/// Mean, standard deviation and percentiles of one metric, in milliseconds. Without samples
/// every statistic is `None` (`null` in JSON, an empty CSV field, `-` in tables): no data is
/// not zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Distribution {
    /// Mean.
    pub mean: Option<f64>,
    /// Population standard deviation.
    pub std: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
    /// Number of samples.
    pub count: u64,
}

/// The `p`-th percentile (0–100) of sorted `xs`, interpolating linearly between ranks.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

impl Distribution {
    /// Summarises `xs` (sorted in place).
    pub fn from_samples(xs: &mut [f64]) -> Self {
        if xs.is_empty() {
            return Distribution::default();
        }
        xs.sort_unstable_by(f64::total_cmp);
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        Distribution {
            mean: Some(mean),
            std: Some(var.sqrt()),
            p50: Some(percentile(xs, 50.0)),
            p90: Some(percentile(xs, 90.0)),
            p95: Some(percentile(xs, 95.0)),
            p99: Some(percentile(xs, 99.0)),
            max: Some(xs[xs.len() - 1]),
            count: xs.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_like_numpy() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        // numpy.percentile([1,2,3,4], 90) == 3.7
        assert!((percentile(&xs, 90.0) - 3.7).abs() < 1e-12);
        assert_eq!(percentile(&xs, 50.0), 2.5);
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        let d = Distribution::from_samples(&mut v);
        assert_eq!(d.mean, Some(2.5));
        assert!((d.std.unwrap() - 1.118033988749895).abs() < 1e-12);
        assert_eq!(d.count, 4);
        // No samples: no statistics, not zeros.
        let none = Distribution::from_samples(&mut []);
        assert_eq!((none.p95, none.mean, none.count), (None, None, 0));
        assert_eq!(serde_json::to_value(none).unwrap()["p95"], serde_json::Value::Null);
    }
}
