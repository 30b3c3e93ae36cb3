//! A small seeded random number generator (SplitMix64) and the exact-count helpers the generator needs.
//! Written out rather than borrowed so that a seed gives the same scenario whatever crate versions change.

/// SplitMix64: tiny, fast, and stable across builds.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// An independent generator for one purpose, so that changing one part of the scenario leaves the
    /// others' draws as they were.
    pub fn fork(&self, purpose: &str) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in purpose.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut r = Rng(self.0 ^ h);
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform integer in [lo, hi], both included.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// Uniform integer in the inclusive range `[lo, hi]`.
    pub fn within(&mut self, [lo, hi]: [i64; 2]) -> i64 {
        self.range(lo, hi)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// An index drawn with the given weights (at least one positive).
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }

    /// One element, uniformly.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as i64 - 1) as usize]
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.range(0, i as i64) as usize;
            items.swap(i, j);
        }
    }

    /// Approximately standard normal (sum of 12 uniforms).
    pub fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.f64()).sum::<f64>() - 6.0
    }

    /// A day in [0, max] from a density falling by `exp(-rate·day)` (rate 0: uniform).
    pub fn decaying_day(&mut self, max: i64, rate: f64) -> i64 {
        if max <= 0 {
            return 0;
        }
        let m = max as f64 + 1.0;
        let x = if rate <= 1e-12 {
            self.f64() * m
        } else {
            let u = self.f64();
            -(1.0 - u * (1.0 - (-rate * m).exp())).ln() / rate
        };
        (x.floor() as i64).clamp(0, max)
    }

    /// `k` distinct items of `candidates`, drawn without replacement with the given weights (items of
    /// weight 0 are never drawn). Fails if fewer than `k` have a positive weight.
    pub fn sample(&mut self, candidates: &[usize], weight: impl Fn(usize) -> f64, k: usize) -> Option<Vec<usize>> {
        // Efraimidis–Spirakis: key = ln(u) / w, keep the k largest.
        let mut keyed: Vec<(f64, usize)> = candidates
            .iter()
            .filter_map(|&c| {
                let w = weight(c);
                (w > 0.0).then(|| ((1.0 - self.f64()).ln() / w, c))
            })
            .collect();
        if keyed.len() < k {
            return None;
        }
        keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut chosen: Vec<usize> = keyed.into_iter().take(k).map(|(_, c)| c).collect();
        chosen.sort_unstable();
        Some(chosen)
    }
}

/// Splits `total` into whole parts proportional to `weights` (largest remainder), exactly.
pub fn apportion(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    if weights.is_empty() || sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let quotas: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut parts: Vec<u64> = quotas.iter().map(|q| q.floor() as u64).collect();
    let mut left = total - parts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| (quotas[b] - quotas[b].floor()).total_cmp(&(quotas[a] - quotas[a].floor())).then(a.cmp(&b)));
    for i in order.into_iter().cycle() {
        if left == 0 {
            break;
        }
        if weights[i] > 0.0 {
            parts[i] += 1;
            left -= 1;
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_is_exact_and_proportional() {
        assert_eq!(apportion(10, &[1.0, 1.0, 2.0]), vec![3, 2, 5]);
        assert_eq!(apportion(7, &[0.0, 1.0]), vec![0, 7]);
        let parts = apportion(10_836, &[1.3, 0.85, 1.35, 0.6, 1.25, 0.8, 0.85, 1.0, 0.95]);
        assert_eq!(parts.iter().sum::<u64>(), 10_836);
    }

    #[test]
    fn the_same_seed_draws_the_same() {
        let (mut a, mut b) = (Rng::new(7).fork("x"), Rng::new(7).fork("x"));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(Rng::new(7).fork("x").next_u64(), Rng::new(7).fork("y").next_u64());
        let mut r = Rng::new(1);
        let chosen = r.sample(&(0..100).collect::<Vec<_>>(), |i| if i % 2 == 0 { 1.0 } else { 0.0 }, 50).unwrap();
        assert!(chosen.iter().all(|i| i % 2 == 0));
        assert_eq!(chosen.len(), 50);
        assert!(r.sample(&[1, 2], |_| 1.0, 3).is_none());
        assert!((0..1000).map(|_| r.decaying_day(10, 0.5)).all(|d| (0..=10).contains(&d)));
    }
}
