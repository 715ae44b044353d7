//! Choosing the next token from logits: penalties, then greedy or temperature with top-k, top-p
//! and min-p, from a seeded generator (same seed, same prompt → same output).
//!
//! The order follows llama.cpp's default chain: penalties → top-k → top-p → min-p → temperature.

use std::collections::HashMap;

use corral_core::Sampling;

/// Sampling settings, resolved from a request's [`Sampling`].
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// 0 (or less) means greedy.
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    /// Multiplicative penalty on tokens already seen (1.0 = off), llama.cpp's `repeat_penalty`.
    pub repetition_penalty: f32,
    /// Subtracted once from the logit of any token already seen (OpenAI's presence penalty).
    pub presence_penalty: f32,
    /// Subtracted per occurrence (OpenAI's frequency penalty).
    pub frequency_penalty: f32,
    /// How many of the most recent tokens the penalties look at (0 = all).
    pub penalty_window: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_window: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// From a request: anything left unset takes llama.cpp's default (temperature 0.8, top-k 40,
    /// top-p 0.95, min-p 0.05, no penalties), and a missing seed is drawn at random so that
    /// unseeded requests differ.
    pub fn from_request(sampling: &Sampling) -> Result<Self, String> {
        let mut config = Self {
            seed: sampling.seed.unwrap_or_else(|| fastrand::u64(..)),
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            ..Self::default()
        };
        if let Some(t) = sampling.temperature {
            if !(0.0..=100.0).contains(&t) {
                return Err(format!("temperature must be between 0 and 100, got {t}"));
            }
            config.temperature = t;
        } else {
            config.temperature = 0.8;
        }
        if let Some(k) = sampling.top_k {
            config.top_k = k as usize;
        }
        if let Some(p) = sampling.top_p {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("top_p must be between 0 and 1, got {p}"));
            }
            config.top_p = p;
        }
        if let Some(p) = sampling.min_p {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("min_p must be between 0 and 1, got {p}"));
            }
            config.min_p = p;
        }
        if let Some(r) = sampling.repetition_penalty {
            if r <= 0.0 {
                return Err(format!("repetition_penalty must be positive, got {r}"));
            }
            config.repetition_penalty = r;
        }
        if let Some(p) = sampling.presence_penalty {
            if !(-2.0..=2.0).contains(&p) {
                return Err(format!(
                    "presence_penalty must be between -2 and 2, got {p}"
                ));
            }
            config.presence_penalty = p;
        }
        if let Some(p) = sampling.frequency_penalty {
            if !(-2.0..=2.0).contains(&p) {
                return Err(format!(
                    "frequency_penalty must be between -2 and 2, got {p}"
                ));
            }
            config.frequency_penalty = p;
        }
        Ok(config)
    }

    pub fn greedy() -> Self {
        Self::default()
    }
}

/// A sampler for one generation: its settings, its random generator and the tokens seen so far.
#[derive(Debug)]
pub struct Sampler {
    config: SamplerConfig,
    rng: fastrand::Rng,
    history: Vec<u32>,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Self {
        let rng = fastrand::Rng::with_seed(config.seed);
        Self {
            config,
            rng,
            history: Vec::new(),
        }
    }

    /// Tokens the penalties count (the prompt and everything generated so far).
    pub fn observe(&mut self, token: u32) {
        self.history.push(token);
    }

    pub fn observe_all(&mut self, tokens: &[u32]) {
        self.history.extend_from_slice(tokens);
    }

    /// Picks the next token from `logits` (modified in place by the penalties).
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        self.apply_penalties(logits);
        let c = &self.config;
        if c.temperature <= 0.0 {
            return argmax(logits);
        }
        // Candidates sorted by logit, best first; cut by top-k before sorting everything.
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, l)| (i as u32, *l))
            .collect();
        if cand.is_empty() {
            return argmax(logits);
        }
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1);
        if c.top_k > 0 && c.top_k < cand.len() {
            cand.select_nth_unstable_by(c.top_k - 1, by_logit);
            cand.truncate(c.top_k);
        }
        cand.sort_unstable_by(by_logit);
        // Probabilities at temperature 1 for top-p / min-p, as llama.cpp's chain computes them.
        let probs = softmax(cand.iter().map(|(_, l)| *l), 1.0);
        let mut keep = cand.len();
        if c.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= c.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if c.min_p > 0.0 {
            let threshold = probs[0] * c.min_p;
            let above = probs
                .iter()
                .take(keep)
                .take_while(|p| **p >= threshold)
                .count();
            keep = above.max(1);
        }
        cand.truncate(keep);
        let probs = softmax(cand.iter().map(|(_, l)| *l), c.temperature);
        let mut r = self.rng.f32();
        for ((id, _), p) in cand.iter().zip(&probs) {
            if r < *p {
                return *id;
            }
            r -= p;
        }
        cand.last().map_or_else(|| argmax(logits), |(id, _)| *id)
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        let c = &self.config;
        if c.repetition_penalty == 1.0 && c.presence_penalty == 0.0 && c.frequency_penalty == 0.0 {
            return;
        }
        let window = if c.penalty_window == 0 {
            &self.history[..]
        } else {
            &self.history[self.history.len().saturating_sub(c.penalty_window)..]
        };
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for t in window {
            *counts.entry(*t).or_default() += 1;
        }
        for (token, count) in counts {
            let Some(l) = logits.get_mut(token as usize) else {
                continue;
            };
            if c.repetition_penalty != 1.0 {
                *l = if *l > 0.0 {
                    *l / c.repetition_penalty
                } else {
                    *l * c.repetition_penalty
                };
            }
            *l -= c.frequency_penalty * count as f32 + c.presence_penalty;
        }
    }
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_value = f32::NEG_INFINITY;
    for (i, l) in logits.iter().enumerate() {
        if *l > best_value {
            best = i;
            best_value = *l;
        }
    }
    best as u32
}

fn softmax(logits: impl Iterator<Item = f32> + Clone, temperature: f32) -> Vec<f32> {
    let max = logits.clone().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.map(|l| ((l - max) / temperature).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 0.5, 2.9]
    }

    #[test]
    fn greedy_takes_the_largest() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&mut logits()), 1);
    }

    #[test]
    fn same_seed_same_choices_and_different_seeds_differ() {
        let config = SamplerConfig {
            temperature: 1.5,
            seed: 7,
            ..SamplerConfig::default()
        };
        let draw = |config: SamplerConfig| {
            let mut s = Sampler::new(config);
            (0..64).map(|_| s.sample(&mut logits())).collect::<Vec<_>>()
        };
        assert_eq!(draw(config.clone()), draw(config.clone()));
        assert_ne!(
            draw(config.clone()),
            draw(SamplerConfig { seed: 8, ..config })
        );
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_head() {
        let mut s = Sampler::new(SamplerConfig {
            temperature: 5.0,
            top_k: 1,
            ..SamplerConfig::default()
        });
        assert!((0..50).all(|_| s.sample(&mut logits()) == 1));
        // The two best (3.0, 2.9) hold about 60% of the mass: top_p 0.5 keeps only those.
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_p: 0.5,
            seed: 3,
            ..SamplerConfig::default()
        });
        assert!((0..200).all(|_| matches!(s.sample(&mut logits()), 1 | 4)));
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            min_p: 0.5,
            seed: 1,
            ..SamplerConfig::default()
        });
        // exp(2.0 - 3.0) = 0.37 < 0.5: only tokens 1 and 4 (exp(-0.1) = 0.9) survive.
        assert!((0..200).all(|_| matches!(s.sample(&mut logits()), 1 | 4)));
    }

    #[test]
    fn penalties_push_seen_tokens_down() {
        let mut s = Sampler::new(SamplerConfig {
            repetition_penalty: 2.0,
            ..SamplerConfig::default()
        });
        s.observe(1);
        // 3.0 / 2 = 1.5 < 2.9: greedy now picks token 4.
        assert_eq!(s.sample(&mut logits()), 4);
        let mut s = Sampler::new(SamplerConfig {
            frequency_penalty: 0.1,
            presence_penalty: 0.05,
            ..SamplerConfig::default()
        });
        s.observe_all(&[1, 1]);
        let mut l = logits();
        s.sample(&mut l);
        assert!((l[1] - (3.0 - 0.2 - 0.05)).abs() < 1e-6);
    }

    #[test]
    fn invalid_settings_are_refused_with_the_name() {
        let bad = Sampling {
            top_p: Some(1.5),
            ..Sampling::default()
        };
        assert!(
            SamplerConfig::from_request(&bad)
                .expect_err("refused")
                .contains("top_p")
        );
    }
}
